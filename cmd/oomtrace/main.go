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
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	flag "github.com/spf13/pflag"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter"
	"github.com/oomtrace/oomtrace/internal/clusterview"
	"github.com/oomtrace/oomtrace/internal/correlate"
	"github.com/oomtrace/oomtrace/internal/cri"
	"github.com/oomtrace/oomtrace/internal/enrich"
	"github.com/oomtrace/oomtrace/internal/nodememory"
	"github.com/oomtrace/oomtrace/internal/pipeline"
	"github.com/oomtrace/oomtrace/tracer"
)

// outputDrainTimeout bounds how long a stop waits for a slow stdout.
const outputDrainTimeout = 5 * time.Second

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type options struct {
	output       string
	decisionHook string
	victimHook   string
	ringBuffer   int
	refusals     bool
	// refusalsAsked: --refusals or --hook.refusal set by the user (flag
	// or environment); refusals are then required, not best effort.
	refusalsAsked bool
	refusalHook   string
	refusalWin    time.Duration
	btfPath       string
	nodeName      string
	logLevel      string
	showVersion   bool
	listenAddr    string
	metricsPath   string
	retention     time.Duration
	procfs        string
	queueSize     int
	criEndpoint   string
	runDir        string
	criRetention  time.Duration
	namespaces    []string
	pods          []string
	evictionHard  string
	enforceAlloc  []string
	kubeletCfg    string
	kubepods      string
	sampleEvery   time.Duration
	kubeconfig    string
	corrWindow    time.Duration
}

