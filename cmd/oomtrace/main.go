// Command oomtrace reports every kernel OOM kill on this host as one JSON
// object per line on stdout.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/exporter-toolkit/web"
	flag "github.com/spf13/pflag"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter"
	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/clusterview"
	"github.com/oomtrace/oomtrace/internal/completeness"
	"github.com/oomtrace/oomtrace/internal/cri"
	"github.com/oomtrace/oomtrace/internal/enrich"
	"github.com/oomtrace/oomtrace/internal/kubeevents"
	"github.com/oomtrace/oomtrace/internal/nodememory"
	"github.com/oomtrace/oomtrace/internal/pipeline"
	"github.com/oomtrace/oomtrace/internal/postmortem"
	"github.com/oomtrace/oomtrace/tracer"
)

// outputDrainTimeout bounds how long a stop waits for a slow stdout.
const outputDrainTimeout = 5 * time.Second

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if os.Getenv(demoHogEnv) == "1" {
		runDemoHog()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process exit: 0 on a clean stop, 1 on a runtime
// failure, 2 on bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "demo" {
		return demo(stdout, stderr)
	}
	if len(args) > 0 && args[0] == "unpin" {
		return unpin(args[1:], stdout, stderr)
	}
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2 // printed by parseFlags
	}
	if opts.showVersion {
		fmt.Fprintln(stdout, "oomtrace", version)
		return 0
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: opts.level}))
	if limit := heapLimit(opts.memoryLimit); limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Info("Go heap kept below 90% of the container's memory limit", "limit", opts.memoryLimit, "gomemlimit", limit)
	}
	kubelet, err := kubeletSettings(opts, log)
	if err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 2
	}
	if err := serve(opts, kubelet, log, stdout); err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 1
	}
	return 0
}

// heapLimit is the soft limit of the Go heap for a container limit of
// containerLimit bytes: 90% of it (the rest: the binary's pages, the
// stacks, the BPF maps' user-space side). 0 when there is no limit or
// GOMEMLIMIT says otherwise.
func heapLimit(containerLimit int64) int64 {
	if containerLimit <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	return containerLimit / 10 * 9
}

// errOutput ends a run whose output failed; the failure is logged already.
var errOutput = errors.New("events could not be written")

