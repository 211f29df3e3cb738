// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/completeness"
)

// DefaultRingBufferBytes holds about 1,200 OOM kill records: a burst of
// kills is read long before it fills.
const DefaultRingBufferBytes = 4 << 20

// ringBufferBytes sizes every ring buffer, by map name, in one place (the
// sizes in the C are only defaults). The OOM kills' is
// Config.RingBufferBytes instead.
var ringBufferBytes = map[string]uint32{
	// SIGTERMs and SIGKILLs to other processes: rare (processes being
	// stopped), but a burst of the node's signal budget fits: about 440
	// records of 1,176 bytes.
	oomtraceMapSignalEvents: 512 << 10,
	// Only the first refusal of each process, syscall and reason per
	// window is sent: about 840 records.
	refusalMapRefusalEvents: 1 << 20,
}

// sizeRingBuffers applies ringBufferBytes to the ring buffers of spec.
func sizeRingBuffers(spec *ebpf.CollectionSpec) {
	for name, ms := range spec.Maps {
		if n, ok := ringBufferBytes[name]; ok && ms.Type == ebpf.RingBuf {
			ms.MaxEntries = n
		}
	}
}

// VerifierLogEnv is the variable that, set to anything, makes the binary
// and the tests print the whole verifier log of a program the kernel
// refuses (Config.VerifierLog).
const VerifierLogEnv = "OOMTRACE_VERIFIER_LOG"

// DefaultRefusalWindow is how long repeats of a refusal are folded into one line.
const DefaultRefusalWindow = time.Second

// Config selects hooks and sizes. The zero value picks every hook
// automatically and does not watch commit refusals.
type Config struct {
	// DecisionHook is auto, fentry, kprobe or none (oom_kill_process).
	DecisionHook string
	// VictimHook is auto, tp_btf or tracepoint (mark_victim).
	VictimHook string
	// RingBufferBytes is the size of the OOM ring buffer: a power of two
	// and a multiple of the page size. 0 means DefaultRingBufferBytes.
	RingBufferBytes int
	// SignalNodeBudget bounds the task signal records a second across the
	// node past each target cgroup's first four (each has 32); 0 means
	// DefaultSignalNodeBudget.
	SignalNodeBudget uint32
	// GroupRecords is how many kills of one memory.oom.group decision
	// get a record; the rest are counted on the first one (Folded). 0
	// means DefaultGroupRecords.
	GroupRecords uint32

	// Refusals turns on the commit refusal hooks.
	Refusals bool
	// RefusalsOptional: when no refusal hook can attach (no tracefs, no
	// permission on it), run without refusals, with one warning, instead
	// of failing. For refusals on by default rather than asked for.
	RefusalsOptional bool
	// RefusalHook is auto, fexit, kretprobe or none (__vm_enough_memory).
	RefusalHook string
	// RefusalWindow folds repeats; 0 means DefaultRefusalWindow.
	RefusalWindow time.Duration

	// KernelBTF is a path to the kernel's BTF; empty means the running
	// kernel's /sys/kernel/btf/vmlinux.
	KernelBTF string
	// TracefsPath is where kprobe and classic tracepoint hooks expect
	// tracefs. Empty means /sys/kernel/tracing. It is mounted if absent.
	TracefsPath string
	// ProcfsPath is where the host's procfs is mounted; empty means /proc.
	ProcfsPath string
	// PinPath, on a bpffs, keeps the hooks attached and recording into
	// their ring buffers after the process ends, for the next one to
	// adopt (DefaultPinPath); empty: everything ends with the process.
	// /sys/fs/bpf is mounted if need be (PreparePinPath).
	PinPath string
	// PinOptional: when PinPath is not on a BPF filesystem, run unpinned
	// with one warning instead of failing. For pinning on by default
	// rather than asked for.
	PinOptional bool
	// Node is written into every event.
	Node string
	// VerifierLog receives the whole verifier log of a program the kernel
	// refuses; nil: only the error's summary.
	VerifierLog io.Writer
	// Logger receives hook selection and diagnostics; nil discards them.
	Logger *slog.Logger
}

// Validate reports the first setting of cfg that New would reject.
func (cfg Config) Validate() error {
	checks := []struct {
		what, v string
		allowed []string
	}{
		{"decision hook", cfg.DecisionHook, DecisionHookChoices},
		{"victim hook", cfg.VictimHook, VictimHookChoices},
		{"refusal hook", cfg.RefusalHook, RefusalHookChoices},
	}
	for _, c := range checks {
		if c.v == "" {
			continue
		}
		if !contains(c.allowed, c.v) {
			return fmt.Errorf("%s %q: must be one of %s", c.what, c.v, strings.Join(c.allowed, ", "))
		}
	}
	if cfg.RingBufferBytes != 0 {
		if err := CheckRingBufferBytes(cfg.RingBufferBytes); err != nil {
			return err
		}
	}
	if cfg.RefusalWindow < 0 {
		return fmt.Errorf("refusal window %v: must not be negative", cfg.RefusalWindow)
	}
	return nil
}

