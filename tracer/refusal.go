// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
)

// refusalSyscalls lists the watched syscalls: name, enum value, program.
var refusalSyscalls = []struct {
	name    string
	id      refusalRefusalSyscall
	program string
}{
	{"mmap", refusalRefusalSyscallSYSCALL_MMAP, refusalProgSysExitMmap},
	{"brk", refusalRefusalSyscallSYSCALL_BRK, refusalProgSysExitBrk},
	{"mremap", refusalRefusalSyscallSYSCALL_MREMAP, refusalProgSysExitMremap},
	{"mprotect", refusalRefusalSyscallSYSCALL_MPROTECT, refusalProgSysExitMprotect},
	{"clone", refusalRefusalSyscallSYSCALL_CLONE, refusalProgSysExitClone},
	{"clone3", refusalRefusalSyscallSYSCALL_CLONE3, refusalProgSysExitClone3},
	{"fork", refusalRefusalSyscallSYSCALL_FORK, refusalProgSysExitFork},
	{"vfork", refusalRefusalSyscallSYSCALL_VFORK, refusalProgSysExitVfork},
	{"shmget", refusalRefusalSyscallSYSCALL_SHMGET, refusalProgSysExitShmget},
	{"execve", refusalRefusalSyscallSYSCALL_EXECVE, refusalProgSysExitExecve},
}

func syscallName(id uint16) (string, bool) {
	for _, s := range refusalSyscalls {
		if uint16(s.id) == id {
			return s.name, true
		}
	}
	return "", false
}

// refusalTracer is the commit refusal half of the tracer.
type refusalTracer struct {
	diag    *diag
	att     *attacher
	maps    refusalMaps
	reader  *journal
	decoder refusalDecoder
	window  time.Duration
	procfs  string

	// The aggregator: only the reader goroutine touches it.
	refusalWindow
}

// refusalHooks are the refusal half's hooks (Hooks.RefusalExact and
// RefusalSyscalls).
type refusalHooks struct {
	exact    string
	syscalls []string
}

