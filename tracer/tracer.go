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

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/event"
)

// Hook choices for Config.DecisionHook and Config.VictimHook.
const (
	HookAuto       = "auto"
	HookNone       = "none"
	HookFentry     = "fentry"
	HookKprobe     = "kprobe"
	HookTpBtf      = "tp_btf"
	HookTracepoint = "tracepoint"
)

// DefaultRingBufferBytes holds about 1,200 OOM kill records: a burst of
// kills is read long before it fills.
const DefaultRingBufferBytes = 4 << 20

// Config selects hooks and sizes. The zero value picks everything automatically.
type Config struct {
	// DecisionHook is auto, fentry, kprobe or none (oom_kill_process).
	DecisionHook string
	// VictimHook is auto, tp_btf or tracepoint (mark_victim).
	VictimHook string
	// RingBufferBytes is the size of the OOM ring buffer: a power of two
	// and a multiple of the page size. 0 means DefaultRingBufferBytes.
	RingBufferBytes int
	// KernelBTF is a path to the kernel's BTF; empty means the running
	// kernel's /sys/kernel/btf/vmlinux.
	KernelBTF string
	// TracefsPath is where the classic tracepoint hook expects tracefs.
	// Empty means /sys/kernel/tracing. It is mounted there if absent.
	TracefsPath string
	// Node is written into every event.
	Node string
	// Logger receives hook selection and diagnostics; nil discards them.
	Logger *slog.Logger
}

// Hooks names the hooks in use.
type Hooks struct {
	Decision string // HookFentryOOMKillProcess, HookKprobeOOMKillProcess or "" for none
	Victim   string // HookTpBtfMarkVictim or HookTracepointMarkVictim
	// Signal tells real kills from exiting tasks that were only granted
	// reserves: HookTpBtfSignal, HookTracepointSignal, or "" when neither
	// attached (then every mark_victim is reported).
	Signal string
	// Tried records why each richer hook was passed over, by hook name.
	Tried map[string]error
}

// Stats are the tracer's counters since it was created.
type Stats struct {
	Sent         uint64 // OOM kill records the kernel wrote
	Lost         uint64 // OOM kill records the kernel dropped: the ring buffer was full
	Decoded      uint64 // records decoded into events
	DecodeErrors uint64 // records that could not be decoded
	// ExitingMarked counts tasks the OOM killer found exiting already and
	// did not kill (mark_victim without its SIGKILL): not reported as kills.
	ExitingMarked uint64
}

// Tracer owns the loaded programs, their links and the ring buffer reader.
type Tracer struct {
	log     *slog.Logger
	maps    oomtraceMaps
	progs   []*ebpf.Program
	links   []link.Link
	reader  *ringbuf.Reader
	hooks   Hooks
	decoder Decoder

	mu            sync.Mutex
	decoded       uint64
	decodeErrors  uint64
	exitingMarked uint64

	closeOnce sync.Once
	closeErr  error
}