const defaultBTF = "/sys/kernel/btf/vmlinux"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process exit: 0 on a clean stop, 1 on a runtime
// failure, 2 on bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if opts.showVersion {
		fmt.Fprintln(stdout, "oomtrace", version)
		return 0
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.logLevel)); err != nil {
		fmt.Fprintf(stderr, "oomtrace: --log.level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var writer exporter.Sink
	switch opts.output {
	case "json":
		writer = exporter.NewJSON(stdout)
	case "text":
		writer = exporter.NewText(stdout)
	default:
		fmt.Fprintf(stderr, "oomtrace: --output must be json or text, not %q\n", opts.output)
		return 2
	}
	if opts.queueSize < 1 {
		fmt.Fprintf(stderr, "oomtrace: --output.queue must be at least 1, not %d\n", opts.queueSize)
		return 2
	}

	cfg := tracer.Config{
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
	}
	if !strings.HasPrefix(opts.metricsPath, "/") {
		fmt.Fprintf(stderr, "oomtrace: --web.telemetry-path must start with /, not %q\n", opts.metricsPath)
		return 2
	}
	if opts.retention < 0 {
		fmt.Fprintf(stderr, "oomtrace: --metrics.retention must not be negative, not %v\n", opts.retention)
		return 2
	}
	if opts.refusalWin <= 0 {
		fmt.Fprintf(stderr, "oomtrace: --refusal.window must be positive, not %v\n", opts.refusalWin)
		return 2
	}
	if opts.criRetention <= 0 {
		fmt.Fprintf(stderr, "oomtrace: --cri.retention must be positive, not %v\n", opts.criRetention)
		return 2
	}
	if opts.sampleEvery <= 0 {
		fmt.Fprintf(stderr, "oomtrace: --node.sample-interval must be positive, not %v\n", opts.sampleEvery)
		return 2
	}
	if opts.corrWindow <= 0 {
		fmt.Fprintf(stderr, "oomtrace: --correlation.window must be positive, not %v\n", opts.corrWindow)
		return 2
	}
	kubelet, err := kubeletSettings(opts, log)
	if err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 2
	}
	for _, p := range opts.pods {
		if ns, name, ok := strings.Cut(p, "/"); p == "" || ok && (ns == "" || name == "" || strings.Contains(name, "/")) {
			fmt.Fprintf(stderr, "oomtrace: --filter.pod must be NAME or NAMESPACE/NAME, not %q\n", p)
			return 2
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 2
	}

	if err := checkPrivileges(); err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 1
	}
	if _, err := os.Stat(opts.btfPath); err != nil {
		fmt.Fprintf(stderr, "oomtrace: kernel BTF not found at %s (needs CONFIG_DEBUG_INFO_BTF=y or --btf.path): %v\n", opts.btfPath, errors.Unwrap(err))
		return 1
	}

	node := opts.nodeName
	if node == "" {
		node, _ = os.Hostname()
	}
	// A bad kubeconfig is a quick, clear error: before loading anything.
	kube, kubeHost, err := kubeClient(opts.kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 1
	}
	btfPath := opts.btfPath
	if btfPath == defaultBTF {
		btfPath = "" // the library finds the running kernel's BTF itself
	}
	// Listen before loading anything: a taken port is a quick, clear error.
	var listener net.Listener
	if opts.listenAddr != "" {
		listener, err = net.Listen("tcp", opts.listenAddr)
		if err != nil {
			fmt.Fprintf(stderr, "oomtrace: --web.listen-address: %v\n", err)
			return 1
		}
		defer listener.Close()
	}

	cfg.KernelBTF, cfg.Node, cfg.Logger = btfPath, node, log
	t, err := tracer.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 1
	}
	defer t.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// A closed stdout is an error to report, not a SIGPIPE death.
	signal.Ignore(syscall.SIGPIPE)
	// The ring buffer readers never wait for stdout: a slow or stuck reader
	// costs dropped (and counted) lines, not a stalled tracer.
	out := exporter.NewQueue(writer, opts.queueSize, func(err error) {
		log.Error("cannot write events; stopping", "err", err)
		stop()
	})

	enricher := &enrich.Enricher{}
	if runtime, err := criClient(opts, log); err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 1
	} else if runtime != nil {
		defer runtime.Close()
		enricher.Resolver = runtime
		// Stops with ctx: the runtime is listed ahead of events, so that
		// a container removed right after its kill is still named.
		go runtime.Run(ctx)
	}

	signals := nodeSignals(opts, kubelet, node, log)
	var pipe *pipeline.Pipeline // set below, before the metrics server (the only caller of Stats) starts
	metrics := exporter.NewMetrics(exporter.MetricsOptions{
		NodeMemory: func() (event.NodeMemory, bool) {
			if signals == nil {
				return event.NodeMemory{}, false
			}
			return signals.Sample()
		},
		Retention: opts.retention,
		Version:   version,
		Hooks:     hookInfo(t.Hooks()),
		Stats: func() (exporter.PipelineStats, error) {
			s, err := t.Stats()
			return exporter.PipelineStats{OOMKillsLost: s.Lost, CommitRefusalsLost: s.RefusalsLost, TaskSignalsLost: s.SignalsLost, DecodeErrors: s.DecodeErrors,
				OutputDropped: pipe.Dropped() + out.Dropped()}, err
		},
	})
	// Every source writes into the pipeline, which never makes it wait;
	// metrics count every event, the output gets what the filter keeps.
	pipe = pipeline.New(ctx, pipeline.Options{
		Enricher: enricher, Sampler: signals, SampleEvery: opts.sampleEvery, CorrelationWindow: opts.corrWindow,
		Filter: enrich.NewFilter(opts.namespaces, opts.pods), Metrics: metrics, Out: out, QueueSize: opts.queueSize,
	})
	if signals != nil {
		signals.Start(ctx, opts.sampleEvery, func(mp event.MemoryPressure) { pipe.Write(mp) })
	}
	if kube != nil {
		log.Info("watching the cluster for this node's evictions and MemoryPressure", "api", kubeHost, "node", node)
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
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		srv := &http.Server{Handler: exporter.Handler(reg, opts.metricsPath, &ready), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server stopped", "err", err)
			}
		}()
		defer srv.Close()
		log.Info("serving metrics", "address", listener.Addr().String(), "path", opts.metricsPath)
	}

	hooks := t.Hooks()
	decision := orNone(hooks.Decision)
	// The hooks are attached: events are being recorded from here on.
	ready.Store(true)
	log.Info("oomtrace started", "version", version, "node", node,
		"decision_hook", decision, "victim_hook", hooks.Victim, "signal_hook", hooks.Signal,
		"refusal_hook", orNone(hooks.RefusalExact), "refusal_syscalls", len(hooks.RefusalSyscalls))

	err = t.Run(ctx, tracer.Handlers{
		OOMKill:       func(ev event.OOMKill) { pipe.Write(ev) },
		CommitRefusal: func(ev event.CommitRefusal) { pipe.Write(ev) },
		// Signals to pods' processes are kept for their evictions; they
		// are not written out. Recording one never waits.
		TaskSignal: pipe.Signal,
	})
	ready.Store(false)
	// The pipeline first: what it still holds goes to the output queue.
	if !pipe.Close(outputDrainTimeout) {
		log.Warn("pipeline still busy; giving up on the queued events", "timeout", outputDrainTimeout)
	}
	if !out.Close(outputDrainTimeout) {
		log.Warn("output still blocked; giving up on the queued events", "timeout", outputDrainTimeout)
	}
	writeErr := out.Err()
	stats, statsErr := t.Stats()
	if statsErr == nil {
		log.Info("oomtrace stopped", "sent", stats.Sent, "lost", stats.Lost,
			"decoded", stats.Decoded, "decode_errors", stats.DecodeErrors, "exiting", stats.ExitingMarked,
			"refusals", stats.RefusalsFailed, "refusal_records", stats.RefusalsSent, "refusal_records_lost", stats.RefusalsLost,
			"signals", stats.SignalsSent, "signals_lost", stats.SignalsLost,
			"written", out.Written(), "filtered", pipe.Filtered(), "output_dropped", pipe.Dropped()+out.Dropped())
	}
	if err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 1
	}
	if writeErr != nil {
		return 1
	}
	return 0
}

