// SPDX-License-Identifier: Apache-2.0

package exporter

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oomtrace/oomtrace/event"
)

const namespace = "oomtrace"

// MetricsOptions configure Metrics.
type MetricsOptions struct {
	// Retention drops the series of a label set (a pod's, a container's)
	// that has not moved for this long. 0 keeps series forever.
	Retention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxSeries caps each per-pod metric (kills, deaths, refusals) at this
	// many series: tenants make pods, containers and owners at will. A new
	// label set past it is counted in its metric's overflow series
	// (namespace, pod, container and owner "_overflow") and in
	// oomtrace_metrics_series_refused_total. 0: no cap.
	MaxSeries int
}

// Overflow is the namespace, pod, container and owner label of the series
// that count what a capped metric refused a series of its own.
const Overflow = "_overflow"

// A family is one event metric, declared once as a row of families:
// its name, help and labels. Metrics.Write says which events count in it,
// with which label values; nothing else needs to know it exists.
type family struct {
	name   string // without the namespace
	help   string
	labels []string
	// perPod: its series are per pod, which tenants make at will: capped
	// at MaxSeries (a refused series' namespace, pod, container and owner
	// labels become Overflow) and dropped after Retention. Node-level
	// series are few and bounded, and kept.
	perPod bool
}

// The event metrics.
var (
	oomKillsFamily = &family{"oom_kills_total",
		"Tasks killed by the kernel OOM killer, by the victim's pod and container, the limit hit and whose it was, init or not, and part in a group kill; see docs/kubernetes.md.",
		[]string{"namespace", "pod", "container", "domain", "init", "group", "owner", "limit"}, true}
	deathsFamily = &family{"container_deaths_total",
		"Deaths of pods' containers (the kernel's kills of their init, the kubelet's evictions) by cause and, for a kernel kill, whose limit it hit; see docs/kubernetes.md.",
		[]string{"namespace", "pod", "container", "cause", "owner", "limit"}, true}
	refusalsFamily = &family{"commit_refusals_total",
		"Memory requests the kernel refused at allocation time, by pod, container, syscall and reason.",
		[]string{"namespace", "pod", "container", "syscall", "reason"}, true}
	userKillsFamily = &family{"userspace_kills_total",
		"Processes ended by a SIGKILL from user space that no kernel OOM decision and no container runtime's stop explains (a user-space OOM killer's: systemd-oomd, earlyoom, oomd, nohang; or anyone's kill -9), by the victims' pod and container and the killer.",
		[]string{"namespace", "pod", "container", "killer", "owner"}, true}
	cgroupPressureFamily = &family{"cgroup_memory_pressure_episodes_total",
		"Episodes of memory pressure before any kill (cgroup_memory_pressure lines that started), by the cgroup's pod, container and workload, and the reason it started for.",
		[]string{"namespace", "pod", "container", "owner", "reason"}, true}
	pressureFamily = &family{"memory_pressure_transitions_total",
		"Kubelet memory signals crossing their hard eviction threshold, as oomtrace sampled them; state below or above.",
		[]string{"signal", "state"}, false}
	conditionsFamily = &family{"node_condition_transitions_total",
		"Transitions of the Node's MemoryPressure condition, by new status.",
		[]string{"condition", "status"}, false}

	families = []*family{oomKillsFamily, deathsFamily, refusalsFamily, userKillsFamily, cgroupPressureFamily, pressureFamily, conditionsFamily}
)

// overflowLabels are the labels of a per-pod series that a refused series
// shares with every other refused one.
var overflowLabels = map[string]bool{"namespace": true, "pod": true, "container": true, "owner": true}

// Metrics counts events for Prometheus. It is a prometheus.Collector: the
// counters live here and are emitted at scrape time, so a series outlives
// its container (the kill is counted even when the cgroup is long gone)
// until Retention, and then it is dropped instead of kept forever.
type Metrics struct {
	opts MetricsOptions

	mu      sync.Mutex
	series  map[*family]map[string]*series // by family, then by label values joined
	descs   map[*family]*prometheus.Desc
	expired time.Time // when expireDue last ran
	// unnamed counts kills in a container that no source named.
	unnamed float64
	// refused counts, by per-pod family, the events counted in its
	// overflow series.
	refused map[*family]float64

	unnamedDesc, refusedDesc *prometheus.Desc
}

type series struct {
	labels  []string
	value   float64
	updated time.Time
	// created is when the series was born, at its first event: exposed as
	// the counter's created timestamp, from which Prometheus can know that
	// a series first seen at 1 went up from 0 (increase() cannot).
	created time.Time
}

