// SPDX-License-Identifier: Apache-2.0

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter"
	"github.com/oomtrace/oomtrace/exporter/kubeevents"
	"github.com/oomtrace/oomtrace/exporter/stream"
	"github.com/oomtrace/oomtrace/internal/enrich"
	"github.com/oomtrace/oomtrace/internal/kube/clusterview"
	"github.com/oomtrace/oomtrace/internal/kube/uninstall"
	"github.com/oomtrace/oomtrace/internal/memwatch"
	"github.com/oomtrace/oomtrace/internal/pipeline"
	"github.com/oomtrace/oomtrace/internal/postmortem"
	"github.com/oomtrace/oomtrace/internal/refusalfold"
	"github.com/oomtrace/oomtrace/tracer"
)

// listeners are the ports oomtrace serves: the metrics port, and the
// probes' port of their own; nil where the flag is empty.
type listeners struct {
	metrics, probes net.Listener
}

func (l listeners) Close() {
	for _, c := range []net.Listener{l.metrics, l.probes} {
		if c != nil {
			c.Close()
		}
	}
}

// preflight checks what would fail late, before anything is loaded, and
// opens the ports and the API's client.
func (d *agent) preflight() (listeners, error) {
	var ls listeners
	if err := checkPrivileges(); err != nil {
		return ls, err
	}
	if _, err := os.Stat(d.opts.btfPath); err != nil {
		return ls, fmt.Errorf("kernel BTF not found at %s (needs CONFIG_DEBUG_INFO_BTF=y or --btf.path): %w", d.opts.btfPath, errors.Unwrap(err))
	}
	if d.node = d.opts.nodeName; d.node == "" {
		d.node, _ = os.Hostname()
	}
	var err error
	if d.kube, err = kubeClient(d.opts.kubeconfig); err != nil {
		return ls, err
	}
	for _, p := range []struct {
		flag, addr string
		l          *net.Listener
	}{{"web.listen-address", d.opts.listenAddr, &ls.metrics}, {"web.probe-address", d.opts.probeAddr, &ls.probes}} {
		if p.addr == "" {
			continue
		}
		if *p.l, err = net.Listen("tcp", p.addr); err != nil {
			ls.Close()
			return listeners{}, fmt.Errorf("--%s: %w", p.flag, err)
		}
	}
	return ls, nil
}

// startKubeEvents starts the writer of Events on pods, with --kube.events.
func (d *agent) startKubeEvents(ctx context.Context) error {
	if !d.opts.kubeEvents {
		return nil
	}
	if d.kube == nil {
		d.log.Warn("--kube.events: no API server configured; no Events are written")
		return nil
	}
	r := kubeevents.New(d.kube, d.node)
	if !d.opts.kubeEventsEnded {
		r.LeaveEndedContainersToKubelet()
	}
	if err := r.Start(ctx); err != nil {
		return fmt.Errorf("--kube.events: %w", err)
	}
	d.recorder = r
	d.log.Info("writing an Event on the pod of every OOM kill", "reporting_controller", kubeevents.Controller, "container_kills", d.opts.kubeEventsEnded)
	return nil
}

