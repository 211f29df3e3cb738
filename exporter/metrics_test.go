// SPDX-License-Identifier: Apache-2.0

package exporter

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/oomtrace/oomtrace/event"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func oomKill(ns, pod, container, kind string) event.OOMKill {
	ev := event.OOMKill{Type: event.TypeOOMKill, OOM: event.OOM{Domain: &event.Domain{Kind: kind}}, Cause: "kernel_oom_" + kind}
	if pod != "" {
		ev.Victim.Pod = &event.Pod{UID: "0b1e7bd0-4a5e-4c4b-9f34-7d1f1c2a7e10", Namespace: ns, Name: pod}
	}
	if container != "" {
		ev.Victim.Container = &event.Container{ID: "3f1e0c6a2b", Name: container}
	}
	return ev
}

// knownSequence feeds the events a small incident produces.
func knownSequence(m *Metrics) {
	m.Write(oomKill("shop", "cart-7d9f", "redis", event.DomainContainer))
	m.Write(oomKill("shop", "cart-7d9f", "redis", event.DomainContainer))
	m.Write(oomKill("shop", "cart-7d9f", "sidecar", event.DomainPod))
	m.Write(oomKill("batch", "etl-1", "worker", event.DomainAllocatable))
	m.Write(oomKill("", "", "", event.DomainSystem))
	m.Write(event.OOMKill{}) // not enriched
	// The container's init, and a worker beside it.
	yes, no := true, false
	initKill, workerKill := oomKill("shop", "web-5c8d", "gunicorn", event.DomainContainer), oomKill("shop", "web-5c8d", "gunicorn", event.DomainContainer)
	initKill.Victim.Init, workerKill.Victim.Init = &yes, &no
	// web-5c8d belongs to the Deployment web (from the cluster view).
	initKill.Victim.Pod.Owner = &event.PodOwner{Kind: "Deployment", Name: "web"}
	workerKill.Victim.Pod.Owner = initKill.Victim.Pod.Owner
	m.Write(initKill)
	m.Write(workerKill)
	m.Write(workerKill)
	// A memory.oom.group kill on cgroup v2: the worker the kernel chose,
	// and the init killed with it.
	chosen, member := oomKill("shop", "api-1", "app", event.DomainPod), oomKill("shop", "api-1", "app", event.DomainPod)
	chosen.Victim.Init, member.Victim.Init = &no, &yes
	chosen.OOM.Group = &event.GroupKill{DecisionSeq: 7, Chosen: true}
	member.OOM.Group = &event.GroupKill{DecisionSeq: 7}
	m.Write(chosen)
	m.Write(member)
	inPod := event.Process{Pod: &event.Pod{Namespace: "shop", Name: "cart-7d9f"}, Container: &event.Container{Name: "redis"}}
	m.Write(event.CommitRefusal{Process: inPod, Syscall: "mmap", Reason: "commit", Count: 1})
	m.Write(event.CommitRefusal{Process: inPod, Syscall: "mmap", Reason: "commit", Count: 99999, Repeated: true})
	m.Write(event.CommitRefusal{Syscall: "brk", Reason: "rlimit_data", Count: 1})
	m.Write(event.Eviction{Pod: event.Pod{Namespace: "batch", Name: "etl-2"}, Cause: event.CauseKubeletEviction,
		OffendingContainers: []event.OffendingContainer{{Name: "loader"}, {Name: "sidecar"}}})
	m.Write(event.Eviction{Pod: event.Pod{Namespace: "batch", Name: "etl-3"}, Cause: event.CauseKubeletEviction,
		OffendingContainers: []event.OffendingContainer{{Name: "reader"}, {Name: "writer"}}})
	m.Write(event.Eviction{Pod: event.Pod{Namespace: "batch", Name: "etl-4"}, Cause: event.CauseKubeletEviction})
	m.Write(event.MemoryPressure{SignalName: "memory.available", MemorySignal: event.MemorySignal{BelowThreshold: true}})
	m.Write(event.MemoryPressure{SignalName: "memory.available"})
	m.Write(event.NodeCondition{Condition: "MemoryPressure", Status: "True"})
}

