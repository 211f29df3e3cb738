// SPDX-License-Identifier: Apache-2.0

package exporter

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oomtrace/oomtrace/event"
)

// An OwnCounter is one of oomtrace's own counters, read from the tracer
// and the pipeline at scrape time: its metric, declared once here. The
// agent fills PipelineStats from a table of them, one row each.
type OwnCounter struct {
	Metric string // without the namespace
	Help   string
	// Label and Value are its one label and the label's value (the
	// counters of one metric differ in it); empty for none.
	Label, Value string
}

// The own counters.
var (
	OOMKillsLost       = &OwnCounter{"events_lost_total", lostHelp, "kind", event.TypeOOMKill}
	CommitRefusalsLost = &OwnCounter{"events_lost_total", lostHelp, "kind", event.TypeCommitRefusal}
	TaskSignalsLost    = &OwnCounter{"events_lost_total", lostHelp, "kind", event.TypeTaskSignal}
	TaskSignalsLimited = &OwnCounter{"task_signals_limited_total",
		"SIGTERMs and SIGKILLs not recorded because their target cgroup had used its budget of records.", "", ""}
	DecodeErrors = &OwnCounter{"decode_errors_total",
		"Event records that could not be decoded.", "", ""}
	OutputDropped = &OwnCounter{"output_dropped_total",
		"Events not written to the output because its reader was too slow or gone; the metrics still count them.", "", ""}
	OOMKillsDropped = &OwnCounter{"oom_kills_dropped_total",
		"OOM kills a full queue dropped (--output.queue): counted in oomtrace_oom_kills_total, but written as no line and no Event; alert when it grows.", "", ""}
	OOMKillsUnobserved = &OwnCounter{"oom_kills_unobserved_total",
		"OOM kills the kernel counted (oom_kill in /proc/vmstat) that no hook saw since the hooks first attached; alert when it grows.", "", ""}

	ownCounters = []*OwnCounter{OOMKillsLost, CommitRefusalsLost, TaskSignalsLost, TaskSignalsLimited, DecodeErrors, OutputDropped, OOMKillsDropped, OOMKillsUnobserved}
)

const lostHelp = "Event records the kernel dropped because the ring buffer was full, by event kind (oom_kill, commit_refusal, task_signal)."

// PipelineStats are the own counters' values at one scrape; a counter
// missing is 0.
type PipelineStats map[*OwnCounter]uint64

// Hook is one hook in use, for oomtrace_hook_info.
type Hook struct {
	Event string // what it observes: oom_decision, oom_victim, oom_kill_signal, commit_refusal_exact, commit_refusal
	Hook  string // the hook, or "none"
}

// StatusOptions configure Status.
type StatusOptions struct {
	Version string
	Hooks   []Hook
	// Stats reads the pipeline counters; nil reports none.
	Stats func() (PipelineStats, error)
	// NodeMemory reads the node's memory signals at scrape time; nil (or
	// false) exports none.
	NodeMemory func() (event.NodeMemory, bool)
	// KubeEvents reads how many Events were written on pods and how many
	// given up on; nil (no --kube.events) exports none.
	KubeEvents func() (sent, dropped uint64)
	// Sources say, at scrape time, whether each source oomtrace was
	// configured to use is up, by name (Source* below); a source not
	// configured is not exported.
	Sources map[string]func() bool
}

// The sources of oomtrace_source_up.
const (
	SourceContainerRuntime = "container_runtime" // CRI: names containers and pods
	SourceAPIServer        = "apiserver"         // the cluster view: names, owners, evictions, MemoryPressure
	SourceKubeletConfig    = "kubelet_config"    // the kubelet's thresholds and cgroup root, read from its file
	SourceNodeSignals      = "node_signals"      // the node's memory signals
)

// Status is what oomtrace reads about itself and the node at scrape time:
// build and hooks, its pipeline's counters, the node's memory signals.
// Unlike Metrics it is no sink: it is built last, from the parts it reads,
// and registered beside Metrics.
type Status struct {
	opts     StatusOptions
	revision string // the VCS revision built, "unknown" when not recorded

	hookDesc, buildDesc, scrapeErrorDesc, availableDesc, thresholdDesc, kubeEventsDesc, sourceDesc *prometheus.Desc

	ownDescs map[string]*prometheus.Desc // the own counters', by metric
}

