// Package completeness compares the OOM kills oomtrace's hooks saw with
// the ones the kernel counted (oom_kill in /proc/vmstat, since 4.13), so
// that a kill oomtrace missed is a number someone can alert on.
package completeness

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/oomtrace/oomtrace/internal/kernfile"
)

// ReadKernelKills reads how many tasks the kernel's OOM killer has killed
// since boot.
func ReadKernelKills(procfs string) (uint64, error) {
	data, err := os.ReadFile(filepath.Join(procfs, "vmstat"))
	if err != nil {
		return 0, err
	}
	n, ok := kernfile.ParseKeyValues(data)["oom_kill"]
	if !ok {
		return 0, fmt.Errorf("%s/vmstat has no oom_kill (kernels before 4.13)", procfs)
	}
	return n, nil
}

// Hooked is what the hooks saw since the tracer started.
type Hooked struct {
	Sent    uint64 // mark_victim records written to the ring buffer
	Lost    uint64 // mark_victim records the ring buffer had no room for
	Exiting uint64 // records of tasks found exiting, not killed (decoded so far)
}

// Accountant counts the kills the kernel made that no hook saw: since it
// was created, which is before the hooks attach (a kill while they load
// counts).
type Accountant struct {
	read  func() (uint64, error)
	start uint64

	mu         sync.Mutex
	unobserved uint64
}

// NewAccountant reads the kernel's count now.
func NewAccountant(read func() (uint64, error)) (*Accountant, error) {
	start, err := read()
	if err != nil {
		return nil, err
	}
	return &Accountant{read: read, start: start}, nil
}

// Start is the kernel's count when the accountant was made: every kill
// since boot, seen by an earlier oomtrace or not.
func (a *Accountant) Start() uint64 { return a.start }

// Unobserved returns the kills no hook saw, given what the hooks saw up to
// now (read after this reads the kernel's count: the hook runs before the
// kernel counts a kill, so a counted kill is hooked by then), and how much
// that grew since the last call. It never decreases: hooked records of
// exiting tasks not decoded yet make the difference smaller for a while.
func (a *Accountant) Unobserved(hooked func() (Hooked, error)) (total, grew uint64, err error) {
	kernel, err := a.read()
	if err != nil {
		return 0, 0, err
	}
	h, err := hooked()
	if err != nil {
		return 0, 0, err
	}
	seen := h.Sent + h.Lost - min(h.Exiting, h.Sent+h.Lost)
	var missed uint64
	if d := kernel - a.start; d > seen {
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
