// SPDX-License-Identifier: Apache-2.0

package exporter

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oomtrace/oomtrace/event"
)

// PipelineStats are the tracer's and the pipeline's own counters, read at
// scrape time.
type PipelineStats struct {
	OOMKillsLost       uint64 // OOM kill records the kernel could not hand over
	CommitRefusalsLost uint64 // refusal records the kernel could not hand over
	TaskSignalsLost    uint64 // task signal records the kernel could not hand over
	TaskSignalsLimited uint64 // task signals past their target's budget, not recorded
	DecodeErrors       uint64
	OutputDropped      uint64 // events not written out: the reader was too slow or gone
	OOMKillsDropped    uint64 // OOM kills among them: counted, but no line and no Event
	// OOMKillsUnobserved are kills the kernel counted that no hook saw.
	OOMKillsUnobserved uint64
}

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

	lostDesc, decodeErrorsDesc, hookDesc, buildDesc, scrapeErrorDesc, droppedDesc, availableDesc, thresholdDesc, unobservedDesc, kubeEventsDesc, limitedDesc, droppedKillsDesc, sourceDesc *prometheus.Desc
}

// NewStatus returns the collector of opts.
func NewStatus(opts StatusOptions) *Status {
	return &Status{
		opts:     opts,
		revision: buildRevision(),
		sourceDesc: prometheus.NewDesc(namespace+"_source_up",
			"Whether each source oomtrace is configured to use answers now (1) or not (0): container_runtime (names), apiserver (names, owners, evictions), kubelet_config (read from its file, not the flags), node_signals.",
			[]string{"source"}, nil),
		limitedDesc: prometheus.NewDesc(namespace+"_task_signals_limited_total",
			"SIGTERMs and SIGKILLs not recorded because their target cgroup had used its budget of records.", nil, nil),
		availableDesc: prometheus.NewDesc(namespace+"_node_memory_available_bytes",
			"The kubelet's memory signal now: memory.available or allocatableMemory.available, computed the kubelet's way.",
			[]string{"signal"}, nil),
		thresholdDesc: prometheus.NewDesc(namespace+"_node_memory_eviction_threshold_bytes",
			"The hard eviction threshold of each memory signal, in bytes.",
			[]string{"signal"}, nil),
		lostDesc: prometheus.NewDesc(namespace+"_events_lost_total",
			"Event records the kernel dropped because the ring buffer was full, by event kind (oom_kill, commit_refusal, task_signal).",
			[]string{"kind"}, nil),
		decodeErrorsDesc: prometheus.NewDesc(namespace+"_decode_errors_total",
			"Event records that could not be decoded.", nil, nil),
		hookDesc: prometheus.NewDesc(namespace+"_hook_info",
			"The kernel hook in use for each kind of observation; the value is always 1.",
			[]string{"event", "hook"}, nil),
		buildDesc: prometheus.NewDesc(namespace+"_build_info",
			"A metric with a constant value of 1 labeled by the version, revision and architecture of oomtrace and the Go version it was built with.",
			[]string{"version", "revision", "goversion", "goarch"}, nil),
		droppedDesc: prometheus.NewDesc(namespace+"_output_dropped_total",
			"Events not written to the output because its reader was too slow or gone; the metrics still count them.", nil, nil),
		droppedKillsDesc: prometheus.NewDesc(namespace+"_oom_kills_dropped_total",
			"OOM kills a full queue dropped (--output.queue): counted in oomtrace_oom_kills_total, but written as no line and no Event; alert when it grows.", nil, nil),
		unobservedDesc: prometheus.NewDesc(namespace+"_oom_kills_unobserved_total",
			"OOM kills the kernel counted (oom_kill in /proc/vmstat) that no hook saw since the hooks first attached; alert when it grows.", nil, nil),
		kubeEventsDesc: prometheus.NewDesc(namespace+"_kube_events_total",
			"Kubernetes Events written on pods for OOM kills (--kube.events), by result: sent or dropped.",
			[]string{"result"}, nil),
		scrapeErrorDesc: prometheus.NewDesc(namespace+"_pipeline_stats_up",
			"Whether the pipeline counters could be read from the kernel at this scrape (1) or not (0).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (s *Status) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.lostDesc, s.decodeErrorsDesc, s.hookDesc, s.buildDesc, s.scrapeErrorDesc, s.droppedDesc, s.availableDesc, s.thresholdDesc, s.unobservedDesc, s.kubeEventsDesc, s.limitedDesc, s.droppedKillsDesc, s.sourceDesc} {
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
		ch <- prometheus.MustNewConstMetric(s.lostDesc, prometheus.CounterValue, float64(st.OOMKillsLost), event.TypeOOMKill)
		ch <- prometheus.MustNewConstMetric(s.lostDesc, prometheus.CounterValue, float64(st.CommitRefusalsLost), event.TypeCommitRefusal)
		ch <- prometheus.MustNewConstMetric(s.lostDesc, prometheus.CounterValue, float64(st.TaskSignalsLost), event.TypeTaskSignal)
		ch <- prometheus.MustNewConstMetric(s.limitedDesc, prometheus.CounterValue, float64(st.TaskSignalsLimited))
		ch <- prometheus.MustNewConstMetric(s.decodeErrorsDesc, prometheus.CounterValue, float64(st.DecodeErrors))
		ch <- prometheus.MustNewConstMetric(s.droppedDesc, prometheus.CounterValue, float64(st.OutputDropped))
		ch <- prometheus.MustNewConstMetric(s.droppedKillsDesc, prometheus.CounterValue, float64(st.OOMKillsDropped))
		ch <- prometheus.MustNewConstMetric(s.unobservedDesc, prometheus.CounterValue, float64(st.OOMKillsUnobserved))
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
