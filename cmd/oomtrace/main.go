// SPDX-License-Identifier: Apache-2.0

// Command oomtrace reports every kernel OOM kill on this host as one JSON
// object per line on stdout.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/oomtrace/oomtrace/exporter"
	"github.com/oomtrace/oomtrace/exporter/kubeevents"
	"github.com/oomtrace/oomtrace/internal/cri"
	"github.com/oomtrace/oomtrace/internal/kube/clusterview"
	"github.com/oomtrace/oomtrace/internal/kube/kubeapi"
	"github.com/oomtrace/oomtrace/internal/kube/uninstall"
	"github.com/oomtrace/oomtrace/internal/memwatch"
	"github.com/oomtrace/oomtrace/internal/nodememory"
	"github.com/oomtrace/oomtrace/internal/pipeline"
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
	log := newLogger(opts, stderr)
	setMaxProcs(opts, log)
	if limit := heapLimit(opts.memoryLimit); limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Info("Go heap kept below 90% of the container's memory limit", "limit", opts.memoryLimit, "gomemlimit", limit)
	}
	kubelet, err := kubeletSettings(opts, log)
	if err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 2
	}
	if opts.cpuProfile != "" {
		stop, err := startCPUProfile(opts.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "oomtrace: --debug.cpu-profile: %v\n", err)
			return 2
		}
		defer stop()
	}
	if err := serve(opts, kubelet, log, stdout); err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 1
	}
	return 0
}

// newLogger is the log of --log.level and --log.format on stderr.
func newLogger(opts options, stderr io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: opts.level}
	if opts.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(stderr, ho))
	}
	return slog.New(slog.NewTextHandler(stderr, ho))
}

// startCPUProfile profiles the run into path until the returned stop.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
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

// agent is what serve wires together: the tracer, the pipeline and its
// outputs, and the sources beside the tracer.
type agent struct {
	opts     options
	log      *slog.Logger
	node     string
	kube     *kubeapi.Client      // nil: standalone
	view     *clusterview.Watcher // nil: standalone
	tracer   *tracer.Tracer
	runtime  *cri.Client         // nil: names from cgroup paths only
	signals  *nodememory.Sampler // nil: the node's signals cannot be read
	recorder *kubeevents.Recorder
	pressure *memwatch.Watcher // nil: --pressure.interval=0, or no memory hierarchy
	metrics  *exporter.Metrics
	pipe     *pipeline.Pipeline
	// uninstall tells an uninstall at stop (nil: not told); unpinAtExit:
	// it did, and the hooks are unpinned once the tracer has closed.
	uninstall   *uninstall.Watch
	unpinAtExit bool
	// kubeletFromFile: the kubelet's settings came from its config file.
	kubeletFromFile bool
}

// serve runs oomtrace until SIGINT or SIGTERM: it checks what would fail
// late (privileges, BTF, kubeconfig, the ports) before loading
// anything, then wires tracer -> pipeline -> outputs and the sources beside
// the tracer, and reports what it did when it stops.
func serve(opts options, kubelet nodememory.KubeletConfig, log *slog.Logger, stdout io.Writer) error {
	d := &agent{opts: opts, log: log, kubeletFromFile: kubelet.FromFile}
	ports, err := d.preflight()
	if err != nil {
		return err
	}
	defer ports.Close()
	if d.tracer, err = tracer.New(tracerConfig(opts, d.node, log)); err != nil {
		return err
	}
	// Deferred before the tracer's Close, so that it runs after it.
	defer d.unpinUninstalled()
	defer d.tracer.Close()
	// Loading decoded the kernel's BTF and the programs: megabytes of heap
	// that are garbage now. An agent's idle footprint is what a node pays
	// for it: give them back at once rather than over minutes.
	debug.FreeOSMemory()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// A closed stdout is an error to report, not a SIGPIPE death.
	signal.Ignore(syscall.SIGPIPE)
	d.uninstall = d.watchUninstall(ctx)
	if d.runtime, err = cri.Open(opts.criEndpoint, opts.runDir, cri.Options{Retention: opts.criRetention, Logger: log}); err != nil {
		return fmt.Errorf("--cri.endpoint: %w", err)
	}
	if d.runtime != nil {
		defer d.runtime.Close()
		// Stops with ctx: the runtime is listed ahead of events, so that
		// a container removed right after its kill is still named.
		go d.runtime.Run(ctx)
	}
	if d.signals, err = nodememory.Open(opts.procfs, opts.kubepods, kubelet, nodememory.SamplerOptions{Node: d.node, Logger: log}); err != nil {
		log.Warn("node memory signals unavailable", "err", err)
	}
	if err := d.startKubeEvents(ctx); err != nil {
		return err
	}
	if d.recorder != nil {
		defer d.recorder.Shutdown()
	}
	if d.kube != nil {
		d.view = clusterview.New(d.kube, clusterview.Options{Node: d.node, Logger: log})
	}
	if d.runtime == nil && d.view != nil {
		log.Info("naming containers from the kubelet's pod statuses (the API server's): no container runtime socket")
	}
	d.metrics = exporter.NewMetrics(exporter.MetricsOptions{Retention: opts.retention, MaxSeries: opts.maxSeries})
	d.pipe = pipeline.New(ctx, d.pipelineOptions(eventWriter(opts.output, stdout), stop))
	d.startSources(ctx)
	var ready atomic.Bool
	if ports.metrics != nil {
		srv := serveMetrics(ports.metrics, opts.metricsPath, opts.webConfig, &ready, log, d.metrics, d.status())
		defer srv.Close()
	}
	if ports.probes != nil {
		srv := serveProbes(ports.probes, &ready, log)
		defer srv.Close()
	}
	return d.trace(ctx, &ready)
}

// setMaxProcs sets GOMAXPROCS from --runtime.gomaxprocs. Its default is
// 1, as node_exporter's: the pipeline handles one event at a time on one
// goroutine, and a second P buys nothing but the wake-ups of idle threads
// to run goroutines it hands an event to, which cost more than the
// handling on a small VM (make bench: 8 thread wake-ups a kill with 2
// CPUs, under 5 with 1; CPU a kill 1.5x). GOMAXPROCS in the environment
// wins over the default; the flag set wins over both.
func setMaxProcs(o options, log *slog.Logger) {
	if _, env := os.LookupEnv("GOMAXPROCS"); env && !o.maxProcsAsked {
		return
	}
	if o.maxProcs > 0 {
		runtime.GOMAXPROCS(o.maxProcs)
	} else {
		runtime.SetDefaultGOMAXPROCS()
	}
	log.Debug("Go runtime", "gomaxprocs", runtime.GOMAXPROCS(0))
}