// newRefusalTracer loads spec (sized, its maps pinned or not by opts) as
// generation gen and attaches its hooks with att (the OOM half loads
// meanwhile, with its own).
func newRefusalTracer(att *attacher, d *diag, cfg Config, opts ebpf.CollectionOptions, spec *ebpf.CollectionSpec, gen uint64) (*refusalTracer, refusalHooks, error) {
	var hooks refusalHooks
	r := &refusalTracer{diag: d, att: att, window: cfg.RefusalWindow, procfs: cfg.ProcfsPath, refusalWindow: newRefusalWindow()}
	host, err := readHostMemory(r.procfs)
	if err != nil {
		return nil, hooks, fmt.Errorf("read commit accounting settings: %w", err)
	}
	// Constants of the programs, set in the spec before anything loads:
	// every copy of it that loads below carries them.
	taskPtRegs := uint8(1)
	if !haveTaskPtRegs() {
		taskPtRegs = 0
		d.log.Info("no bpf_task_pt_regs in this kernel (before 5.15): a failed syscall's arguments are read from the top of its kernel stack")
	}
	if err := setVariables(spec, map[string]any{
		refusalVarRefusalWindowNs: uint64(cfg.RefusalWindow),
		refusalVarMaxMapCount:     uint32(host.MaxMapCount),
		refusalVarGeneration:      gen,
		refusalVarHaveTaskPtRegs:  taskPtRegs,
	}); err != nil {
		return nil, hooks, fmt.Errorf("configure refusal programs: %w", err)
	}
	if err := spec.LoadAndAssign(&r.maps, &opts); err != nil {
		r.close()
		return nil, hooks, fmt.Errorf("load refusal maps: %w", err)
	}
	opts.MapReplacements = map[string]*ebpf.Map{
		refusalMapControl:       r.maps.Control,
		refusalMapRefusalEvents: r.maps.RefusalEvents,
		refusalMapRefusalStats:  r.maps.RefusalStats,
		refusalMapRefusalCounts: r.maps.RefusalCounts,
		refusalMapExactRefusals: r.maps.ExactRefusals,
		refusalMapVmEnoughArgs:  r.maps.VmEnoughArgs,
		refusalMapRefusalBody:   r.maps.RefusalBody,
		refusalMapFailedSyscall: r.maps.FailedSyscall,
	}

	// The body every syscall exit hook tail-calls, before any of them.
	body, err := r.att.loadProgram(spec, opts, refusalProgSysExitRefusal)
	if err != nil {
		r.close()
		return nil, hooks, &NoHookError{What: "commit refusals", Detail: fmt.Sprintf(": %v", err)}
	}
	r.att.keep(body)
	if err := r.maps.RefusalBody.Put(uint32(0), body); err != nil {
		r.close()
		return nil, hooks, fmt.Errorf("install the refusal program: %w", err)
	}
	// The exact hook first: a refusal it sees must find the exit hook ready.
	hooks.exact = r.attachExact(spec, opts, cfg.RefusalHook)
	// All syscall exit programs in one load; one by one only if that fails
	// (a syscall's tracepoint may be missing: fork and vfork on arm64).
	var names []string
	for _, sc := range refusalSyscalls {
		names = append(names, sc.program)
	}
	loaded, err := r.att.loadPrograms(spec, opts, names)
	if err != nil {
		d.log.Info("loading the syscall exit programs together failed, loading one by one", "reason", err)
		loaded = nil
	}
	for _, sc := range refusalSyscalls {
		c := syscallExitCandidate(sc.name, sc.program)
		var err error
		if prog := loaded[sc.program]; prog != nil {
			err = r.att.attachLoaded(prog, c)
		} else {
			err = r.att.attach(spec, opts, c)
		}
		if err != nil {
			r.att.tried[c.name] = err
			d.log.Info("syscall hook unavailable", "hook", c.name, "reason", err)
			continue
		}
		hooks.syscalls = append(hooks.syscalls, c.name)
	}
	if len(hooks.syscalls) == 0 {
		r.close()
		return nil, hooks, &NoHookError{What: "commit refusals", Detail: fmt.Sprintf(": %v", r.att.tried[hookSyscallExitPrefix+"mmap"])}
	}
	d.log.Info("attached syscall exit hooks", "count", len(hooks.syscalls))

	r.reader, err = newJournal(r.maps.RefusalEvents)
	if err != nil {
		r.close()
		return nil, hooks, fmt.Errorf("open refusal ring buffer: %w", err)
	}
	r.decoder = refusalDecoder{
		Node:         cfg.Node,
		PageSize:     uint64(os.Getpagesize()),
		WallTime:     bootToWall,
		AddressSpace: addressSpaceSize(),
		ExactHooked:  hooks.exact != "",
	}
	return r, hooks, nil
}

// attachExact attaches fexit, else kprobe+kretprobe, on __vm_enough_memory.
func (r *refusalTracer) attachExact(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions, choice string) string {
	if choice == HookNone {
		return ""
	}
	if choice == HookAuto || choice == "" || choice == HookFexit {
		if got := r.att.attachFirst(spec, opts, []candidate{fexitVMEnoughMemory}); got != "" {
			return got
		}
		if choice == HookFexit {
			return ""
		}
	}
	if err := r.att.attach(spec, opts, kprobeVMEnoughMemory); err != nil {
		r.att.tried[HookKretprobeVMEnoughMemory] = err
		r.diag.log.Info("hook unavailable, falling back", "hook", HookKretprobeVMEnoughMemory, "reason", err)
		return ""
	}
	return r.att.attachFirst(spec, opts, []candidate{kretprobeVMEnoughMemory})
}

func (r *refusalTracer) stats(s *Stats) error {
	return readPerCPU(r.maps.RefusalStats, []perCPUStat{
		{uint32(refusalRefusalStatIndexRSTAT_FAILED), &s.RefusalsFailed},
		{uint32(refusalRefusalStatIndexRSTAT_SENT), &s.RefusalsSent},
		{uint32(refusalRefusalStatIndexRSTAT_LOST), &s.RefusalsLost},
	})
}

func (r *refusalTracer) close() error {
	var errs []error
	if r.reader != nil {
		errs = append(errs, r.reader.Close())
	}
	errs = append(errs, r.maps.Close())
	return errors.Join(errs...)
}