func contains(list []string, v string) bool {
	for _, a := range list {
		if a == v {
			return true
		}
	}
	return false
}

// CheckRingBufferBytes says whether n bytes can be the size of a ring
// buffer: a power of two of at least a page.
func CheckRingBufferBytes(n int) error {
	page := os.Getpagesize()
	if n < page || n&(n-1) != 0 {
		return fmt.Errorf("ring buffer size %d: must be a power of two of at least %d bytes", n, page)
	}
	return nil
}

// Stats are the tracer's counters: the kernel's since the maps were made
// (pinned: across restarts, as long as the record layout stays), the
// decoders' since this tracer was created.
type Stats struct {
	Sent         uint64 // OOM kill records the kernel wrote
	Lost         uint64 // OOM kill records the kernel dropped: the ring buffer was full
	Decoded      uint64 // OOM kill records decoded into events
	DecodeErrors uint64 // records of either kind that could not be decoded
	// ExitingMarked counts tasks the OOM killer found exiting already and
	// did not kill (mark_victim without its SIGKILL): not reported as kills.
	ExitingMarked uint64

	RefusalsFailed uint64 // failed calls the kernel saw: exact
	RefusalsSent   uint64 // refusal records the kernel wrote (first of each window)
	RefusalsLost   uint64 // refusal records the ring buffer had no room for

	SignalsSent uint64 // task signal records the kernel wrote
	SignalsLost uint64 // task signal records the ring buffer had no room for
	// SignalsLimited are task signals not recorded: their target's cgroup
	// had had its budget of records (32 a second) already.
	SignalsLimited uint64
}

// Handlers receive events. They are never called concurrently.
type Handlers struct {
	// OOMKill receives each kill with its commit: the kill's record stays
	// in the ring buffer until commit is called, so that a successor that
	// takes over after this process dies reads again what it had not
	// written out. Call commit once, when the kill is written or dropped
	// for good (from any goroutine); a handler that keeps nothing calls
	// it before it returns. A nil OOMKill commits every kill at once.
	OOMKill       func(ev event.OOMKill, commit func())
	CommitRefusal func(event.CommitRefusal)
	// TaskSignal receives SIGTERMs and SIGKILLs to processes other than
	// the OOM killer's (needs the signal hook).
	TaskSignal func(event.TaskSignal)
}

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

// prepared is cfg checked, with its defaults filled in and its pin path
// made ready (or dropped, when optional and impossible), and its logger.
func (cfg Config) prepared() (Config, *slog.Logger, error) {
	if err := cfg.Validate(); err != nil {
		return cfg, nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.RingBufferBytes == 0 {
		cfg.RingBufferBytes = DefaultRingBufferBytes
	}
	if cfg.RefusalWindow == 0 {
		cfg.RefusalWindow = DefaultRefusalWindow
	}
	if cfg.ProcfsPath == "" {
		cfg.ProcfsPath = "/proc"
	}
	if cfg.PinPath != "" {
		if err := PreparePinPath(cfg.PinPath); err != nil {
			if !cfg.PinOptional {
				return cfg, nil, fmt.Errorf("pin: %w", err)
			}
			log.Warn("hooks not pinned: what happens while oomtrace is down is not recorded (the kernel's count still shows it)", "reason", err)
			cfg.PinPath = ""
		}
	}
	return cfg, log, nil
}

// collectionOptions are the options every load of this start shares.
func collectionOptions(cfg Config) (ebpf.CollectionOptions, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return ebpf.CollectionOptions{}, fmt.Errorf("remove memlock limit: %w", err)
	}
	// One decoding of the kernel's BTF for every load of this start (the
	// library decodes it again for each load otherwise), dropped with
	// the options when New returns.
	opts := ebpf.CollectionOptions{Cache: btf.NewCache()}
	if cfg.KernelBTF != "" {
		kernelTypes, err := btf.LoadSpec(cfg.KernelBTF)
		if err != nil {
			return opts, fmt.Errorf("load kernel BTF %s: %w", cfg.KernelBTF, err)
		}
		opts.Programs.KernelTypes = kernelTypes
	}
	return opts, nil
}