// pipelineOptions: every source writes into the pipeline, which never
// makes it wait; the metrics count every event, out gets what the filter
// keeps, and a kill leaves the kernel's ring buffer once the pipeline is
// done with it.
func (d *agent) pipelineOptions(out pipeline.Sink, stop func()) pipeline.Options {
	o := pipeline.Options{
		Enricher: &enrich.Enricher{}, Sampler: d.signals, SampleEvery: d.opts.sampleEvery, CorrelationWindow: d.opts.corrWindow,
		Filter: pipeline.NewFilter(d.opts.namespaces, d.opts.pods), Metrics: d.metrics, Out: out, QueueSize: d.opts.queueSize,
		// A cgroup's refusal lines: 20 at once, then one a second, the
		// rest folded into one line a second; the metrics count them all.
		RefusalFolder: refusalfold.New(refusalfold.Options{}),
		OutFailed: func(err error) {
			d.log.Error("cannot write events; stopping", "err", err)
			stop()
		},
		// A SIGKILL from a pod's own process, or a service's to its
		// children, is not a user-space kill.
		KillerMemcg: d.tracer.ProcessMemcg,
	}
	// Containers are named by the runtime, and where it does not know
	// them (no socket, not answering), by the kubelet's pod statuses.
	var names enrich.Resolvers
	if d.runtime != nil {
		names = append(names, d.runtime)
	}
	if d.view != nil {
		names = append(names, d.view)
	}
	if len(names) > 0 {
		o.Enricher.Resolver = names
	}
	if d.recorder != nil {
		o.KubeEvents = d.recorder
	}
	if d.view != nil {
		o.Owners = d.view.Owner
	}
	pm, err := postmortem.Open(d.opts.procfs, d.opts.pmMemoryStat, d.opts.pmTopTasks)
	if err != nil {
		d.log.Warn("no memory cgroup hierarchy: no post-mortems, and whether a killed process's container survived is not checked", "err", err)
		return o
	}
	o.PostMortem = pm
	o.CgroupSwap = func(memcg *event.Cgroup) *uint64 {
		if n, ok := pm.Memory.Swap(memcg.Path); ok {
			return &n
		}
		return nil
	}
	if d.opts.containerCheck > 0 {
		o.ContainerCheckDelay, o.ContainerAlive = d.opts.containerCheck, pm.Memory.Populated
	}
	if d.opts.pressureEvery > 0 {
		d.pressure = memwatch.New(memwatch.Options{Memory: pm.Memory, Interval: d.opts.pressureEvery, Node: d.node})
		o.PressureEpisode = d.pressure.Episode
	}
	return o
}

// startSources starts the sources beside the tracer: the node's memory
// signals and the cluster's view of this node.
func (d *agent) startSources(ctx context.Context) {
	if d.signals != nil {
		d.signals.Start(ctx, d.opts.sampleEvery, func(mp event.MemoryPressure) { d.pipe.Write(mp) })
	}
	if d.pressure != nil {
		go d.pressure.Run(ctx, func(ev event.CgroupPressure) { d.pipe.Write(ev) })
	}
	if d.kube == nil {
		d.log.Info("standalone: no API server configured; kernel events and node signals only")
		return
	}
	d.log.Info("watching the cluster for this node's evictions and MemoryPressure", "api", d.kube.Host, "node", d.node)
	go d.view.Run(ctx, clusterview.Handlers{
		Eviction:      func(ev event.Eviction) { d.pipe.Write(ev) },
		NodeCondition: func(ev event.NodeCondition) { d.pipe.Write(ev) },
	})
}

// trace runs the tracer into the pipeline until ctx is done, then drains
// the pipeline and says what was done.
func (d *agent) trace(ctx context.Context, ready *atomic.Bool) error {
	hooks := d.tracer.Hooks()
	// The hooks are attached: events are being recorded from here on.
	ready.Store(true)
	none := func(hook string) string { return cmp.Or(hook, "none") }
	d.log.Info("oomtrace started", "version", version, "node", d.node,
		"decision_hook", none(hooks.Decision), "victim_hook", hooks.Victim, "signal_hook", none(hooks.Signal),
		"refusal_hook", none(hooks.RefusalExact), "refusal_syscalls", len(hooks.RefusalSyscalls))
	err := d.tracer.Run(ctx, tracer.Handlers{
		OOMKill:       d.pipe.OOMKill,
		CommitRefusal: d.pipe.CommitRefusal,
		// Signals to pods' processes are kept for their evictions, and
		// user-space SIGKILLs made userspace_kill lines. Recording one
		// never waits.
		TaskSignal: d.pipe.Signal,
	})
	ready.Store(false)
	d.drain()
	if p := d.tracer.PinPath(); p != "" {
		if why := d.uninstalling(); why != "" {
			d.unpinAtExit = true
			d.log.Info("uninstalled: the hooks are detached and the pin path emptied as oomtrace exits", "reason", why, "pin_path", p)
		} else {
			d.log.Info("the hooks stay attached and recording, pinned: the next oomtrace takes them over and reports what they recorded (oomtrace unpin removes them)",
				"pin_path", p, "generation", d.tracer.Generation())
		}
	}
	if err != nil {
		return err
	}
	if d.pipe.OutErr() != nil {
		return errOutput
	}
	return nil
}

