// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Hook choices for the Config hook fields.
const (
	HookAuto       = "auto"
	HookNone       = "none"
	HookFentry     = "fentry"
	HookFexit      = "fexit"
	HookKprobe     = "kprobe"
	HookKretprobe  = "kretprobe"
	HookTpBtf      = "tp_btf"
	HookTracepoint = "tracepoint"
)

// The choices of each Config hook field.
var (
	DecisionHookChoices = []string{HookAuto, HookFentry, HookKprobe, HookNone}
	VictimHookChoices   = []string{HookAuto, HookTpBtf, HookTracepoint}
	RefusalHookChoices  = []string{HookAuto, HookFexit, HookKretprobe, HookNone}
)

// Hook names as they appear in events, logs and metrics.
const (
	HookFentryOOMKillProcess = "fentry/oom_kill_process"
	HookKprobeOOMKillProcess = "kprobe/oom_kill_process"
	HookTpBtfMarkVictim      = "tp_btf/mark_victim"
	HookTracepointMarkVictim = "tracepoint/oom/mark_victim"
	HookTpBtfSignal          = "tp_btf/signal_generate"
	HookTracepointSignal     = "tracepoint/signal/signal_generate"
)

// Hook names of the commit refusal side.
const (
	HookFexitVMEnoughMemory     = "fexit/__vm_enough_memory"
	HookKretprobeVMEnoughMemory = "kretprobe/__vm_enough_memory"
	hookSyscallExitPrefix       = "tracepoint/syscalls/sys_exit_"
)

// The hooks as the kernel programs record them in events.
var signalHookNames = map[oomtraceSignalHook]string{
	oomtraceSignalHookSIGNAL_HOOK_TP_BTF:     HookTpBtfSignal,
	oomtraceSignalHookSIGNAL_HOOK_TRACEPOINT: HookTracepointSignal,
}

var victimHookNames = map[oomtraceVictimHook]string{
	oomtraceVictimHookVICTIM_HOOK_TP_BTF:     HookTpBtfMarkVictim,
	oomtraceVictimHookVICTIM_HOOK_TRACEPOINT: HookTracepointMarkVictim,
}

var decisionHookNames = map[oomtraceDecisionHook]string{
	oomtraceDecisionHookDECISION_HOOK_FENTRY: HookFentryOOMKillProcess,
	oomtraceDecisionHookDECISION_HOOK_KPROBE: HookKprobeOOMKillProcess,
}

// Hooks names the hooks in use.
type Hooks struct {
	Decision string // HookFentryOOMKillProcess, HookKprobeOOMKillProcess or "" for none
	Victim   string // HookTpBtfMarkVictim or HookTracepointMarkVictim
	// Signal tells real kills from exiting tasks that were only granted
	// reserves: HookTpBtfSignal, HookTracepointSignal, or "" when neither
	// attached (then every mark_victim is reported).
	Signal string
	// RefusalExact is the __vm_enough_memory hook, "" for none.
	RefusalExact string
	// RefusalSyscalls are the syscall exit hooks that attached.
	RefusalSyscalls []string
	// RefusalsOff says why refusals were asked for but are not watched
	// (Config.RefusalsOptional and no hook attachable); "" otherwise.
	RefusalsOff string
	// Tried records why each hook that was passed over failed, by hook name.
	Tried map[string]error
}

// HookUse is one kind of kernel event and the hook that observes it.
type HookUse struct {
	Event string // oom_decision, oom_victim, oom_kill_signal, commit_refusal_exact, commit_refusal
	Hook  string // the hook, or "none"
}

// Uses lists the hooks in use by the event each observes (the metric
// oomtrace_hook_info): commit_refusal once per syscall exit hook, or once
// as "none" when refusals were asked for but are not watched.
func (h Hooks) Uses() []HookUse {
	uses := []HookUse{
		{"oom_decision", orNone(h.Decision)},
		{"oom_victim", h.Victim},
		{"oom_kill_signal", orNone(h.Signal)},
	}
	if h.RefusalsOff != "" {
		uses = append(uses, HookUse{"commit_refusal", "none"})
	}
	if len(h.RefusalSyscalls) > 0 {
		uses = append(uses, HookUse{"commit_refusal_exact", orNone(h.RefusalExact)})
		for _, s := range h.RefusalSyscalls {
			uses = append(uses, HookUse{"commit_refusal", s})
		}
	}
	return uses
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// ErrNoHook means no hook of a required kind could be attached.
var ErrNoHook = errors.New("no hook attachable")

// NoHookError says which kind of hook could not be attached, and why.
type NoHookError struct {
	What   string // mark_victim, commit refusals
	Detail string // why, as it follows "no hook attachable"
}

func (e *NoHookError) Error() string { return e.What + ": " + ErrNoHook.Error() + e.Detail }

// Is makes every NoHookError an ErrNoHook.
func (e *NoHookError) Is(target error) bool { return target == ErrNoHook }

func (a *attacher) noHookError(what string, cands []candidate) error {
	var reasons []string
	for _, c := range cands {
		if err := a.tried[c.name]; err != nil {
			reasons = append(reasons, fmt.Sprintf("%s: %v", c.name, err))
		}
	}
	return &NoHookError{What: what, Detail: " (" + strings.Join(reasons, "; ") + ")"}
}

// attacher loads programs and attaches them, falling back from the richest
// hook of an event to the plainest, and owns every program and link it
// made until detach and close. It records why each hook it passed over
// failed.
type attacher struct {
	log         *slog.Logger
	verifierLog io.Writer        // nil: none
	tried       map[string]error // by hook name; Hooks.Tried
	// noKprobes says why no kprobe can attach on this kernel: kprobe
	// candidates are then passed over without loading them.
	noKprobes error

	mu    sync.Mutex // guards links and progs: a stop detaches from another goroutine
	links []namedLink
	progs []*ebpf.Program
}

// namedLink is an attached hook and its name.
type namedLink struct {
	name string
	link link.Link
}

// attached returns the hooks attached now.
func (a *attacher) attached() []namedLink {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]namedLink(nil), a.links...)
}