func newTestMetrics(now func() time.Time) *Metrics {
	return NewMetrics(MetricsOptions{Retention: time.Hour, Now: now})
}

func newTestStatus() *Status {
	return NewStatus(StatusOptions{
		Version: "v0.0.0-test",
		Hooks:   []Hook{{"oom_decision", "none"}, {"oom_victim", "tp_btf/mark_victim"}},
		Stats: func() (PipelineStats, error) {
			return PipelineStats{OOMKillsLost: 2, CommitRefusalsLost: 0, DecodeErrors: 1}, nil
		},
		KubeEvents: func() (uint64, uint64) { return 31, 4 },
		NodeMemory: func() (event.NodeMemory, bool) {
			th := uint64(100 << 20)
			return event.NodeMemory{MemoryAvailable: &event.MemorySignal{AvailableBytes: 3 << 30, ThresholdBytes: &th},
				AllocatableMemoryAvailable: &event.MemorySignal{AvailableBytes: -(1 << 20), ThresholdBytes: &th}}, true
		},
	})
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newTestMetrics(nil)
	knownSequence(m)
	reg.MustRegister(m, newTestStatus())
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestMetricsGolden scrapes /metrics over HTTP after a known sequence of
// events and compares the whole page with testdata/metrics.golden.
func TestMetricsGolden(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newTestMetrics(nil)
	knownSequence(m)
	reg.MustRegister(m, newTestStatus())
	var ready atomic.Bool
	srv := httptest.NewServer(Handler(reg, "/metrics", &ready))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got := strings.ReplaceAll(string(body), runtime.Version(), "GOVERSION")
	got = strings.ReplaceAll(got, `goarch="`+runtime.GOARCH+`"`, `goarch="GOARCH"`)
	const golden = "testdata/metrics.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("/metrics differs from %s (go test -update to accept):\n%s", golden, got)
	}

	for path, code := range map[string]int{"/healthz": 200, "/readyz": 503, "/": 200, "/nope": 404} {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, code)
		}
	}
	ready.Store(true)
	if resp, err := srv.Client().Get(srv.URL + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/readyz when ready: %v %v", resp, err)
	}
}