// drain ends a run: the pipeline writes out what it still holds (waiting
// at most outputDrainTimeout for its stage, then for the output), and the
// counters are logged.
func (d *agent) drain() {
	if !d.pipe.Close(outputDrainTimeout) {
		d.log.Warn("pipeline or output still busy; giving up on the queued events", "timeout", outputDrainTimeout)
	}
	stats, err := d.tracer.Stats()
	if err != nil {
		return
	}
	d.log.Info("oomtrace stopped", "sent", stats.Sent, "lost", stats.Lost,
		"decoded", stats.Decoded, "decode_errors", stats.DecodeErrors, "exiting", stats.ExitingMarked,
		"refusals", stats.RefusalsFailed, "refusal_records", stats.RefusalsSent, "refusal_records_lost", stats.RefusalsLost,
		"signals", stats.SignalsSent, "signals_lost", stats.SignalsLost, "signals_limited", stats.SignalsLimited,
		"written", d.pipe.Written(), "filtered", d.pipe.Filtered(), "output_dropped", d.pipe.Dropped())
	if missed, _, err := d.tracer.Unobserved(); err == nil && missed > 0 {
		d.log.Warn("the kernel killed tasks that no hook saw while oomtrace ran", "unobserved", missed)
	}
}

// status is what oomtrace says of itself at a scrape: its hooks, its
// counters and the node's memory signals.
func (d *agent) status() *exporter.Status {
	o := exporter.StatusOptions{Version: version}
	for _, u := range d.tracer.Hooks().Uses() {
		o.Hooks = append(o.Hooks, exporter.Hook(u))
	}
	if r := d.recorder; r != nil {
		o.KubeEvents = func() (uint64, uint64) { return r.Sent(), r.Dropped() }
	}
	if s := d.signals; s != nil {
		o.NodeMemory = s.Sample
	}
	o.Sources = map[string]func() bool{
		exporter.SourceNodeSignals: func() bool { return d.signals != nil },
	}
	if r := d.runtime; r != nil {
		o.Sources[exporter.SourceContainerRuntime] = r.Up
	}
	if v := d.view; v != nil {
		o.Sources[exporter.SourceAPIServer] = v.Up
	}
	if d.opts.kubeletCfg != "" {
		fromFile := d.kubeletFromFile
		o.Sources[exporter.SourceKubeletConfig] = func() bool { return fromFile }
	}
	o.Stats = func() (exporter.PipelineStats, error) {
		s, err := d.tracer.Stats()
		if err != nil {
			return exporter.PipelineStats{}, err
		}
		missed, _, err := d.tracer.Unobserved()
		// Each own counter and where it comes from: a new one is a row
		// here and its declaration in the exporter.
		return exporter.PipelineStats{
			exporter.OOMKillsLost:       s.Lost,
			exporter.CommitRefusalsLost: s.RefusalsLost,
			exporter.TaskSignalsLost:    s.SignalsLost,
			exporter.TaskSignalsLimited: s.SignalsLimited,
			exporter.DecodeErrors:       s.DecodeErrors,
			exporter.OutputDropped:      d.pipe.Dropped(),
			exporter.OOMKillsDropped:    d.pipe.DroppedKills(),
			exporter.OOMKillsUnobserved: missed,
		}, err
	}
	return exporter.NewStatus(o)
}

// tracerConfig is the tracer's part of the options.
func tracerConfig(opts options, node string, log *slog.Logger) tracer.Config {
	btfPath := opts.btfPath
	if btfPath == defaultBTF {
		btfPath = "" // the library finds the running kernel's BTF itself
	}
	pinPath := opts.pinPath
	if !opts.pin {
		pinPath = ""
		if _, err := os.Stat(opts.pinPath); err == nil {
			log.Warn("an earlier oomtrace's pinned hooks are still attached and recording, unread; oomtrace unpin removes them", "pin_path", opts.pinPath)
		}
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
		PinPath:          pinPath,
		VerifierLog:      verifierLog(),
		// Pinning on by default must not stop oomtrace where there is no
		// BPF filesystem: it warns and goes on, unless asked for.
		PinOptional: !opts.pinAsked,
		Node:        node,
		Logger:      log,
	}
}

