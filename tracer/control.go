// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// control is the programs' control record (bpf/control.h), mapped into
// memory: user space switches the active generation with one store and
// reads the counters with atomic loads, while the programs add to them.
type control struct {
	m   *ebpf.Map
	mem []byte
	rec *oomtraceControl
}

// Accounting is what the programs of every generation counted since the
// control map was made: before any hook attached, on the first start of
// this boot when pinned, at every start when not.
type Accounting struct {
	// Created is when the control map was made.
	Created time.Time
	// KernelKillsAtCreate is the kernel's count of OOM kills (oom_kill in
	// /proc/vmstat) then; false KernelCounts where the kernel has none.
	KernelKillsAtCreate uint64
	KernelCounts        bool
	// Marked counts the mark_victim calls the active programs saw; Exiting
	// those of them that were tasks found exiting, not kills. Marked
	// minus Exiting is every kill a hook saw, recorded or lost.
	Marked, Exiting uint64
	// Recounted counts the kills the kernel counted again for a task that
	// was an OOM victim already: a group kill's scan meets the task it
	// chose again (on kernels that scan threads, every thread that still
	// has the task's memory), kills and counts it again; oomtrace reports
	// the process once.
	Recounted uint64
	// Folded counts the kills of group decisions past their records:
	// no mark_victim record (no seq) of their own, counted on the
	// decision's first kill.
	Folded uint64
}

// Kills is how many kills a hook saw.
func (a Accounting) Kills() uint64 { return a.Marked + a.Folded - min(a.Exiting, a.Marked) }

// KernelCounted is how many of the kernel's oom_kill counts the hooks
// account for: every kill they saw, and the further counts of a task in a
// group kill.
func (a Accounting) KernelCounted() uint64 { return a.Kills() + a.Recounted }

// openControl loads the control map pinned at path, or makes one (pinned
// at path unless path is empty) with the kernel's count of kills now.
// adopted says whether it was there already.
func openControl(spec *ebpf.MapSpec, path string, kernelKills func() (uint64, error)) (c *control, adopted bool, err error) {
	var m *ebpf.Map
	if path != "" {
		m, err = ebpf.LoadPinnedMap(path, nil)
		switch {
		case err == nil:
			adopted = true
			if err := checkControl(m, spec); err != nil {
				m.Close()
				return nil, false, fmt.Errorf("pinned %s: %w", path, err)
			}
		case errors.Is(err, os.ErrNotExist):
		default:
			return nil, false, fmt.Errorf("load pinned %s: %w", path, err)
		}
	}
	if m == nil {
		if m, err = ebpf.NewMap(spec.Copy()); err != nil {
			return nil, false, fmt.Errorf("create control map: %w", err)
		}
	}
	if c, err = mapControl(m); err != nil {
		return nil, false, err
	}
	if adopted {
		return c, true, nil
	}
	// Filled in before it is pinned: nobody sees it half made.
	atomic.StoreUint64(&c.rec.CreatedUnixNs, uint64(time.Now().UnixNano()))
	if n, err := kernelKills(); err == nil {
		atomic.StoreUint64(&c.rec.KernelKillsAtCreate, n+1) // 0: the kernel does not count
	}
	if path != "" {
		if err := m.Pin(path); err != nil {
			c.close()
			return nil, false, fmt.Errorf("pin control map at %s: %w", path, err)
		}
	}
	return c, false, nil
}

// mapControl maps the control record of m into memory; on error it
// closes m.
func mapControl(m *ebpf.Map) (*control, error) {
	mem, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("mmap control map: %w", err)
	}
	return &control{m: m, mem: mem, rec: (*oomtraceControl)(unsafe.Pointer(&mem[0]))}, nil
}

// checkControl tells an oomtrace control map from anything else pinned
// under its name.
func checkControl(m *ebpf.Map, spec *ebpf.MapSpec) error {
	if m.Type() != spec.Type || m.KeySize() != spec.KeySize || m.ValueSize() != spec.ValueSize || m.MaxEntries() != spec.MaxEntries || m.Flags()&unix.BPF_F_MMAPABLE == 0 {
		return fmt.Errorf("not an oomtrace control map (%s, key %d, value %d bytes, %d entries)", m.Type(), m.KeySize(), m.ValueSize(), m.MaxEntries())
	}
	return nil
}

func (c *control) activeGeneration() uint64 { return atomic.LoadUint64(&c.rec.ActiveGeneration) }

// activate makes gen's programs the ones that record, from this store on.
func (c *control) activate(gen uint64) { atomic.StoreUint64(&c.rec.ActiveGeneration, gen) }

func (c *control) accounting() Accounting {
	a := Accounting{
		Created:   time.Unix(0, int64(atomic.LoadUint64(&c.rec.CreatedUnixNs))),
		Marked:    atomic.LoadUint64(&c.rec.NextSeq),
		Exiting:   atomic.LoadUint64(&c.rec.Exiting),
		Recounted: atomic.LoadUint64(&c.rec.Recounted),
		Folded:    atomic.LoadUint64(&c.rec.Folded),
	}
	if n := atomic.LoadUint64(&c.rec.KernelKillsAtCreate); n > 0 {
		a.KernelKillsAtCreate, a.KernelCounts = n-1, true
	}
	return a
}

func (c *control) close() error {
	var errs []error
	if c.mem != nil {
		errs = append(errs, unix.Munmap(c.mem))
		c.mem, c.rec = nil, nil
	}
	errs = append(errs, c.m.Close())
	return errors.Join(errs...)
}
