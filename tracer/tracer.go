// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"log/slog"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/oomtrace/oomtrace/internal/completeness"
)

// Tracer owns the loaded programs, their links and the ring buffer readers.
type Tracer struct {
	log     *slog.Logger
	hooks   Hooks
	oom     *oomTracer
	refusal *refusalTracer // nil unless Config.Refusals

	att     *attacher // the OOM kill hooks
	ratt    *attacher // the refusal hooks, nil without
	control *control
	// accountant counts the kills no hook saw; nil where the kernel does
	// not count kills.
	accountant *completeness.Accountant
	pin        *pinning // nil: not pinned
	adopted    bool     // the pinned control map was there: an earlier oomtrace ran
	gen        uint64

	diag *diag // the log and the decode errors, shared with both halves

	// retired is closed once the earlier generations' hooks are gone;
	// nil when there were none to look for.
	retired chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// New loads the programs, attaches the richest hooks available and opens
// the ring buffers. On error everything set up so far is undone.
func New(cfg Config) (*Tracer, error) {
	cfg, log, err := cfg.prepared()
	if err != nil {
		return nil, err
	}
	opts, err := collectionOptions(cfg)
	if err != nil {
		return nil, err
	}
	explain := tracefsExplainer(cfg, log)
	oomSpec, refusalSpec, err := loadSpecs(cfg)
	if err != nil {
		return nil, err
	}
	if !globalFuncPointerArgs() {
		log.Info("kernel before 5.12: loading the build of the programs made for it (no pointer arguments of global functions, no atomic fetch-and-add)")
	}
	abi := abiOf(oomSpec, refusalSpec)

	att := newAttacher(log, cfg.VerifierLog)
	att.noKprobes = kprobesUnavailable(cfg.TracefsPath)
	t := &Tracer{log: log, diag: &diag{log: log}, att: att, hooks: Hooks{Tried: att.tried}}
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()
	if err := t.openState(cfg, abi, &opts, oomSpec, refusalSpec); err != nil {
		return nil, err
	}
	if err := t.loadHalves(cfg, opts, oomSpec, refusalSpec, explain); err != nil {
		return nil, err
	}
	if err := t.switchOver(abi); err != nil {
		return nil, err
	}
	t.startAccounting(cfg.ProcfsPath)
	ok = true
	return t, nil
}

// loadSpecs reads both halves' programs and maps, sized by cfg.
func loadSpecs(cfg Config) (oomSpec, refusalSpec *ebpf.CollectionSpec, err error) {
	loadOOM, loadRefusals := loadOomtrace, loadRefusal
	if !globalFuncPointerArgs() {
		// The same programs, fill_cgroup_path inlined: same names, same
		// maps, same records.
		loadOOM, loadRefusals = loadOomtraceInline, loadRefusalInline
	}
	if oomSpec, err = loadOOM(); err != nil {
		return nil, nil, err
	}
	if refusalSpec, err = loadRefusals(); err != nil {
		return nil, nil, err
	}
	sizeRingBuffers(oomSpec)
	sizeRingBuffers(refusalSpec)
	oomSpec.Maps[oomtraceMapOomEvents].MaxEntries = uint32(cfg.RingBufferBytes)
	return oomSpec, refusalSpec, nil
}

// openState takes the pin directory (when pinning) and the control map:
// an earlier oomtrace's, pinned, or a new one; this load's generation is
// the next.
func (t *Tracer) openState(cfg Config, abi string, opts *ebpf.CollectionOptions, oomSpec, refusalSpec *ebpf.CollectionSpec) error {
	controlPath := ""
	if cfg.PinPath != "" {
		var err error
		if t.pin, err = openPinning(cfg.PinPath, t.log); err != nil {
			return err
		}
		dir, err := t.pin.mapsDir(abi)
		if err != nil {
			return err
		}
		pinMaps(oomSpec, opts, dir)
		pinMaps(refusalSpec, opts, dir)
		controlPath = t.pin.controlPath()
	}
	var err error
	t.control, t.adopted, err = openControl(oomSpec.Maps[oomtraceMapControl], controlPath, func() (uint64, error) {
		return completeness.ReadKernelKills(cfg.ProcfsPath)
	})
	if err != nil {
		return err
	}
	// The programs of this load record only once they are the active
	// generation: until then an earlier oomtrace's pinned ones do.
	t.gen = t.control.activeGeneration() + 1
	opts.MapReplacements = map[string]*ebpf.Map{oomtraceMapControl: t.control.m}
	return nil
}

// loadHalves loads and attaches the OOM half and, with cfg.Refusals, the
// refusal half. Most of the start is the verifier's work: the two load
// on two goroutines (the kernel verifies on the calling thread), each
// with its own attacher.
func (t *Tracer) loadHalves(cfg Config, opts ebpf.CollectionOptions, oomSpec, refusalSpec *ebpf.CollectionSpec, explain func(error) error) error {
	var refusalErr error
	refusalDone := make(chan struct{})
	if cfg.Refusals {
		t.ratt = newAttacher(t.log, cfg.VerifierLog)
		t.ratt.noKprobes = t.att.noKprobes
		go func() {
			defer close(refusalDone)
			var hooks refusalHooks
			t.refusal, hooks, refusalErr = newRefusalTracer(t.ratt, t.diag, cfg, opts, refusalSpec, t.gen)
			t.hooks.RefusalExact, t.hooks.RefusalSyscalls = hooks.exact, hooks.syscalls
		}()
	} else {
		close(refusalDone)
	}
	var hooks oomHooks
	var err error
	t.oom, hooks, err = newOOMTracer(t.att, t.diag, cfg, opts, oomSpec, t.gen)
	t.hooks.Decision, t.hooks.Signal, t.hooks.Victim = hooks.decision, hooks.signal, hooks.victim
	<-refusalDone
	if t.ratt != nil {
		for name, why := range t.ratt.tried {
			t.hooks.Tried[name] = why
		}
	}
	if err != nil {
		return explain(err)
	}
	switch {
	case refusalErr == nil:
	case cfg.RefusalsOptional && errors.Is(refusalErr, ErrNoHook):
		// The OOM hooks work: go on without refusals, and detach the
		// exact hook if it attached without its syscall exits.
		t.ratt.detach()
		t.ratt.close()
		t.ratt = nil
		t.hooks.RefusalExact, t.hooks.RefusalSyscalls = "", nil
		t.hooks.RefusalsOff = refusalErr.Error()
		t.log.Warn("commit refusals are not watched: no hook attachable; OOM kills are (pass --refusals=true to make this an error)",
			"reason", explain(refusalErr).Error())
	default:
		return explain(refusalErr)
	}
	return nil
}

// switchOver pins this load's hooks (when pinning) and makes its
// generation the one that records: from that store on it records, and no
// other. The earlier generation's hooks go after the start, on a
// goroutine of their own (detaching a tracepoint waits for the kernel's
// RCU grace periods): switched off, they record nothing.
func (t *Tracer) switchOver(abi string) error {
	if t.pin != nil {
		for _, a := range t.attachers() {
			if err := t.pin.pinLinks(t.gen, a.attached()); err != nil {
				return err
			}
		}
	}
	t.control.activate(t.gen)
	if t.pin != nil {
		t.retired = make(chan struct{})
		go func() {
			defer close(t.retired)
			if err := t.pin.retire(t.gen, abi); err != nil {
				t.log.Warn("could not remove everything an earlier oomtrace pinned", "err", err)
			}
		}()
	}
	return nil
}

// attachers are the hooks' owners, in the order they are detached.
func (t *Tracer) attachers() []*attacher {
	if t.ratt == nil {
		return []*attacher{t.att}
	}
	return []*attacher{t.ratt, t.att}
}

// detach removes every hook of this process (pinned ones stay attached).
func (t *Tracer) detach() {
	for _, a := range t.attachers() {
		a.detach()
	}
}

// Generation is this process's generation of programs; 1 for the first
// oomtrace since boot (or every unpinned one).
func (t *Tracer) Generation() uint64 { return t.gen }

// PinPath is where the hooks are pinned; empty when they are not.
func (t *Tracer) PinPath() string {
	if t.pin == nil {
		return ""
	}
	return t.pin.path
}

// Accounting reads the programs' counts since the control map was made.
func (t *Tracer) Accounting() Accounting { return t.control.accounting() }

// Hooks returns the hooks in use.
func (t *Tracer) Hooks() Hooks { return t.hooks }

// Close detaches the hooks and frees every kernel object. It is safe to
// call more than once.
func (t *Tracer) Close() error {
	t.closeOnce.Do(func() {
		t.detach()
		if t.retired != nil {
			<-t.retired // it reads the pin path
		}
		var errs []error
		if t.refusal != nil {
			errs = append(errs, t.refusal.close())
		}
		if t.oom != nil {
			errs = append(errs, t.oom.close())
		}
		for _, a := range t.attachers() {
			errs = append(errs, a.close())
		}
		if t.control != nil {
			errs = append(errs, t.control.close())
		}
		errs = append(errs, t.pin.close())
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}
