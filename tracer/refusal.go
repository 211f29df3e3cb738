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
// meanwhile, with its own). On an error nothing of it stays.
func newRefusalTracer(att *attacher, d *diag, cfg Config, opts ebpf.CollectionOptions, spec *ebpf.CollectionSpec, gen uint64) (*refusalTracer, refusalHooks, error) {
	r := &refusalTracer{diag: d, att: att, window: cfg.RefusalWindow, procfs: cfg.ProcfsPath, refusalWindow: newRefusalWindow()}
	hooks, err := r.start(cfg, opts, spec, gen)
	if err != nil {
		_ = r.close() // the start's error is the one to report
		return nil, refusalHooks{}, err
	}
	return r, hooks, nil
}

// start configures, loads and attaches the programs, then opens the ring
// buffer: newRefusalTracer's steps, in order.
func (r *refusalTracer) start(cfg Config, opts ebpf.CollectionOptions, spec *ebpf.CollectionSpec, gen uint64) (refusalHooks, error) {
	var hooks refusalHooks
	if err := r.configure(spec, cfg, gen); err != nil {
		return hooks, err
	}
	if err := spec.LoadAndAssign(&r.maps, &opts); err != nil {
		return hooks, fmt.Errorf("load refusal maps: %w", err)
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
	if err := r.installBody(spec, opts); err != nil {
		return hooks, err
	}
	// The exact hook first: a refusal it sees must find the exit hook ready.
	hooks.exact = r.attachExact(spec, opts, cfg.RefusalHook)
	hooks.syscalls = r.attachSyscallExits(spec, opts)
	if len(hooks.syscalls) == 0 {
		return hooks, &NoHookError{What: "commit refusals", Detail: fmt.Sprintf(": %v", r.att.tried[hookSyscallExitPrefix+"mmap"])}
	}
	r.diag.log.Info("attached syscall exit hooks", "count", len(hooks.syscalls))
	var err error
	if r.reader, err = newJournal(r.maps.RefusalEvents); err != nil {
		return hooks, fmt.Errorf("open refusal ring buffer: %w", err)
	}
	r.decoder = refusalDecoder{
		Node:         cfg.Node,
		PageSize:     uint64(os.Getpagesize()),
		WallTime:     bootToWall,
		AddressSpace: addressSpaceSize(),
		ExactHooked:  hooks.exact != "",
	}
	return hooks, nil
}

// configure sets the programs' constants in spec before anything loads:
// every copy of it that loads later carries them.
func (r *refusalTracer) configure(spec *ebpf.CollectionSpec, cfg Config, gen uint64) error {
	host, err := readHostMemory(r.procfs)
	if err != nil {
		return fmt.Errorf("read commit accounting settings: %w", err)
	}
	taskPtRegs := uint8(1)
	if !haveTaskPtRegs() {
		taskPtRegs = 0
		r.diag.log.Info("no bpf_task_pt_regs in this kernel (before 5.15): a failed syscall's arguments are read from the top of its kernel stack")
	}
	if err := setVariables(spec, map[string]any{
		refusalVarRefusalWindowNs: uint64(cfg.RefusalWindow),
		refusalVarMaxMapCount:     uint32(host.MaxMapCount),
		refusalVarGeneration:      gen,
		refusalVarHaveTaskPtRegs:  taskPtRegs,
	}); err != nil {
		return fmt.Errorf("configure refusal programs: %w", err)
	}
	return nil
}

// installBody loads the program every syscall exit hook tail-calls and
// puts it in the tail call map.
func (r *refusalTracer) installBody(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions) error {
	body, err := r.att.loadProgram(spec, opts, refusalProgSysExitRefusal)
	if err != nil {
		return &NoHookError{What: "commit refusals", Detail: fmt.Sprintf(": %v", err)}
	}
	r.att.keep(body)
	if err := r.maps.RefusalBody.Put(uint32(0), body); err != nil {
		return fmt.Errorf("install the refusal program: %w", err)
	}
	return nil
}

// attachSyscallExits attaches the failed memory syscalls' exit hooks and
// returns the names of those attached: all programs in one load, one by
// one only if that fails (a syscall's tracepoint may be missing: fork and
// vfork on arm64).
func (r *refusalTracer) attachSyscallExits(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions) []string {
	var names []string
	for _, sc := range refusalSyscalls {
		names = append(names, sc.program)
	}
	loaded, err := r.att.loadPrograms(spec, opts, names)
	if err != nil {
		r.diag.log.Info("loading the syscall exit programs together failed, loading one by one", "reason", err)
		loaded = nil
	}
	var attached []string
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
			r.diag.log.Info("syscall hook unavailable", "hook", c.name, "reason", err)
			continue
		}
		attached = append(attached, c.name)
	}
	return attached
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