// NewStatus returns the collector of opts.
func NewStatus(opts StatusOptions) *Status {
	own := map[string]*prometheus.Desc{}
	for _, c := range ownCounters {
		if own[c.Metric] == nil {
			var labels []string
			if c.Label != "" {
				labels = []string{c.Label}
			}
			own[c.Metric] = prometheus.NewDesc(namespace+"_"+c.Metric, c.Help, labels, nil)
		}
	}
	return &Status{
		ownDescs: own,
		opts:     opts,
		revision: buildRevision(),
		sourceDesc: prometheus.NewDesc(namespace+"_source_up",
			"Whether each source oomtrace is configured to use answers now (1) or not (0): container_runtime (names), apiserver (names, owners, evictions), kubelet_config (read from its file, not the flags), node_signals.",
			[]string{"source"}, nil),
		availableDesc: prometheus.NewDesc(namespace+"_node_memory_available_bytes",
			"The kubelet's memory signal now: memory.available or allocatableMemory.available, computed the kubelet's way.",
			[]string{"signal"}, nil),
		thresholdDesc: prometheus.NewDesc(namespace+"_node_memory_eviction_threshold_bytes",
			"The hard eviction threshold of each memory signal, in bytes.",
			[]string{"signal"}, nil),
		hookDesc: prometheus.NewDesc(namespace+"_hook_info",
			"The kernel hook in use for each kind of observation; the value is always 1.",
			[]string{"event", "hook"}, nil),
		buildDesc: prometheus.NewDesc(namespace+"_build_info",
			"A metric with a constant value of 1 labeled by the version, revision and architecture of oomtrace and the Go version it was built with.",
			[]string{"version", "revision", "goversion", "goarch"}, nil),
		kubeEventsDesc: prometheus.NewDesc(namespace+"_kube_events_total",
			"Kubernetes Events written on pods for OOM kills (--kube.events), by result: sent or dropped.",
			[]string{"result"}, nil),
		scrapeErrorDesc: prometheus.NewDesc(namespace+"_pipeline_stats_up",
			"Whether the pipeline counters could be read from the kernel at this scrape (1) or not (0).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (s *Status) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.hookDesc, s.buildDesc, s.scrapeErrorDesc, s.availableDesc, s.thresholdDesc, s.kubeEventsDesc, s.sourceDesc} {
		ch <- d
	}
	for _, d := range s.ownDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *Status) Collect(ch chan<- prometheus.Metric) {
	for name, up := range s.opts.Sources {
		v := 0.0
		if up() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(s.sourceDesc, prometheus.GaugeValue, v, name)
	}
	if s.opts.NodeMemory != nil {
		if nm, ok := s.opts.NodeMemory(); ok {
			for name, sig := range map[string]*event.MemorySignal{"memory.available": nm.MemoryAvailable, "allocatableMemory.available": nm.AllocatableMemoryAvailable} {
				if sig == nil {
					continue
				}
				ch <- prometheus.MustNewConstMetric(s.availableDesc, prometheus.GaugeValue, float64(sig.AvailableBytes), name)
				if sig.ThresholdBytes != nil {
					ch <- prometheus.MustNewConstMetric(s.thresholdDesc, prometheus.GaugeValue, float64(*sig.ThresholdBytes), name)
				}
			}
		}
	}

	if s.opts.KubeEvents != nil {
		sent, dropped := s.opts.KubeEvents()
		ch <- prometheus.MustNewConstMetric(s.kubeEventsDesc, prometheus.CounterValue, float64(sent), "sent")
		ch <- prometheus.MustNewConstMetric(s.kubeEventsDesc, prometheus.CounterValue, float64(dropped), "dropped")
	}
	for _, h := range s.opts.Hooks {
		ch <- prometheus.MustNewConstMetric(s.hookDesc, prometheus.GaugeValue, 1, h.Event, h.Hook)
	}
	ch <- prometheus.MustNewConstMetric(s.buildDesc, prometheus.GaugeValue, 1, s.opts.Version, s.revision, runtime.Version(), runtime.GOARCH)
	if s.opts.Stats == nil {
		return
	}
	st, err := s.opts.Stats()
	up := 1.0
	if err != nil {
		up = 0
	} else {
		for _, c := range ownCounters {
			var labels []string
			if c.Label != "" {
				labels = []string{c.Value}
			}
			ch <- prometheus.MustNewConstMetric(s.ownDescs[c.Metric], prometheus.CounterValue, float64(st[c]), labels...)
		}
	}
	ch <- prometheus.MustNewConstMetric(s.scrapeErrorDesc, prometheus.GaugeValue, up)
}

// buildRevision is the VCS revision the binary was built from (Go records
// it when building in a checkout), "-dirty" appended for a modified tree.
func buildRevision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "unknown", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && rev != "unknown" {
		rev += "-dirty"
	}
	return rev
}