func newAttacher(log *slog.Logger, verifierLog io.Writer) *attacher {
	return &attacher{log: log, verifierLog: verifierLog, tried: map[string]error{}}
}

// candidate is one way to hook an event.
type candidate struct {
	name    string // hook name for events and logs
	program string // program name in the collection
	attach  func(*ebpf.Program) (link.Link, error)
}

func tracing(p *ebpf.Program) (link.Link, error) {
	return link.AttachTracing(link.TracingOptions{Program: p})
}

// attachFirst loads and attaches candidates in order and keeps the first
// that works. A hook is probed by really loading and attaching it: program
// type probes are not reliable (tp_btf works where the Tracing type probe
// reports EPERM). It returns "" when there were no candidates or none worked.
func (a *attacher) attachFirst(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions, cands []candidate) string {
	for _, c := range cands {
		if err := a.attach(spec, opts, c); err != nil {
			a.tried[c.name] = err
			a.log.Info("hook unavailable, falling back", "hook", c.name, "reason", err)
			continue
		}
		a.log.Info("attached hook", "hook", c.name)
		return c.name
	}
	return ""
}

// attach loads and attaches one candidate and keeps both.
func (a *attacher) attach(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions, c candidate) error {
	if a.noKprobes != nil && (strings.HasPrefix(c.name, "kprobe/") || strings.HasPrefix(c.name, "kretprobe/")) {
		return a.noKprobes
	}
	prog, err := a.loadProgram(spec, opts, c.program)
	if err != nil {
		return err
	}
	return a.attachLoaded(prog, c)
}

// loadProgram loads one program of the collection with the shared maps.
func (a *attacher) loadProgram(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions, name string) (*ebpf.Program, error) {
	progs, err := a.loadPrograms(spec, opts, []string{name})
	if err != nil {
		return nil, err
	}
	return progs[name], nil
}

// loadPrograms loads several programs of the collection in one go, with the
// shared maps: one collection instead of one per program saves most of the
// load time of the many syscall hooks.
func (a *attacher) loadPrograms(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions, names []string) (map[string]*ebpf.Program, error) {
	one := spec.Copy()
	one.Programs = map[string]*ebpf.ProgramSpec{}
	for _, name := range names {
		ps, ok := spec.Programs[name]
		if !ok {
			return nil, fmt.Errorf("program %s not in collection", name)
		}
		one.Programs[name] = ps.Copy()
	}
	coll, err := ebpf.NewCollectionWithOptions(one, opts)
	if err != nil && errors.Is(err, unix.EPERM) {
		// The library suggests raising RLIMIT_MEMLOCK, but that limit is
		// already lifted: the kernel refuses this program type outright
		// (fentry where BPF trampolines are unavailable, lockdown).
		var ve *ebpf.VerifierError
		if !errors.As(err, &ve) {
			err = fmt.Errorf("programs %s: kernel refused to load them: %w", strings.Join(names, ", "), unix.EPERM)
		}
	}
	if err != nil {
		if a.verifierLog != nil {
			var ve *ebpf.VerifierError
			if errors.As(err, &ve) {
				fmt.Fprintf(a.verifierLog, "%+v\n", ve)
			}
		}
		return nil, fmt.Errorf("load: %w", err)
	}
	progs := map[string]*ebpf.Program{}
	for _, name := range names {
		progs[name] = coll.DetachProgram(name)
	}
	coll.Close()
	return progs, nil
}

// keep owns a program that is not attached itself (a tail call's target)
// until close.
func (a *attacher) keep(prog *ebpf.Program) {
	a.mu.Lock()
	a.progs = append(a.progs, prog)
	a.mu.Unlock()
}

// attachLoaded attaches a program loaded already and keeps both; on error
// it closes the program.
func (a *attacher) attachLoaded(prog *ebpf.Program, c candidate) error {
	l, err := c.attach(prog)
	if err != nil {
		prog.Close()
		return fmt.Errorf("attach: %w", err)
	}
	a.mu.Lock()
	a.progs = append(a.progs, prog)
	a.links = append(a.links, namedLink{c.name, l})
	a.mu.Unlock()
	return nil
}