func TestMetricsRetention(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := newTestMetrics(func() time.Time { return now })
	m.Write(oomKill("shop", "cart-7d9f", "redis", event.DomainContainer))
	now = now.Add(50 * time.Minute)
	m.Write(oomKill("shop", "cart-7d9f", "redis", event.DomainAllocatable))
	if n := testutil.CollectAndCount(m, "oomtrace_oom_kills_total"); n != 2 {
		t.Fatalf("%d series, want 2", n)
	}
	now = now.Add(20 * time.Minute) // the first is 70 minutes old
	if n := testutil.CollectAndCount(m, "oomtrace_oom_kills_total"); n != 1 {
		t.Fatalf("%d series after retention, want 1", n)
	}
	// A series that moves again starts from its new count, not from zero
	// plus a gap: it was dropped, so it is new.
	m.Write(oomKill("shop", "cart-7d9f", "redis", event.DomainContainer))
	want := `# HELP oomtrace_oom_kills_total Tasks killed by the kernel OOM killer, by the victim's pod and container, the limit hit and whose it was, init or not, and part in a group kill; see docs/kubernetes.md.
# TYPE oomtrace_oom_kills_total counter
oomtrace_oom_kills_total{container="redis",domain="allocatable",group="none",init="unknown",limit="",namespace="shop",owner="",pod="cart-7d9f"} 1
oomtrace_oom_kills_total{container="redis",domain="container",group="none",init="unknown",limit="",namespace="shop",owner="",pod="cart-7d9f"} 1
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "oomtrace_oom_kills_total"); err != nil {
		t.Error(err)
	}
}

// TestMetricsRetentionFromLastMove: --metrics.retention counts from a
// series' last move, not from its birth.
func TestMetricsRetentionFromLastMove(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := newTestMetrics(func() time.Time { return now })
	m.Write(oomKill("shop", "cart-7d9f", "redis", event.DomainContainer))
	now = now.Add(50 * time.Minute)
	m.Write(oomKill("shop", "cart-7d9f", "redis", event.DomainContainer))
	now = now.Add(20 * time.Minute) // born 70 minutes ago, moved 20 minutes ago
	if n := testutil.CollectAndCount(m, "oomtrace_oom_kills_total"); n != 1 {
		t.Errorf("%d series, want the one that moved within the retention", n)
	}
}

// TestMetricsRetentionEveryPodFamily: the per-pod series of every family
// expire, the deaths' and the refusals' as the kills', at a scrape and on
// a node nobody scrapes.
func TestMetricsRetentionEveryPodFamily(t *testing.T) {
	inPod := func(i int) event.Process {
		return event.Process{Pod: &event.Pod{Namespace: "tenant", Name: fmt.Sprintf("pod-%d", i)}, Container: &event.Container{Name: "app"}}
	}
	write := func(m *Metrics, i int) {
		m.Write(event.CommitRefusal{Process: inPod(i), Syscall: "mmap", Reason: "commit", Count: 1})
		m.Write(event.Eviction{Pod: *inPod(i).Pod, Cause: event.CauseKubeletEviction})
	}
	families := []string{"oomtrace_commit_refusals_total", "oomtrace_container_deaths_total"}

	now := time.Unix(1_800_000_000, 0)
	m := newTestMetrics(func() time.Time { return now })
	write(m, 0)
	now = now.Add(70 * time.Minute)
	for _, f := range families {
		if n := testutil.CollectAndCount(m, f); n != 0 {
			t.Errorf("%s: %d series 70 minutes after their last move, want 0", f, n)
		}
	}

	// Unscraped: a new pod a minute for 500 minutes, an hour's retention.
	m = newTestMetrics(func() time.Time { return now })
	for i := range 500 {
		write(m, i)
		now = now.Add(time.Minute)
	}
	m.mu.Lock()
	refusals, deaths := len(m.series[refusalsFamily]), len(m.series[deathsFamily])
	m.mu.Unlock()
	if refusals > 62 || deaths > 62 {
		t.Errorf("%d refusal and %d death series kept without a scrape, want those of the last hour", refusals, deaths)
	}
}

// TestMetricsCreatedTimestamp: a per-pod series carries when it was born
// (its first event), and one dropped and born again its new birth: the
// created timestamp from which Prometheus knows a first sample of 1 rose
// from 0.
func TestMetricsCreatedTimestamp(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	m := newTestMetrics(func() time.Time { return now })
	m.Write(oomKill("shop", "cart-7d9f", "redis", event.DomainContainer))
	now = now.Add(time.Minute)
	m.Write(oomKill("shop", "cart-7d9f", "redis", event.DomainContainer))
	created := func() time.Time {
		t.Helper()
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(m)
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "oomtrace_oom_kills_total" && len(f.Metric) == 1 {
				c := f.Metric[0].GetCounter()
				if c.GetValue() < 1 || c.CreatedTimestamp == nil {
					t.Fatalf("counter %v", c)
				}
				return c.CreatedTimestamp.AsTime()
			}
		}
		t.Fatal("no oomtrace_oom_kills_total")
		return time.Time{}
	}
	if got := created(); !got.Equal(t0) {
		t.Errorf("created %v, want the first kill's %v", got, t0)
	}
	now = now.Add(2 * time.Hour) // past the retention: dropped at the next write
	m.Write(oomKill("shop", "cart-7d9f", "redis", event.DomainContainer))
	if got := created(); !got.Equal(now) {
		t.Errorf("created %v after a new birth, want %v", got, now)
	}
}

func TestStatusStatsFailure(t *testing.T) {
	m := NewStatus(StatusOptions{Stats: func() (PipelineStats, error) { return PipelineStats{}, errors.New("no map") }})
	want := `# HELP oomtrace_pipeline_stats_up Whether the pipeline counters could be read from the kernel at this scrape (1) or not (0).
# TYPE oomtrace_pipeline_stats_up gauge
oomtrace_pipeline_stats_up 0
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "oomtrace_pipeline_stats_up", "oomtrace_events_lost_total"); err != nil {
		t.Error(err)
	}
}

