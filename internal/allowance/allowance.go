// SPDX-License-Identifier: Apache-2.0

// Package allowance is a token bucket: burst at once, then one per
// interval. oomtrace bounds with it what tenants make it write: Events on
// pods and of the node, refusal lines of a cgroup.
package allowance

import "time"

// Bucket is an allowance. A new one holds Left tokens (set it to the
// burst); it refills as Take is called.
type Bucket struct {
	Left float64
	at   time.Time // of the last refill; zero: none yet
}

// Take refills the bucket for the time since its last refill, up to
// burst, one token per every, and takes one token if there is one.
func (b *Bucket) Take(now time.Time, burst float64, every time.Duration) bool {
	if !b.at.IsZero() {
		b.Left = min(burst, b.Left+now.Sub(b.at).Seconds()/every.Seconds())
	}
	b.at = now
	if b.Left < 1 {
		return false
	}
	b.Left--
	return true
}

// At is when the bucket was last taken from (zero: never): a bucket idle
// long enough is full again, and may be forgotten.
func (b *Bucket) At() time.Time { return b.at }