// The exact refusal hook's candidates: fexit on __vm_enough_memory, else
// a kprobe (the arguments) with a kretprobe (the result).
var (
	fexitVMEnoughMemory  = candidate{HookFexitVMEnoughMemory, refusalProgFexitVmEnoughMemory, tracing}
	kprobeVMEnoughMemory = candidate{"kprobe/__vm_enough_memory", refusalProgKprobeVmEnoughMemory, func(p *ebpf.Program) (link.Link, error) {
		return link.Kprobe("__vm_enough_memory", p, nil)
	}}
	kretprobeVMEnoughMemory = candidate{HookKretprobeVMEnoughMemory, refusalProgKretprobeVmEnoughMemory, func(p *ebpf.Program) (link.Link, error) {
		return link.Kretprobe("__vm_enough_memory", p, nil)
	}}
)

// syscallExitCandidate is the refusal hook on the exit of the syscall
// name: its tracepoint, with program.
func syscallExitCandidate(name, program string) candidate {
	return candidate{hookSyscallExitPrefix + name, program, func(p *ebpf.Program) (link.Link, error) {
		return link.Tracepoint("syscalls", "sys_exit_"+name, p, nil)
	}}
}

func decisionCandidates(choice string) []candidate {
	fentry := candidate{HookFentryOOMKillProcess, oomtraceProgFentryOomKillProcess, tracing}
	kprobe := candidate{HookKprobeOOMKillProcess, oomtraceProgKprobeOomKillProcess, func(p *ebpf.Program) (link.Link, error) {
		return link.Kprobe("oom_kill_process", p, nil)
	}}
	switch choice {
	case HookFentry:
		return []candidate{fentry}
	case HookKprobe:
		return []candidate{kprobe}
	case HookNone:
		return nil
	}
	return []candidate{fentry, kprobe}
}

// signalCandidates follows the victim hook: a forced classic tracepoint
// means BTF-typed hooks are not wanted for the signal either.
func signalCandidates(victimChoice string) []candidate {
	tpBtf := candidate{HookTpBtfSignal, oomtraceProgTpBtfSignalGenerate, tracing}
	tracepoint := candidate{HookTracepointSignal, oomtraceProgTracepointSignalGenerate, func(p *ebpf.Program) (link.Link, error) {
		return link.Tracepoint("signal", "signal_generate", p, nil)
	}}
	if victimChoice == HookTracepoint {
		return []candidate{tracepoint}
	}
	return []candidate{tpBtf, tracepoint}
}

func victimCandidates(choice string) []candidate {
	tpBtf := candidate{HookTpBtfMarkVictim, oomtraceProgTpBtfMarkVictim, tracing}
	tracepoint := candidate{HookTracepointMarkVictim, oomtraceProgTracepointMarkVictim, func(p *ebpf.Program) (link.Link, error) {
		return link.Tracepoint("oom", "mark_victim", p, nil)
	}}
	switch choice {
	case HookTpBtf:
		return []candidate{tpBtf}
	case HookTracepoint:
		return []candidate{tracepoint}
	}
	return []candidate{tpBtf, tracepoint}
}

// kprobePMU is where the kernel offers kprobes as a perf event type.
const kprobePMU = "/sys/bus/event_source/devices/kprobe/type"

// kprobesUnavailable says why no kprobe can attach, nil when one may: the
// kernel offers them through the kprobe PMU or tracefs's kprobe_events
// (CONFIG_KPROBE_EVENTS), and loading a program only to find neither
// costs the start a verifier pass.
func kprobesUnavailable(tracefs string) error {
	if tracefs == "" {
		tracefs = DefaultTracefs
	}
	if _, err := os.Stat(kprobePMU); err == nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(tracefs, "kprobe_events")); err == nil {
		return nil
	}
	return fmt.Errorf("no kprobes on this kernel: neither %s nor %s", kprobePMU, filepath.Join(tracefs, "kprobe_events"))
}

// detach removes every hook (a pinned one only from this process: its pin
// keeps it attached); the programs stay loaded until Close.
func (a *attacher) detach() {
	a.mu.Lock()
	links := a.links
	a.links = nil
	a.mu.Unlock()
	// Reverse order: hooks go before the hooks they depend on.
	for i := len(links) - 1; i >= 0; i-- {
		if err := links[i].link.Close(); err != nil {
			a.log.Warn("detach hook", "err", err)
		}
	}
}

// close frees every program; detach first.
func (a *attacher) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for _, p := range a.progs {
		errs = append(errs, p.Close())
	}
	a.progs = nil
	return errors.Join(errs...)
}

// setVariables sets const volatile globals of the programs in spec.
func setVariables(spec *ebpf.CollectionSpec, values map[string]any) error {
	for name, v := range values {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("variable %s not in the programs", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}
