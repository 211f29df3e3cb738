// SPDX-License-Identifier: Apache-2.0

package tracer

// What only the tests read.

// Adopted says whether an earlier oomtrace's pinned hooks and maps were
// found and taken over.
func (t *Tracer) Adopted() bool { return t.adopted }

// Held is how many records were read and not yet committed.
func (j *journal) Held() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, h := range j.held {
		if !h.done {
			n++
		}
	}
	return n
}
