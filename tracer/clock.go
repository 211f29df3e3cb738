// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"time"

	"golang.org/x/sys/unix"
)

// bootToWall converts a bpf_ktime_get_boot_ns() timestamp to wall-clock
// time. The offset is taken afresh for every event, so wall-clock steps
// (NTP, suspend) since start do not skew later events.
func bootToWall(bootNs uint64) time.Time {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return now
	}
	age := time.Duration(ts.Nano() - int64(bootNs))
	return now.Add(-age)
}
