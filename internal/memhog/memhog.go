// SPDX-License-Identifier: Apache-2.0

// Package memhog allocates and touches memory until the kernel OOM-kills
// the process: the demo's hog and the tests'.
package memhog

import (
	"fmt"
	"os"
)

// sink keeps what Touch allocated reachable.
var sink [][]byte

// Touch allocates n bytes in 16 MiB chunks and writes every page of them,
// so that they are resident and charged to the process's memory cgroup.
// It returns the first chunk (something for the caller to keep using).
func Touch(n int) []byte {
	const chunk = 16 << 20
	var first []byte
	for n > 0 {
		size := min(n, chunk)
		b := make([]byte, size)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		sink = append(sink, b)
		if first == nil {
			first = b
		}
		n -= size
	}
	if first == nil {
		first = []byte{0}
	}
	return first
}

// Join moves this process into the cgroup whose cgroup.procs file is
// procs, before its first allocation.
func Join(procs string) error {
	if err := os.WriteFile(procs, []byte("0"), 0); err != nil {
		return fmt.Errorf("join cgroup: %w", err)
	}
	return nil
}

// Forever touches memory until the kernel kills the process; past limit
// bytes without a kill it returns an error (no limit held it).
func Forever(limit int) error {
	for n := 0; n < limit; n += 4 << 20 {
		Touch(4 << 20)
	}
	return fmt.Errorf("allocated %d bytes without being killed", limit)
}