// kubeletSettings are the kubelet's hard thresholds and its kubepods
// cgroup: from its config file when given and present, else
// --eviction-hard and --enforce-node-allocatable. A config file that is
// not there is a warning, not an error: a DaemonSet names one path for
// every node, and only some kubelets (kubeadm's) keep their config there.
func kubeletSettings(opts options, log *slog.Logger) (nodememory.KubeletConfig, error) {
	if opts.kubeletCfg != "" {
		kc, err := nodememory.ReadKubeletConfig(opts.kubeletCfg)
		if err == nil {
			return kc, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return kc, err
		}
		log.Warn("kubelet config not found; using --eviction-hard and --enforce-node-allocatable", "path", opts.kubeletCfg)
	}
	th, err := nodememory.ParseEvictionHard(opts.evictionHard, opts.enforceAlloc)
	if err != nil {
		return nodememory.KubeletConfig{}, fmt.Errorf("--eviction-hard: %w", err)
	}
	return nodememory.KubeletConfig{Thresholds: th, EnforceNodeAllocatable: opts.enforceAlloc}, nil
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
	s := nodememory.NewSampler(src, th, nodememory.SamplerOptions{Node: node, Logger: log})
	attrs := []any{"thresholds", th.String(), "enforce_node_allocatable", strings.Join(kubelet.EnforceNodeAllocatable, ","),
		"memory_hierarchy", src.Root, "kubepods", src.Kubepods, "memory_available", nm.MemoryAvailable.AvailableBytes}
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

// envName is the environment twin of a flag.
func envName(flagName string) string {
	return "OOMTRACE_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(flagName))
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("oomtrace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: oomtrace [flags]

Reports every kernel OOM kill (one event per killed task) and every
overcommit refusal on this host as JSON lines on stdout. Runs until SIGINT
or SIGTERM. Needs root, or CAP_BPF and CAP_PERFMON, and a kernel with BTF;
commit refusals also need tracefs (without it they are skipped, with a
warning, unless --refusals=true was given).
Serves Prometheus metrics on --web.listen-address.

Every flag can also be set in the environment: OOMTRACE_ and the flag's
name in capitals with . and - as _, e.g. OOMTRACE_WEB_LISTEN_ADDRESS.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.output, "output", "json", "event format: json (one object per line) or text (one readable line per event)")
	fs.StringVar(&o.decisionHook, "hook.decision", tracer.HookAuto, "hook for the OOM decision on oom_kill_process: auto, fentry, kprobe or none")
	fs.StringVar(&o.victimHook, "hook.victim", tracer.HookAuto, "hook for each killed task on mark_victim: auto, tp_btf or tracepoint")
	fs.IntVar(&o.queueSize, "output.queue", 8192, "events waiting for stdout at most; beyond that, with a slow reader, they are dropped and counted")
	fs.IntVar(&o.ringBuffer, "ringbuf.bytes", tracer.DefaultRingBufferBytes, "size of the OOM event ring buffer in bytes (a power of two)")
	fs.BoolVar(&o.refusals, "refusals", true, "report overcommit refusals (ENOMEM from mmap, brk, mremap, mprotect, fork, clone, shmget, execve); by default skipped with a warning where no hook attaches (no tracefs), set explicitly to make that an error")
	fs.StringVar(&o.refusalHook, "hook.refusal", tracer.HookAuto, "hook for exact commit refusals on __vm_enough_memory: auto, fexit, kretprobe or none")
	fs.DurationVar(&o.refusalWin, "refusal.window", tracer.DefaultRefusalWindow, "fold repeated refusals of one process, syscall and reason within this window into one line")
	fs.StringVar(&o.procfs, "path.procfs", "/proc", "the host's procfs (in a container: the host's /proc mounted, with hostPID)")
	fs.StringVar(&o.btfPath, "btf.path", defaultBTF, "kernel BTF file")
	fs.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "node name written into every event (default $NODE_NAME, else the host name)")
	fs.StringVar(&o.logLevel, "log.level", "info", "log level on stderr: debug, info, warn or error")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.StringVar(&o.listenAddr, "web.listen-address", ":9808", "address for /metrics, /healthz and /readyz; empty to serve nothing")
	fs.StringVar(&o.metricsPath, "web.telemetry-path", "/metrics", "path of the Prometheus metrics")
	fs.StringVar(&o.criEndpoint, "cri.endpoint", "", "container runtime CRI socket for container and pod names; empty: the first of "+strings.Join(cri.DefaultSockets, ", ")+" below --path.run that exists; none: cgroup paths only")
	fs.StringVar(&o.runDir, "path.run", "/run", "the host's /run, where container runtime sockets are looked for (in a container: the host's /run mounted)")
	fs.DurationVar(&o.criRetention, "cri.retention", cri.DefaultRetention, "keep naming containers this long after the runtime stops listing them")
	fs.StringArrayVar(&o.namespaces, "filter.namespace", nil, "write only events of pods in this namespace (repeatable); metrics still count all")
	fs.StringArrayVar(&o.pods, "filter.pod", nil, "write only events of this pod, NAME or NAMESPACE/NAME (repeatable); metrics still count all")
	fs.StringVar(&o.evictionHard, "eviction-hard", nodememory.DefaultEvictionHard, "the kubelet's hard eviction thresholds, in its --eviction-hard syntax (memory signals are used; percentages allowed)")
	fs.StringSliceVar(&o.enforceAlloc, "enforce-node-allocatable", []string{nodememory.EnforcePods}, "the kubelet's --enforce-node-allocatable: with pods in it, the memory.available threshold applies to allocatableMemory.available too; none: no allocatable threshold")
	fs.StringVar(&o.kubeletCfg, "kubelet.config", "", "read evictionHard, enforceNodeAllocatable and the kubepods cgroup (cgroupRoot, cgroupDriver) from this KubeletConfiguration file instead of the flags; a file that is not there is a warning and the flags apply")
	fs.StringVar(&o.kubepods, "kubepods-cgroup", "", "the kubepods cgroup in the memory hierarchy, for allocatableMemory.available; empty: from --kubelet.config, else /kubepods.slice or /kubepods")
	fs.DurationVar(&o.sampleEvery, "node.sample-interval", time.Second, "read the node's memory signals this often (and at every kernel event)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for the cluster view (evictions, MemoryPressure); empty: in-cluster when running in a pod, else none; none: off")
	fs.DurationVar(&o.corrWindow, "correlation.window", correlate.DefaultWindow, "a kernel OOM kill and a kubelet eviction of one pod this close are linked")
	fs.DurationVar(&o.retention, "metrics.retention", time.Hour, "drop the series of a pod or container that has not moved for this long; 0 keeps them forever")

	// Every flag has an environment twin, OOMTRACE_ and the flag's name in
	// capitals with . and - as _ (OOMTRACE_WEB_LISTEN_ADDRESS). A flag on
	// the command line wins.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", envErr)
		return o, envErr
	}
	_, refusalsEnv := os.LookupEnv(envName("refusals"))
	_, hookEnv := os.LookupEnv(envName("hook.refusal"))
	if err := fs.Parse(args); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "oomtrace: %v\n", err)
			fs.Usage()
		}
		return o, err
	}
	o.refusalsAsked = refusalsEnv || hookEnv || fs.Changed("refusals") || fs.Changed("hook.refusal")
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "oomtrace: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return o, errors.New("unexpected argument")
	}
	return o, nil
}