// serve runs oomtrace until SIGINT or SIGTERM: it checks what would fail
// late (privileges, BTF, kubeconfig, the metrics port) before loading
// anything, then wires tracer -> pipeline -> sinks and the sources beside
// the tracer, and reports what it did when it stops.
func serve(opts options, kubelet nodememory.KubeletConfig, log *slog.Logger, stdout io.Writer) error {
	if err := checkPrivileges(); err != nil {
		return err
	}
	if _, err := os.Stat(opts.btfPath); err != nil {
		return fmt.Errorf("kernel BTF not found at %s (needs CONFIG_DEBUG_INFO_BTF=y or --btf.path): %w", opts.btfPath, errors.Unwrap(err))
	}
	node := opts.nodeName
	if node == "" {
		node, _ = os.Hostname()
	}
	kube, err := kubeClient(opts.kubeconfig)
	if err != nil {
		return err
	}
	if opts.kubeEvents && kube == nil {
		log.Warn("--kube.events: no API server configured; no Events are written")
	}
	var listener net.Listener
	if opts.listenAddr != "" {
		if listener, err = net.Listen("tcp", opts.listenAddr); err != nil {
			return fmt.Errorf("--web.listen-address: %w", err)
		}
		defer listener.Close()
	}

	tcfg := tracerConfig(opts, node, log)
	if tcfg.PinPath, err = pinPath(opts, log); err != nil {
		return err
	}
	t, err := tracer.New(tcfg)
	if err != nil {
		return err
	}
	defer t.Close()
	// Loading decoded the kernel's BTF and the programs: megabytes of heap
	// that are garbage now. An agent's idle footprint is what a node pays
	// for it: give them back at once rather than over minutes.
	debug.FreeOSMemory()
	accountant := newAccountant(t, opts.procfs, log)
	unobserved := func() (uint64, uint64, error) {
		if accountant == nil {
			return 0, 0, nil
		}
		return accountant.Unobserved(func() (uint64, error) { return t.Accounting().KernelCounted(), nil })
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// A closed stdout is an error to report, not a SIGPIPE death.
	signal.Ignore(syscall.SIGPIPE)
	// The ring buffer readers never wait for stdout: a slow or stuck reader
	// costs dropped (and counted) lines, not a stalled tracer.
	// A kill leaves the kernel's ring buffer once written out, or given
	// up on for good (a full queue, the filter): what a crash or a stop
	// leaves unwritten, the next oomtrace reads again.
	commit := func(ev event.Event) {
		if kill, ok := ev.(event.OOMKill); ok {
			t.Commit(kill.Seq)
		}
	}
	out := exporter.NewQueue(committing{eventWriter(opts.output, stdout), commit}, opts.queueSize, func(err error) {
		log.Error("cannot write events; stopping", "err", err)
		stop()
	}).OnFull(commit)

	enricher := &enrich.Enricher{}
	runtime, err := criClient(opts, log)
	if err != nil {
		return err
	}
	if runtime != nil {
		defer runtime.Close()
		enricher.Resolver = runtime
		// Stops with ctx: the runtime is listed ahead of events, so that
		// a container removed right after its kill is still named.
		go runtime.Run(ctx)
	}
	signals := nodeSignals(opts, kubelet, node, log)

	// Every source writes into the pipeline, which never makes it wait;
	// metrics count every event, the output gets what the filter keeps.
	metrics := exporter.NewMetrics(exporter.MetricsOptions{Retention: opts.retention})
	pipeOpts := pipeline.Options{
		Enricher: enricher, Sampler: signals, SampleEvery: opts.sampleEvery, CorrelationWindow: opts.corrWindow,
		Filter: enrich.NewFilter(opts.namespaces, opts.pods), Metrics: metrics, Out: out, QueueSize: opts.queueSize,
		Discarded: commit,
	}
	killStage(&pipeOpts, opts, log)
	var recorder *kubeevents.Recorder
	if kube != nil && opts.kubeEvents {
		recorder = kubeevents.New(kube, node)
		if err := recorder.Start(ctx); err != nil {
			return fmt.Errorf("--kube.events: %w", err)
		}
		defer recorder.Shutdown()
		pipeOpts.KubeEvents = recorder
		log.Info("writing an Event on the pod of every OOM kill", "reporting_controller", kubeevents.Controller)
	}
	pipe := pipeline.New(ctx, pipeOpts)
	status := newStatus(t, pipe, out, recorder, signals, unobserved)

	// The sources beside the tracer.
	if signals != nil {
		signals.Start(ctx, opts.sampleEvery, func(mp event.MemoryPressure) { pipe.Write(mp) })
	}
	go watchUnobserved(ctx, unobserved, log)
	if kube != nil {
		log.Info("watching the cluster for this node's evictions and MemoryPressure", "api", kube.Host, "node", node)
		go clusterview.New(kube, clusterview.Options{Node: node, Logger: log}).Run(ctx, clusterview.Handlers{
			Eviction:      func(ev event.Eviction) { pipe.Write(ev) },
			NodeCondition: func(ev event.NodeCondition) { pipe.Write(ev) },
			KubeletEvent:  metrics.ObserveKubeletEvent,
		})
	} else {
		log.Info("standalone: no API server configured; kernel events and node signals only")
	}
	var ready atomic.Bool
	if listener != nil {
		srv := serveMetrics(listener, opts.metricsPath, opts.webConfig, &ready, log, metrics, status)
		defer srv.Close()
	}

	hooks := t.Hooks()
	// The hooks are attached: events are being recorded from here on.
	ready.Store(true)
	log.Info("oomtrace started", "version", version, "node", node,
		"decision_hook", orNone(hooks.Decision), "victim_hook", hooks.Victim, "signal_hook", hooks.Signal,
		"refusal_hook", orNone(hooks.RefusalExact), "refusal_syscalls", len(hooks.RefusalSyscalls))

	err = t.Run(ctx, tracer.Handlers{
		OOMKill:       func(ev event.OOMKill) { pipe.Write(ev) },
		CommitRefusal: func(ev event.CommitRefusal) { pipe.Write(ev) },
		// Signals to pods' processes are kept for their evictions; they
		// are not written out. Recording one never waits.
		TaskSignal:  pipe.Signal,
		DeferCommit: true,
	})
	ready.Store(false)
	drain(t, pipe, out, unobserved, log)
	if tcfg.PinPath != "" {
		log.Info("the hooks stay attached and recording, pinned: the next oomtrace takes them over and reports what they recorded (oomtrace unpin removes them)",
			"pin_path", tcfg.PinPath, "generation", t.Generation())
	}
	if err != nil {
		return err
	}
	if out.Err() != nil {
		return errOutput
	}
	return nil
}

// newStatus is what oomtrace says of itself at a scrape: its hooks, its
// counters and the node's memory signals.
func newStatus(t *tracer.Tracer, pipe *pipeline.Pipeline, out *exporter.Queue, recorder *kubeevents.Recorder, signals *nodememory.Sampler, unobserved func() (uint64, uint64, error)) *exporter.Status {
	var kubeEvents func() (uint64, uint64)
	if recorder != nil {
		kubeEvents = func() (uint64, uint64) { return recorder.Sent(), recorder.Dropped() }
	}
	return exporter.NewStatus(exporter.StatusOptions{
		KubeEvents: kubeEvents,
		Version:    version,
		Hooks:      hookInfo(t.Hooks()),
		Stats: func() (exporter.PipelineStats, error) {
			s, err := t.Stats()
			if err != nil {
				return exporter.PipelineStats{}, err
			}
			missed, _, err := unobserved()
			return exporter.PipelineStats{OOMKillsLost: s.Lost, CommitRefusalsLost: s.RefusalsLost, TaskSignalsLost: s.SignalsLost, TaskSignalsLimited: s.SignalsLimited, DecodeErrors: s.DecodeErrors,
				OutputDropped: pipe.Dropped() + out.Dropped(), OOMKillsUnobserved: missed}, err
		},
		NodeMemory: func() (event.NodeMemory, bool) {
			if signals == nil {
				return event.NodeMemory{}, false
			}
			return signals.Sample()
		},
	})
}

// newAccountant counts the kills no hook saw since the hooks started
// counting (pinned: since oomtrace first started on this boot), and says
// what it found at start; nil (logged) where the kernel does not count
// kills.
func newAccountant(t *tracer.Tracer, procfs string, log *slog.Logger) *completeness.Accountant {
	acc := t.Accounting()
	if !acc.KernelCounts {
		log.Warn("kills the hooks miss are not counted: the kernel does not count OOM kills (oom_kill in vmstat, since 4.13)")
		return nil
	}
	a := completeness.NewAccountant(func() (uint64, error) { return completeness.ReadKernelKills(procfs) }, acc.KernelKillsAtCreate)
	missed, _, err := a.Unobserved(func() (uint64, error) { return t.Accounting().KernelCounted(), nil })
	if err != nil {
		log.Warn("kills the hooks miss are not counted", "err", err)
		return nil
	}
	if t.Adopted() {
		log.Info("took over the hooks an earlier oomtrace pinned: they recorded while no oomtrace ran, and the kills it did not write out are read now",
			"generation", t.Generation(), "hooks_since", acc.Created.Format(time.RFC3339), "kills_hooked", acc.Kills(), "unobserved", missed)
	}
	log.Info("the kernel's count of OOM kills before the hooks first attached; oomtrace counts every kill no hook sees from then on (oomtrace_oom_kills_unobserved_total)",
		"before_hooks", a.Start(), "unobserved", missed)
	if missed > 0 {
		log.Warn("the kernel killed tasks that no hook saw", "unobserved", missed)
	}
	return a
}

// pinPath is where the tracer pins, "" for nowhere: with --pin (the
// default) the pin path, if it is on a BPF filesystem (/sys/fs/bpf is
// mounted if need be); else, unless pinning was asked for explicitly, a
// warning and nowhere.
func pinPath(opts options, log *slog.Logger) (string, error) {
	if !opts.pin {
		if _, err := os.Stat(opts.pinPath); err == nil {
			log.Warn("an earlier oomtrace's pinned hooks are still attached and recording, unread; oomtrace unpin removes them", "pin_path", opts.pinPath)
		}
		return "", nil
	}
	err := tracer.PreparePinPath(opts.pinPath)
	if err == nil {
		return opts.pinPath, nil
	}
	if opts.pinAsked {
		return "", fmt.Errorf("--pin: %w", err)
	}
	log.Warn("hooks not pinned: what happens while oomtrace is down is not recorded (the kernel's count still shows it)", "reason", err)
	return "", nil
}

// committing is the output: it commits every kill it wrote.
type committing struct {
	exporter.Sink
	commit func(event.Event)
}

func (c committing) Write(ev event.Event) error {
	if err := c.Sink.Write(ev); err != nil {
		return err
	}
	c.commit(ev)
	return nil
}

// killStage sets what the pipeline does with a kill besides attributing
// it: the post-mortem of its domain, and whether its container survived.
func killStage(po *pipeline.Options, opts options, log *slog.Logger) {
	memory, err := cgroup.FindMemory(opts.procfs)
	if err != nil {
		log.Warn("no memory cgroup hierarchy: no post-mortems, and whether a killed process's container survived is not checked", "err", err)
		return
	}
	if opts.containerCheck > 0 {
		po.ContainerCheckDelay, po.ContainerAlive = opts.containerCheck, memory.Populated
	}
	po.PostMortem = &postmortem.Reader{Memory: memory, Procfs: opts.procfs, MemoryStat: opts.pmMemoryStat, TopTasks: opts.pmTopTasks}
}

// drain ends a run: the pipeline writes what it still holds to the output
// queue, which writes it out (each waiting at most outputDrainTimeout),
// and the counters are logged.
func drain(t *tracer.Tracer, pipe *pipeline.Pipeline, out *exporter.Queue, unobserved func() (uint64, uint64, error), log *slog.Logger) {
	if !pipe.Close(outputDrainTimeout) {
		log.Warn("pipeline still busy; giving up on the queued events", "timeout", outputDrainTimeout)
	}
	if !out.Close(outputDrainTimeout) {
		log.Warn("output still blocked; giving up on the queued events", "timeout", outputDrainTimeout)
	}
	stats, err := t.Stats()
	if err != nil {
		return
	}
	log.Info("oomtrace stopped", "sent", stats.Sent, "lost", stats.Lost,
		"decoded", stats.Decoded, "decode_errors", stats.DecodeErrors, "exiting", stats.ExitingMarked,
		"refusals", stats.RefusalsFailed, "refusal_records", stats.RefusalsSent, "refusal_records_lost", stats.RefusalsLost,
		"signals", stats.SignalsSent, "signals_lost", stats.SignalsLost, "signals_limited", stats.SignalsLimited,
		"written", out.Written(), "filtered", pipe.Filtered(), "output_dropped", pipe.Dropped()+out.Dropped())
	if missed, _, err := unobserved(); err == nil && missed > 0 {
		log.Warn("the kernel killed tasks that no hook saw while oomtrace ran", "unobserved", missed)
	}
}

// watchUnobserved says, every 10 s, when the kernel killed a task that no
// hook saw.
func watchUnobserved(ctx context.Context, unobserved func() (uint64, uint64, error), log *slog.Logger) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if total, grew, err := unobserved(); err == nil && grew > 0 {
				log.Warn("the kernel killed tasks that no hook saw", "new", grew, "unobserved", total)
			}
		}
	}
}