// verifierLog is where a refused program's verifier log goes: stderr
// when asked for (tracer.VerifierLogEnv).
func verifierLog() io.Writer {
	if os.Getenv(tracer.VerifierLogEnv) == "" {
		return nil
	}
	return os.Stderr
}

// eventWriter is the output of --output (validated already).
func eventWriter(format string, stdout io.Writer) pipeline.Sink {
	if format == "text" {
		return stream.NewText(stdout)
	}
	return stream.NewJSON(stdout)
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

// serveProbes serves /healthz and /readyz alone on listener, in plain HTTP,
// until the returned server is closed: the kubelet's probes on a port that
// a pod's connections to the metrics port cannot crowd out. It has its own
// connection limit; on a loopback address only the node's own processes
// reach it.
func serveProbes(listener net.Listener, ready *atomic.Bool, log *slog.Logger) *http.Server {
	srv := exporter.NewServer(exporter.ProbeHandler(ready), slog.NewLogLogger(log.Handler(), slog.LevelDebug))
	listener = exporter.LimitListener(listener, exporter.MaxConnections)
	go func() {
		if err := srv.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("probe server stopped", "err", err)
		}
	}()
	attrs := []any{"address", listener.Addr().String()}
	if ip := listenIP(listener.Addr()); ip == nil || !ip.IsLoopback() {
		log.Warn("--web.probe-address is not a loopback address: any pod that reaches it can crowd out the kubelet's probes", attrs...)
	}
	log.Info("serving probes", attrs...)
	return srv
}

// listenIP is addr's IP; nil for an unspecified one (every address).
func listenIP(addr net.Addr) net.IP {
	if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
		return ta.IP
	}
	return nil
}

// uninstallCheckTimeout bounds each look at the API for an uninstall: at
// start, and at stop within the pod's grace period (10 s).
const uninstallCheckTimeout = 3 * time.Second

// watchUninstall sets up, in a pod (--kube.pod) whose hooks are pinned,
// the check at stop that tells an uninstall from a restart; nil where it
// cannot be told (then the hooks stay pinned at every stop, as always).
func (d *agent) watchUninstall(ctx context.Context) *uninstall.Watch {
	if d.opts.kubePod == "" || d.kube == nil || d.tracer.PinPath() == "" {
		return nil
	}
	ns, name, _ := strings.Cut(d.opts.kubePod, "/")
	cctx, cancel := context.WithTimeout(ctx, uninstallCheckTimeout)
	defer cancel()
	w, err := uninstall.Start(cctx, d.kube, ns, name)
	if err != nil {
		d.log.Warn("an uninstall cannot be told from a restart: the hooks stay pinned at every stop (oomtrace unpin removes them)", "pod", d.opts.kubePod, "err", err)
		return nil
	}
	return w
}

// uninstalling says why oomtrace is being uninstalled; empty for a
// restart, an upgrade, or when the API cannot say.
func (d *agent) uninstalling() string {
	if d.uninstall == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), uninstallCheckTimeout)
	defer cancel()
	yes, why, err := d.uninstall.Uninstalled(ctx)
	if err != nil {
		d.log.Warn("cannot tell an uninstall from a restart: the hooks stay pinned", "err", err)
	}
	if !yes {
		return ""
	}
	return why
}

// unpinUninstalled detaches the hooks and empties the pin path, once the
// tracer has closed, when uninstalling said so.
func (d *agent) unpinUninstalled() {
	if !d.unpinAtExit {
		return
	}
	if _, err := tracer.Unpin(d.opts.pinPath); err != nil {
		d.log.Error("uninstall: the hooks stay pinned", "pin_path", d.opts.pinPath, "err", err)
		return
	}
	d.log.Info("uninstall: no oomtrace hook is attached from the pin path any more", "pin_path", d.opts.pinPath)
}