// TestMetricsExpireUnscraped: on a node nobody scrapes, the series of
// pods gone for longer than the retention are dropped as new ones come,
// not kept until a scrape.
func TestMetricsExpireUnscraped(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := newTestMetrics(func() time.Time { return now })
	for i := range 500 {
		m.Write(oomKill("tenant", fmt.Sprintf("pod-%d", i), "app", event.DomainContainer))
		now = now.Add(time.Minute)
	}
	m.mu.Lock()
	n := len(m.series[oomKillsFamily])
	m.mu.Unlock()
	// An hour's retention, a new pod a minute: about 60 series.
	if n > 62 {
		t.Errorf("%d series kept without a scrape, want those of the last hour", n)
	}
}

// TestDocsDocumentEveryMetric: docs/operating.md's metrics table has a row for
// each metric oomtrace serves (every Desc its collectors describe), with
// the labels it has, and no row for one it does not serve.
func TestDocsDocumentEveryMetric(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "docs", "operating.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "\n## Metrics\n")
	if !ok {
		t.Fatal("docs/operating.md has no Metrics section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	rowRe := regexp.MustCompile("(?m)^\\| `(oomtrace_[a-z_]+)` \\|[^|]+\\|([^|]*)\\|")
	documented := map[string]string{} // name: its labels cell
	for _, m := range rowRe.FindAllStringSubmatch(table, -1) {
		documented[m[1]] = m[2]
	}
	served := map[string][]string{}
	descs := make(chan *prometheus.Desc, 64)
	newTestMetrics(nil).Describe(descs)
	newTestStatus().Describe(descs)
	close(descs)
	descRe := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	for d := range descs {
		m := descRe.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read %s", d)
		}
		var labels []string
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		served[m[1]] = labels
	}
	// oomtrace_build_info comes from prometheus/common's version collector,
	// registered beside these.
	served["oomtrace_build_info"] = []string{"version", "revision", "goversion", "goarch"}
	for name, labels := range served {
		cell, ok := documented[name]
		if !ok {
			t.Errorf("docs/operating.md's metrics table has no row for %s", name)
			continue
		}
		for _, l := range labels {
			if !strings.Contains(cell, "`"+l+"`") {
				t.Errorf("docs/operating.md's row for %s does not name its label %s: %q", name, l, cell)
			}
		}
	}
	for name := range documented {
		if _, ok := served[name]; !ok {
			t.Errorf("docs/operating.md documents %s, which oomtrace does not serve", name)
		}
	}
	if len(served) < 15 {
		t.Errorf("only %d metrics described: %v", len(served), served)
	}
}

// TestUnnamedKills: a kill in a container that no source named (its
// container has no name, or its pod none) is counted in
// oomtrace_oom_kills_unnamed_total, from 0; a named one and a host
// process's are not.
func TestUnnamedKills(t *testing.T) {
	m := NewMetrics(MetricsOptions{})
	value := func() float64 {
		t.Helper()
		got := samples(t, m, "oomtrace_oom_kills_unnamed_total")
		if len(got) != 1 {
			t.Fatalf("%d series of oomtrace_oom_kills_unnamed_total", len(got))
		}
		return got[0].value
	}
	if v := value(); v != 0 {
		t.Fatalf("before any kill: %v", v)
	}
	kill := func(ctr *event.Container, pod *event.Pod) event.OOMKill {
		return event.OOMKill{Type: event.TypeOOMKill, Victim: event.Victim{Process: event.Process{PID: 1, Container: ctr, Pod: pod}}}
	}
	named := &event.Pod{UID: "u", Name: "web", Namespace: "shop"}
	for _, k := range []event.OOMKill{
		kill(&event.Container{ID: "c1", Name: "app"}, named),
		kill(nil, nil), // a host process
		kill(&event.Container{ID: "c2"}, named),
		kill(&event.Container{ID: "c3", Name: "app"}, &event.Pod{UID: "u"}),
	} {
		_ = m.Write(k)
	}
	if v := value(); v != 2 {
		t.Errorf("oomtrace_oom_kills_unnamed_total %v, want 2", v)
	}
}

// TestSourceUp: each configured source's state at scrape time.
func TestSourceUp(t *testing.T) {
	up := true
	s := NewStatus(StatusOptions{Sources: map[string]func() bool{
		SourceContainerRuntime: func() bool { return up },
		SourceAPIServer:        func() bool { return false },
	}})
	get := func() map[string]float64 {
		got := map[string]float64{}
		for _, x := range samples(t, s, "oomtrace_source_up") {
			got[x.labels["source"]] = x.value
		}
		return got
	}
	if got := get(); len(got) != 2 || got["container_runtime"] != 1 || got["apiserver"] != 0 {
		t.Errorf("oomtrace_source_up %v", got)
	}
	up = false
	if got := get(); got["container_runtime"] != 0 {
		t.Errorf("oomtrace_source_up %v after the runtime went down", got)
	}
}

// TestSeriesCap: a tenant making pods without end cannot grow a metric
// past MaxSeries: new label sets are counted in the overflow series, and
// in oomtrace_metrics_series_refused_total; the series there keep
// counting, and every kill is still counted.
func TestSeriesCap(t *testing.T) {
	m := NewMetrics(MetricsOptions{MaxSeries: 3})
	kill := func(pod string) event.OOMKill {
		return event.OOMKill{Type: event.TypeOOMKill, Cause: event.CauseOOMContainer, Victim: event.Victim{Process: event.Process{PID: 1,
			Container: &event.Container{ID: "c", Name: "app"}, Pod: &event.Pod{UID: pod, Name: pod, Namespace: "tenant"}}}}
	}
	for i := range 10 {
		_ = m.Write(kill(fmt.Sprintf("p%d", i)))
	}
	_ = m.Write(kill("p0")) // an existing series keeps counting
	series, total, overflow, refused := 0, 0.0, 0.0, 0.0
	for _, x := range samples(t, m, "oomtrace_oom_kills_total") {
		series++
		total += x.value
		if x.labels["pod"] == Overflow {
			overflow += x.value
		}
	}
	for _, x := range samples(t, m, "oomtrace_metrics_series_refused_total") {
		if x.labels["metric"] == "oomtrace_oom_kills_total" {
			refused = x.value
		}
	}
	if series != 4 || total != 11 || overflow != 7 || refused != 7 {
		t.Errorf("%d series (want 3 and the overflow), %v kills (want 11), %v in the overflow and %v refused (want 7)", series, total, overflow, refused)
	}
}

// sample is one series of a gathered metric.
type sample struct {
	labels map[string]string
	value  float64 // a counter's or a gauge's
}

// samples gathers c and returns the series of the metric name.
func samples(t *testing.T, c prometheus.Collector, name string) []sample {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []sample
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			x := sample{labels: map[string]string{}, value: m.GetCounter().GetValue() + m.GetGauge().GetValue()}
			for _, l := range m.GetLabel() {
				x.labels[l.GetName()] = l.GetValue()
			}
			out = append(out, x)
		}
	}
	return out
}

// TestGroupKillFolded: a group decision's chosen kill carries the kills
// that had no event of their own; they are counted as members of its
// group, under its pod and container.
func TestGroupKillFolded(t *testing.T) {
	m := NewMetrics(MetricsOptions{})
	chosen := oomKill("shop", "cart-7d9f", "redis", event.DomainContainer)
	chosen.OOM.Group = &event.GroupKill{DecisionSeq: 10, Chosen: true, Folded: 1292}
	member := oomKill("shop", "cart-7d9f", "redis", event.DomainContainer)
	member.OOM.Group = &event.GroupKill{DecisionSeq: 10}
	_ = m.Write(chosen)
	for range 7 {
		_ = m.Write(member)
	}
	got := map[string]float64{}
	for _, s := range samples(t, m, "oomtrace_oom_kills_total") {
		if s.labels["pod"] != "cart-7d9f" || s.labels["container"] != "redis" {
			t.Errorf("series %v: want the group's pod and container", s.labels)
		}
		got[s.labels["group"]] += s.value
	}
	if got["chosen"] != 1 || got["member"] != 7+1292 || len(got) != 2 {
		t.Errorf("kills by group label %v: want chosen 1, member 1299", got)
	}
}