// tracerConfig is the tracer's part of the options.
func tracerConfig(opts options, node string, log *slog.Logger) tracer.Config {
	btfPath := opts.btfPath
	if btfPath == defaultBTF {
		btfPath = "" // the library finds the running kernel's BTF itself
	}
	return tracer.Config{
		DecisionHook:    opts.decisionHook,
		VictimHook:      opts.victimHook,
		RingBufferBytes: opts.ringBuffer,
		Refusals:        opts.refusals,
		// On by default, refusals must not cost the OOM kills: without a
		// hook for them (no tracefs) oomtrace warns and goes on.
		RefusalsOptional: !opts.refusalsAsked,
		RefusalHook:      opts.refusalHook,
		RefusalWindow:    opts.refusalWin,
		ProcfsPath:       opts.procfs,
		KernelBTF:        btfPath,
		Node:             node,
		Logger:           log,
	}
}

// eventWriter is the sink of --output (validated already).
func eventWriter(format string, stdout io.Writer) exporter.Sink {
	if format == "text" {
		return exporter.NewText(stdout)
	}
	return exporter.NewJSON(stdout)
}

// serveMetrics serves /metrics, /healthz and /readyz on listener, with the
// TLS and basic authentication of webConfig (exporter-toolkit's; empty:
// plain HTTP), until the returned server is closed.
func serveMetrics(listener net.Listener, path, webConfig string, ready *atomic.Bool, log *slog.Logger, collectors ...prometheus.Collector) *http.Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors...)
	reg.MustRegister(promcollectors.NewGoCollector(), promcollectors.NewProcessCollector(promcollectors.ProcessCollectorOpts{}))
	// A scraper's failed TLS handshake is the scraper's problem: at debug
	// level, in the log's format.
	srv := exporter.NewServer(exporter.Handler(reg, path, ready), slog.NewLogLogger(log.Handler(), slog.LevelDebug))
	listener = exporter.LimitListener(listener, exporter.MaxConnections)
	go func() {
		err := web.Serve(listener, srv, &web.FlagConfig{WebConfigFile: &webConfig}, log.With("component", "web"))
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "address", listener.Addr().String(), "path", path, "tls_and_auth", webConfig != "")
	return srv
}