// New loads the programs, attaches the richest hooks available and opens
// the ring buffer. On error everything set up so far is undone.
func New(cfg Config) (*Tracer, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.DecisionHook == "" {
		cfg.DecisionHook = HookAuto
	}
	if cfg.VictimHook == "" {
		cfg.VictimHook = HookAuto
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RingBufferBytes == 0 {
		cfg.RingBufferBytes = DefaultRingBufferBytes
	}

	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	spec, err := loadOomtrace()
	if err != nil {
		return nil, err
	}
	spec.Maps[oomtraceMapOomEvents].MaxEntries = uint32(cfg.RingBufferBytes)

	opts := ebpf.CollectionOptions{}
	if cfg.KernelBTF != "" {
		kernelTypes, err := btf.LoadSpec(cfg.KernelBTF)
		if err != nil {
			return nil, fmt.Errorf("load kernel BTF %s: %w", cfg.KernelBTF, err)
		}
		opts.Programs.KernelTypes = kernelTypes
	}

	t := &Tracer{log: log, hooks: Hooks{Tried: map[string]error{}}}
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()
	if err := spec.LoadAndAssign(&t.maps, &opts); err != nil {
		return nil, fmt.Errorf("load maps: %w", err)
	}
	opts.MapReplacements = map[string]*ebpf.Map{
		oomtraceMapOomEvents:   t.maps.OomEvents,
		oomtraceMapStats:       t.maps.Stats,
		oomtraceMapDecisions:   t.maps.Decisions,
		oomtraceMapKillSignals: t.maps.KillSignals,
	}

	decisionCands := decisionCandidates(cfg.DecisionHook)
	signalCands := signalCandidates(cfg.VictimHook)
	victimCands := victimCandidates(cfg.VictimHook)
	// kprobes and classic tracepoints are found through tracefs, and the
	// library looks for it only once: mount it before the first attempt.
	if needsTracefs(decisionCands) || needsTracefs(victimCands) || needsTracefs(signalCands) {
		if err := ensureTracefs(cfg.TracefsPath); err != nil {
			log.Warn("tracefs unavailable: kprobe and tracepoint hooks will fail", "err", err)
		}
	}

	decision, err := t.attachFirst(spec, &opts, decisionCands)
	if err != nil {
		return nil, fmt.Errorf("oom_kill_process: %w", err)
	}
	t.hooks.Decision = decision
	// Before the victim hook, so that no kill is seen without its signal.
	signal, err := t.attachFirst(spec, &opts, signalCands)
	if err != nil {
		return nil, fmt.Errorf("signal_generate: %w", err)
	}
	if signal == "" {
		log.Warn("no signal hook: tasks the OOM killer found exiting will be reported as kills too")
	}
	t.hooks.Signal = signal
	victim, err := t.attachFirst(spec, &opts, victimCands)
	if err != nil {
		return nil, fmt.Errorf("mark_victim: %w", err)
	}
	if victim == "" {
		return nil, fmt.Errorf("mark_victim: %w", t.noHookError(victimCands))
	}
	t.hooks.Victim = victim

	t.reader, err = ringbuf.NewReader(t.maps.OomEvents)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	t.decoder = Decoder{
		Node:     cfg.Node,
		PageSize: uint64(os.Getpagesize()),
		WallTime: bootToWall,
	}
	ok = true
	return t, nil
}

// ErrNoHook means no hook of a required kind could be attached.
var ErrNoHook = errors.New("no hook attachable")

func (t *Tracer) noHookError(cands []candidate) error {
	var reasons []string
	for _, c := range cands {
		if err := t.hooks.Tried[c.name]; err != nil {
			reasons = append(reasons, fmt.Sprintf("%s: %v", c.name, err))
		}
	}
	return fmt.Errorf("%w (%s)", ErrNoHook, strings.Join(reasons, "; "))
}

// candidate is one way to hook an event.
type candidate struct {
	name    string // hook name for events and logs
	program string // program name in the collection
	attach  func(*ebpf.Program) (link.Link, error)
	tracefs bool // attaching may need tracefs
}

func needsTracefs(cands []candidate) bool {
	for _, c := range cands {
		if c.tracefs {
			return true
		}
	}
	return false
}

func decisionCandidates(choice string) []candidate {
	fentry := candidate{HookFentryOOMKillProcess, oomtraceProgFentryOomKillProcess, func(p *ebpf.Program) (link.Link, error) {
		return link.AttachTracing(link.TracingOptions{Program: p})
	}, false}
	kprobe := candidate{HookKprobeOOMKillProcess, oomtraceProgKprobeOomKillProcess, func(p *ebpf.Program) (link.Link, error) {
		return link.Kprobe("oom_kill_process", p, nil)
	}, true}
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
	tpBtf := candidate{HookTpBtfSignal, oomtraceProgTpBtfSignalGenerate, func(p *ebpf.Program) (link.Link, error) {
		return link.AttachTracing(link.TracingOptions{Program: p})
	}, false}
	tracepoint := candidate{HookTracepointSignal, oomtraceProgTracepointSignalGenerate, func(p *ebpf.Program) (link.Link, error) {
		return link.Tracepoint("signal", "signal_generate", p, nil)
	}, true}
	if victimChoice == HookTracepoint {
		return []candidate{tracepoint}
	}
	return []candidate{tpBtf, tracepoint}
}

func victimCandidates(choice string) []candidate {
	tpBtf := candidate{HookTpBtfMarkVictim, oomtraceProgTpBtfMarkVictim, func(p *ebpf.Program) (link.Link, error) {
		return link.AttachTracing(link.TracingOptions{Program: p})
	}, false}
	tracepoint := candidate{HookTracepointMarkVictim, oomtraceProgTracepointMarkVictim, func(p *ebpf.Program) (link.Link, error) {
		return link.Tracepoint("oom", "mark_victim", p, nil)
	}, true}
	switch choice {
	case HookTpBtf:
		return []candidate{tpBtf}
	case HookTracepoint:
		return []candidate{tracepoint}
	}
	return []candidate{tpBtf, tracepoint}
}

// attachFirst loads and attaches candidates in order and keeps the first
// that works. A hook is probed by really loading and attaching it: program
// type probes are not reliable (tp_btf works where the Tracing type probe
// reports EPERM). It returns "" when there were no candidates or none worked.
func (t *Tracer) attachFirst(spec *ebpf.CollectionSpec, opts *ebpf.CollectionOptions, cands []candidate) (string, error) {
	for _, c := range cands {
		prog, err := loadProgram(spec, opts, c.program)
		if err == nil {
			var l link.Link
			l, err = c.attach(prog)
			if err == nil {
				t.progs = append(t.progs, prog)
				t.links = append(t.links, l)
				t.log.Info("attached hook", "hook", c.name)
				return c.name, nil
			}
			prog.Close()
			err = fmt.Errorf("attach: %w", err)
		}
		t.hooks.Tried[c.name] = err
		t.log.Info("hook unavailable, falling back", "hook", c.name, "reason", err)
	}
	return "", nil
}

// loadProgram loads one program of the collection with the shared maps.
func loadProgram(spec *ebpf.CollectionSpec, opts *ebpf.CollectionOptions, name string) (*ebpf.Program, error) {
	ps, ok := spec.Programs[name]
	if !ok {
		return nil, fmt.Errorf("program %s not in collection", name)
	}
	one := spec.Copy()
	one.Programs = map[string]*ebpf.ProgramSpec{name: ps.Copy()}
	coll, err := ebpf.NewCollectionWithOptions(one, *opts)
	if err != nil && errors.Is(err, unix.EPERM) {
		// The library suggests raising RLIMIT_MEMLOCK, but that limit is
		// already lifted: the kernel refuses this program type outright
		// (fentry where BPF trampolines are unavailable, lockdown).
		var ve *ebpf.VerifierError
		if !errors.As(err, &ve) {
			err = fmt.Errorf("program %s: kernel refused to load it: %w", name, unix.EPERM)
		}
	}
	if err != nil {
		if verbose := os.Getenv("OOMTRACE_VERIFIER_LOG"); verbose != "" {
			var ve *ebpf.VerifierError
			if errors.As(err, &ve) {
				fmt.Fprintf(os.Stderr, "%+v\n", ve)
			}
		}
		return nil, fmt.Errorf("load: %w", err)
	}
	prog := coll.DetachProgram(name)
	coll.Close()
	return prog, nil
}

// Hooks returns the hooks in use.
func (t *Tracer) Hooks() Hooks { return t.hooks }

// Stats reads the kernel's counters and the decoder's.
func (t *Tracer) Stats() (Stats, error) {
	var s Stats
	for idx, dst := range map[oomtraceStatIndex]*uint64{
		oomtraceStatIndexSTAT_OOM_SENT: &s.Sent,
		oomtraceStatIndexSTAT_OOM_LOST: &s.Lost,
	} {
		var perCPU []uint64
		if err := t.maps.Stats.Lookup(uint32(idx), &perCPU); err != nil {
			return Stats{}, fmt.Errorf("read stats: %w", err)
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	t.mu.Lock()
	s.Decoded, s.DecodeErrors, s.ExitingMarked = t.decoded, t.decodeErrors, t.exitingMarked
	t.mu.Unlock()
	return s, nil
}

// Run reads events and passes each to handle until ctx is done. It then
// detaches every hook, so no new events arrive, hands over every record
// still in the ring buffer and returns nil. Records that cannot be decoded
// are counted and logged, not fatal.
func (t *Tracer) Run(ctx context.Context, handle func(event.OOMKill)) error {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			t.detach()
			t.reader.Flush()
		case <-stop:
		}
	}()

	var rec ringbuf.Record
	for {
		err := t.reader.ReadInto(&rec)
		switch {
		case errors.Is(err, ringbuf.ErrFlushed), errors.Is(err, ringbuf.ErrClosed):
			return nil
		case err != nil:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		ev, sigkillSeen, err := t.decoder.DecodeOOMKill(rec.RawSample)
		exiting := err == nil && !sigkillSeen && t.hooks.Signal != ""
		t.mu.Lock()
		switch {
		case err != nil:
			t.decodeErrors++
		case exiting:
			t.exitingMarked++
		default:
			t.decoded++
		}
		t.mu.Unlock()
		if err != nil {
			t.log.Warn("dropping undecodable record", "err", err)
			continue
		}
		if exiting {
			t.log.Debug("OOM killer granted reserves to an exiting task; not a kill",
				"pid", ev.Victim.PID, "tgid", ev.Victim.TGID)
			continue
		}
		completeFromProcfs(&ev)
		handle(ev)
	}
}

// detach removes every hook; the programs stay loaded until Close.
func (t *Tracer) detach() {
	t.mu.Lock()
	links := t.links
	t.links = nil
	t.mu.Unlock()
	// Reverse order: the victim hook goes before the signal hook it needs.
	for i := len(links) - 1; i >= 0; i-- {
		if err := links[i].Close(); err != nil {
			t.log.Warn("detach hook", "err", err)
		}
	}
}

// Close detaches the hooks and frees every kernel object. It is safe to
// call more than once and concurrently with nothing else.
func (t *Tracer) Close() error {
	t.closeOnce.Do(func() {
		t.detach()
		var errs []error
		if t.reader != nil {
			errs = append(errs, t.reader.Close())
		}
		for _, p := range t.progs {
			errs = append(errs, p.Close())
		}
		errs = append(errs, t.maps.Close())
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

// Validate reports the first setting of cfg that New would reject.
func (cfg Config) Validate() error {
	if err := oneOf("decision hook", cfg.DecisionHook, "", HookAuto, HookFentry, HookKprobe, HookNone); err != nil {
		return err
	}
	if err := oneOf("victim hook", cfg.VictimHook, "", HookAuto, HookTpBtf, HookTracepoint); err != nil {
		return err
	}
	if cfg.RingBufferBytes != 0 {
		return validateRingBufferSize(cfg.RingBufferBytes)
	}
	return nil
}

func oneOf(what, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s %q: must be one of %s", what, v, strings.Join(allowed[1:], ", "))
}

func validateRingBufferSize(n int) error {
	page := os.Getpagesize()
	if n < page || n&(n-1) != 0 {
		return fmt.Errorf("ring buffer size %d: must be a power of two of at least %d bytes", n, page)
	}
	return nil
}
