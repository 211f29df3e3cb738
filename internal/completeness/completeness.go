// SPDX-License-Identifier: Apache-2.0

// Package completeness compares the OOM kills oomtrace's hooks saw with
// the ones the kernel counted (oom_kill in /proc/vmstat, since 4.13), so
// that a kill oomtrace missed is a number someone can alert on.
package completeness

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/oomtrace/oomtrace/internal/kernfile"
)

// ReadKernelKills reads how many tasks the kernel's OOM killer has killed
// since boot.
func ReadKernelKills(procfs string) (uint64, error) {
	data, err := kernfile.ReadFile(filepath.Join(procfs, "vmstat"))
	if err != nil {
		return 0, err
	}
	n, ok := kernfile.ParseKeyValues(data)["oom_kill"]
	if !ok {
		return 0, fmt.Errorf("%s/vmstat has no oom_kill (kernels before 4.13)", procfs)
	}
	return n, nil
}

// Accountant counts the kills the kernel made that no hook saw since a
// baseline: the kernel's count when the hooks started counting, before
// the first of them attached (so a kill while they load counts). With
// pinned hooks that is oomtrace's first start since boot, and the count
// spans every restart.
type Accountant struct {
	read  func() (uint64, error)
	start uint64

	mu         sync.Mutex
	unobserved uint64
}

// NewAccountant counts from start, the kernel's count at the baseline.
func NewAccountant(read func() (uint64, error), start uint64) *Accountant {
	return &Accountant{read: read, start: start}
}

// Start is the kernel's count at the baseline: every kill since boot
// before it.
func (a *Accountant) Start() uint64 { return a.start }

// Unobserved returns the kills no hook saw, given how many kills the hooks
// saw since the baseline (recorded or lost: read after this reads the
// kernel's count, as the hook runs before the kernel counts a kill), and
// how much that grew since the last call. It never decreases: a kill the
// hooks are still counting can make the difference smaller for a moment.
func (a *Accountant) Unobserved(hooked func() (uint64, error)) (total, grew uint64, err error) {
	kernel, err := a.read()
	if err != nil {
		return 0, 0, err
	}
	seen, err := hooked()
	if err != nil {
		return 0, 0, err
	}
	var missed uint64
	if d := kernel - min(kernel, a.start); d > seen {
		missed = d - seen
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if missed > a.unobserved {
		grew = missed - a.unobserved
		a.unobserved = missed
	}
	return a.unobserved, grew, nil
}