// nodeSignals returns the sampler of the node's memory signals, or nil when
// they cannot be read here (logged; the rest works without them).
func nodeSignals(opts options, kubelet nodememory.KubeletConfig, node string, log *slog.Logger) *nodememory.Sampler {
	src, err := nodememory.Detect(opts.procfs, opts.kubepods)
	if err == nil && opts.kubepods == "" && kubelet.Kubepods != "" {
		// What the kubelet's config says, if it is there; else what
		// Detect found (an empty config names the default root).
		if fromConfig, err := nodememory.Detect(opts.procfs, kubelet.Kubepods); err == nil {
			src = fromConfig
		}
	}
	if err != nil {
		log.Warn("node memory signals unavailable", "err", err)
		return nil
	}
	th := kubelet.Thresholds
	// Read once to check and log, outside the sampler: its first sample
	// (in Start, once the pipeline exists) reports a signal already below.
	nm, err := src.Read(th, time.Now())
	if err != nil {
		log.Warn("node memory signals unreadable", "root", src.Root, "err", err)
		return nil
	}
	kubepodsDir := ""
	if src.Kubepods != "" {
		kubepodsDir = src.Dir(src.Kubepods)
	}
	s := nodememory.NewSampler(src, th, nodememory.SamplerOptions{Node: node, Logger: log, Soft: kubelet.Soft, SoftGrace: kubelet.SoftGrace})
	attrs := []any{"thresholds", th.String(), "soft_thresholds", kubelet.Soft.String(), "enforce_node_allocatable", strings.Join(kubelet.EnforceNodeAllocatable, ","),
		"memory_hierarchy", src.Root, "kubepods", kubepodsDir, "memory_available", nm.MemoryAvailable.AvailableBytes}
	if a := nm.AllocatableMemoryAvailable; a != nil {
		attrs = append(attrs, "allocatable_memory_available", a.AvailableBytes)
	}
	log.Info("node memory signals", attrs...)
	return s
}