// NewMetrics returns an empty set of counters.
func NewMetrics(opts MetricsOptions) *Metrics {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Metrics{
		opts:    opts,
		series:  map[*family]map[string]*series{},
		descs:   map[*family]*prometheus.Desc{},
		refused: map[*family]float64{},
		refusedDesc: prometheus.NewDesc(namespace+"_metrics_series_refused_total",
			"Events counted in a metric's overflow series (namespace, pod, container, owner \"_overflow\") because the metric had --metrics.max-series series.",
			[]string{"metric"}, nil),
		unnamedDesc: prometheus.NewDesc(namespace+"_oom_kills_unnamed_total",
			"OOM kills in a container that neither the container runtime nor the API server named: counted with empty namespace, pod or container. Up from 0 means oomtrace lost a source of names (oomtrace_source_up).",
			nil, nil),
	}
	for _, f := range families {
		m.series[f] = map[string]*series{}
		m.descs[f] = prometheus.NewDesc(namespace+"_"+f.name, f.help, f.labels, nil)
	}
	return m
}

// Write counts an event: metrics are a sink like the others, fed every
// event before any filter.
func (m *Metrics) Write(ev event.Event) error {
	switch ev := ev.(type) {
	case event.OOMKill:
		m.oomKill(ev)
	case event.CommitRefusal:
		m.commitRefusal(ev)
	case event.MemoryPressure:
		m.memoryPressure(ev)
	case event.Eviction:
		m.eviction(ev)
	case event.NodeCondition:
		m.nodeCondition(ev)
	case event.UserspaceKill:
		m.userspaceKill(ev)
	case event.CgroupPressure:
		if ev.State == event.PressureStarted {
			ns, pod, ctr := podLabels(event.Process{Pod: ev.Pod, Container: ev.Container})
			reason := ""
			if len(ev.Episode.Reasons) > 0 {
				reason = ev.Episode.Reasons[0]
			}
			m.mu.Lock()
			m.add(cgroupPressureFamily, 1, m.expireDue(), ns, pod, ctr, ownerLabel(ev.Pod), reason)
			m.mu.Unlock()
		}
	}
	return nil
}

// userspaceKill counts the processes a user-space killer ended, under
// their pod, container and workload and the killer's name.
func (m *Metrics) userspaceKill(ev event.UserspaceKill) {
	if len(ev.Victims) == 0 {
		return
	}
	ns, pod, ctr := podLabels(ev.Victims[0])
	killer := ev.KnownKiller
	if killer == "" {
		killer = event.BoundText(ev.Killer.Comm, 16)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.add(userKillsFamily, float64(ev.VictimCount), m.expireDue(), ns, pod, ctr, killer, ownerLabel(ev.Victims[0].Pod))
}

// oomKill counts one killed task.
func (m *Metrics) oomKill(ev event.OOMKill) {
	ns, pod, ctr := podLabels(ev.Victim.Process)
	owner := ownerLabel(ev.Victim.Pod)
	limit := limitSource(ev)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.expireDue()
	m.add(oomKillsFamily, 1, now, ns, pod, ctr, domainKind(ev), initLabel(ev.Victim), groupLabel(ev.OOM.Group), owner, limit)
	// The kills of the decision that have no event of their own were of
	// processes in the group's cgroup (the container, on a kubelet's
	// node): members, under the chosen kill's names.
	var folded uint64
	if g := ev.OOM.Group; g != nil && g.Folded > 0 {
		folded = g.Folded
		m.add(oomKillsFamily, float64(folded), now, ns, pod, ctr, domainKind(ev), initLabel(ev.Victim), groupLabel(&event.GroupKill{}), owner, limit)
	}
	if c := ev.Victim.Container; c != nil && (c.Name == "" || ev.Victim.Pod == nil || ev.Victim.Pod.Name == "") {
		m.unnamed += float64(1 + folded)
	}
	// A worker process killed beside its container's init is no death
	// of the container (the init's own kill, in a group kill, is).
	worker := ev.Victim.Init != nil && !*ev.Victim.Init
	if ev.Victim.Pod != nil && ev.Cause != "" && !worker {
		m.add(deathsFamily, 1, now, ns, pod, ctr, ev.Cause, owner, limit)
	}
}

// groupLabel is a kill's part in a memory.oom.group kill.
func groupLabel(g *event.GroupKill) string {
	switch {
	case g == nil:
		return "none"
	case g.Chosen:
		return "chosen"
	}
	return "member"
}

// eviction counts a kubelet eviction, once per pod, under the container
// the kubelet named first as using more than its request.
func (m *Metrics) eviction(ev event.Eviction) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.add(deathsFamily, 1, m.expireDue(), ev.Pod.Namespace, ev.Pod.Name, offendingContainer(ev), ev.Cause, ownerLabel(&ev.Pod), "")
}