// tracefsExplainer mounts tracefs if need be (kprobes and classic
// tracepoints are found through it, and the library looks for it only
// once: before the first attempt) and returns what explains a missing
// hook: without tracefs it is tracefs's fault, and the one line the user
// sees says so and how to fix it (the per-hook reasons are in the log).
func tracefsExplainer(cfg Config, log *slog.Logger) func(error) error {
	tracefsErr := ensureTracefs(cfg.TracefsPath)
	if tracefsErr != nil {
		log.Warn("tracefs unavailable: kprobe and tracepoint hooks will fail", "err", tracefsErr)
	}
	return func(err error) error {
		var nh *NoHookError
		if tracefsErr == nil || !errors.As(err, &nh) {
			return err
		}
		hint := "mount tracefs (mount -t tracefs nodev " + DefaultTracefs + "; in a container, mount the host's)"
		if cfg.Refusals {
			hint += ", or run with --refusals=false (OOM kills need only tp_btf)"
		}
		nh.Detail = fmt.Sprintf(" without tracefs (%v); %s", tracefsErr, hint)
		return nh
	}
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

// flush ends every reader after what is already in its ring buffer.
func (t *Tracer) flush() {
	t.oom.kills.Flush()
	t.oom.signals.Flush()
	if t.refusal != nil {
		t.refusal.reader.Flush()
	}
}

// Hooks returns the hooks in use.
func (t *Tracer) Hooks() Hooks { return t.hooks }

// Stats reads the kernel's counters and the decoders'.
func (t *Tracer) Stats() (Stats, error) {
	var s Stats
	if err := t.oom.stats(&s); err != nil {
		return Stats{}, err
	}
	if t.refusal != nil {
		if err := t.refusal.stats(&s); err != nil {
			return Stats{}, err
		}
	}
	s.DecodeErrors = t.diag.decodeErrors.Load()
	return s, nil
}

// perCPUStat is a slot of a per-CPU array of counters and where its sum
// goes.
type perCPUStat struct {
	index uint32
	sum   *uint64
}

// readPerCPU sums each slot of the table of m into its Stats field.
func readPerCPU(m *ebpf.Map, table []perCPUStat) error {
	for _, st := range table {
		v, err := sumPerCPU(m, st.index)
		if err != nil {
			return err
		}
		*st.sum = v
	}
	return nil
}

// sumPerCPU reads one slot of a per-CPU array of counters.
func sumPerCPU(m *ebpf.Map, idx uint32) (uint64, error) {
	var perCPU []uint64
	if err := m.Lookup(idx, &perCPU); err != nil {
		return 0, fmt.Errorf("read stats: %w", err)
	}
	var sum uint64
	for _, v := range perCPU {
		sum += v
	}
	return sum, nil
}

// diag is what both halves of the tracer report through: the log and the
// count of records that could not be decoded.
type diag struct {
	log          *slog.Logger
	decodeErrors atomic.Uint64
}

func (d *diag) decodeError(kind string, err error) {
	d.decodeErrors.Add(1)
	d.log.Warn("dropping undecodable record", "kind", kind, "err", err)
}

// Run reads events and passes them to h until ctx is done. It then detaches
// every hook, so no new events arrive, hands over every record still in the
// ring buffers and every pending refusal count, and returns nil. Records
// that cannot be decoded are counted and logged, not fatal.
func (t *Tracer) Run(ctx context.Context, h Handlers) error {
	var hmu sync.Mutex
	// Each kill goes out with the commit of its own record.
	oomKill := func(ev event.OOMKill) {
		commit := func() { t.oom.commit(ev.Seq) }
		if h.OOMKill == nil {
			commit()
			return
		}
		hmu.Lock()
		defer hmu.Unlock()
		h.OOMKill(ev, commit)
	}
	serial := Handlers{
		CommitRefusal: func(ev event.CommitRefusal) {
			if h.CommitRefusal != nil {
				hmu.Lock()
				defer hmu.Unlock()
				h.CommitRefusal(ev)
			}
		},
	}
	if h.TaskSignal != nil {
		serial.TaskSignal = func(ev event.TaskSignal) {
			hmu.Lock()
			defer hmu.Unlock()
			h.TaskSignal(ev)
		}
	}

	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			t.detach()
			t.flush()
		case <-stop:
		}
	}()

	go t.watchUnobserved(ctx)
	errs := make(chan error, 3)
	go func() { errs <- t.oom.run(oomKill) }()
	go func() { errs <- t.oom.runSignals(serial.TaskSignal) }()
	n := 2
	if t.refusal != nil {
		n++
		go func() { errs <- t.refusal.run(serial.CommitRefusal) }()
	}
	var first error
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil && first == nil {
			first = err
			// One reader failed: stop the others too.
			t.detach()
			t.flush()
		}
	}
	return first
}

// isEndOfStream tells a reader loop that the ring buffer was flushed or closed.
func isEndOfStream(err error) bool {
	return errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed)
}

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