// criClient connects to the container runtime, or returns nil when there
// is none to use: events then carry what their cgroup paths say.
func criClient(opts options, log *slog.Logger) (*cri.Client, error) {
	endpoint := opts.criEndpoint
	switch endpoint {
	case "none":
		return nil, nil
	case "":
		if endpoint = cri.DetectEndpoint(opts.runDir); endpoint == "" {
			log.Info("no container runtime socket found; containers and pods from cgroup paths only, without names",
				"run_dir", opts.runDir, "tried", strings.Join(cri.DefaultSockets, ","))
			return nil, nil
		}
	default:
		if _, err := os.Stat(strings.TrimPrefix(endpoint, "unix://")); err != nil {
			// It may start later: keep trying, say so once.
			log.Warn("container runtime socket not there (yet); names will follow when it is", "endpoint", endpoint, "err", errors.Unwrap(err))
		}
	}
	c, err := cri.New(cri.Options{Endpoint: endpoint, Retention: opts.criRetention, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--cri.endpoint: %w", err)
	}
	log.Info("naming containers through CRI", "endpoint", endpoint)
	return c, nil
}

// hookInfo lists the hooks in use for oomtrace_hook_info.
func hookInfo(h tracer.Hooks) []exporter.Hook {
	hooks := []exporter.Hook{
		{Event: "oom_decision", Hook: orNone(h.Decision)},
		{Event: "oom_victim", Hook: h.Victim},
		{Event: "oom_kill_signal", Hook: orNone(h.Signal)},
	}
	if h.RefusalsOff != "" {
		hooks = append(hooks, exporter.Hook{Event: "commit_refusal", Hook: "none"})
	}
	if len(h.RefusalSyscalls) > 0 {
		hooks = append(hooks, exporter.Hook{Event: "commit_refusal_exact", Hook: orNone(h.RefusalExact)})
		for _, s := range h.RefusalSyscalls {
			hooks = append(hooks, exporter.Hook{Event: "commit_refusal", Hook: s})
		}
	}
	return hooks
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