// ownerLabel is the pod's workload, "Deployment/web"; empty when unknown.
func ownerLabel(p *event.Pod) string {
	if p == nil {
		return ""
	}
	return p.Owner.String()
}

// offendingContainer is the first container of the kubelet's message;
// empty when it named none.
func offendingContainer(ev event.Eviction) string {
	if len(ev.OffendingContainers) > 0 {
		return ev.OffendingContainers[0].Name
	}
	return ""
}

// memoryPressure counts a threshold crossing.
func (m *Metrics) memoryPressure(ev event.MemoryPressure) {
	state := "above"
	if ev.BelowThreshold {
		state = "below"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.add(pressureFamily, 1, m.opts.Now(), ev.SignalName, state)
}

// nodeCondition counts a condition transition.
func (m *Metrics) nodeCondition(ev event.NodeCondition) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.add(conditionsFamily, 1, m.opts.Now(), ev.Condition, ev.Status)
}

// commitRefusal counts the refusals one line stands for.
func (m *Metrics) commitRefusal(ev event.CommitRefusal) {
	ns, pod, ctr := podLabels(ev.Process)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.add(refusalsFamily, float64(ev.Count), m.expireDue(), ns, pod, ctr, ev.Syscall, ev.Reason)
}

// add counts n in f's series of the label values (in f.labels' order).
// A new series of a per-pod family that has MaxSeries already goes to
// the family's overflow series, counted as refused. Call with mu held.
func (m *Metrics) add(f *family, n float64, now time.Time, values ...string) {
	s := m.series[f]
	key := strings.Join(values, "\xff")
	if f.perPod && m.opts.MaxSeries > 0 && len(s) >= m.opts.MaxSeries && s[key] == nil {
		m.refused[f]++
		values = slices.Clone(values)
		for i, l := range f.labels {
			if overflowLabels[l] {
				values[i] = Overflow
			}
		}
		key = strings.Join(values, "\xff")
	}
	v := s[key]
	if v == nil {
		v = &series{labels: slices.Clone(values), created: now}
		s[key] = v
	}
	v.value += n
	v.updated = now
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range families {
		ch <- m.descs[f]
	}
	ch <- m.unnamedDesc
	ch <- m.refusedDesc
}

// Collect implements prometheus.Collector. It drops expired series first.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.opts.Now()
	for _, f := range families {
		if f.perPod {
			expire(m.series[f], now, m.opts.Retention)
			ch <- prometheus.MustNewConstMetric(m.refusedDesc, prometheus.CounterValue, m.refused[f], namespace+"_"+f.name)
		}
		for _, v := range m.series[f] {
			ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(m.descs[f], prometheus.CounterValue, v.value, v.created, v.labels...)
		}
	}
	// From 0: an alert's increase() sees the first.
	ch <- prometheus.MustNewConstMetric(m.unnamedDesc, prometheus.CounterValue, m.unnamed)
}

// expireDue drops expired series on writes of per-pod series too, at most
// once a minute, and returns now: a node nobody scrapes must not keep the
// series of every pod it ever saw (pods' names are tenants' to choose).
// Call with mu held.
func (m *Metrics) expireDue() time.Time {
	now := m.opts.Now()
	if d := now.Sub(m.expired); d >= 0 && d < time.Minute {
		return now
	}
	m.expired = now
	for _, f := range families {
		if f.perPod {
			expire(m.series[f], now, m.opts.Retention)
		}
	}
	return now
}

func expire(s map[string]*series, now time.Time, retention time.Duration) {
	if retention <= 0 {
		return
	}
	for k, v := range s {
		if now.Sub(v.updated) > retention {
			delete(s, k)
		}
	}
}

// limitSource is whose limit the kill's domain's was (event.LimitFrom*),
// empty when unknown: it splits a container's limit enforced on its pod
// cgroup from a pod-level limit, which share domain="pod".
func limitSource(ev event.OOMKill) string {
	if ev.OOM.Domain == nil {
		return ""
	}
	return ev.OOM.Domain.LimitSource
}

// domainKind is the OOM kill's domain kind, "unknown" before enrichment.
func domainKind(ev event.OOMKill) string {
	if d := ev.OOM.Domain; d != nil && d.Kind != "" {
		return d.Kind
	}
	return "unknown"
}

// initLabel says whether the victim was its pid namespace's init.
func initLabel(v event.Victim) string {
	switch {
	case v.Init == nil:
		return "unknown"
	case *v.Init:
		return "true"
	}
	return "false"
}

// podLabels are the namespace, pod and container labels of a process:
// names only, never ids or pids, so that series stay few and bounded.
func podLabels(p event.Process) (namespace, pod, container string) {
	if p.Pod != nil {
		namespace, pod = p.Pod.Namespace, p.Pod.Name
	}
	if p.Container != nil {
		container = p.Container.Name
	}
	return
}
