// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
)

// monitoringJob is the scrape job the operator generates from the shipped
// PodMonitor (deploy/podmonitor.yaml): podMonitor/<namespace>/<name>/<endpoint>;
// its series' job label is <namespace>/<name>.
const (
	monitoringJob   = "podMonitor/oomtrace/oomtrace/0"
	monitoringLabel = "oomtrace/oomtrace"
)

// startMonitoring applies the monitoring objects as the README says
// (kubectl apply -f deploy/podmonitor.yaml, kubectl apply -k
// deploy/monitoring/) under a Prometheus Operator, and runs the
// Prometheus it configures.
func startMonitoring(t *testing.T, c *Cluster) *Monitoring {
	m := c.StartMonitoring(t)
	c.Apply(t, FileObjects(t, "../../../deploy/podmonitor.yaml")...)
	c.Apply(t, KustomizeObjects(t, "../../../deploy/monitoring")...)
	m.RunPrometheus(t, monitoringJob, "oomtrace")
	return m
}

// testPrometheusAlerts: what an operator's Prometheus shows of the kills
// of container_limit and worker_process_kill, scraped through the
// operator's configuration for the shipped PodMonitor and evaluating the
// shipped PrometheusRule. Each alert fires with the victim's namespace,
// pod, container and owner (not the agent's: honorLabels), no series has
// an exported_ label, and every query of the dashboard runs, the kill
// panels showing the kills.
func testPrometheusAlerts(t *testing.T, c *Cluster, m *Monitoring, since time.Time) {
	waitQuery(t, m, "the agent scraped", fmt.Sprintf(`up{job=%q} == 1`, monitoringLabel), nil)
	// And a process outside any pod, killed at its cgroup's limit: its
	// series has no namespace, pod or container, and must not get the
	// agent's.
	cg := memcgtest.New(t, nil, 32<<20)
	h := cg.Start(t, memcgtest.HogOptions{Bytes: 128 << 20})
	h.Cmd.Wait()
	waitQuery(t, m, "the host process's kill", `oomtrace_oom_kills_total{namespace="", pod="", container=""}`, nil)
	for _, a := range []struct {
		name   string
		labels map[string]string
	}{
		{"ContainerOOMKilled", map[string]string{"namespace": "shop", "pod": "cart", "container": "redis", "owner": "Deployment/cart", "cause": "kernel_oom_container"}},
		{"OOMKillInRunningContainer", map[string]string{"namespace": "shop", "pod": "web", "container": "app", "owner": "Deployment/web"}},
	} {
		expr := fmt.Sprintf(`max_over_time(ALERTS{alertname=%q, alertstate="firing"}[1h])`, a.name)
		got := waitQuery(t, m, a.name+" fired", expr, a.labels)
		t.Logf("%s fired: %v", a.name, got.Metric)
	}
	if s, err := m.Query(`count by (__name__) ({__name__=~"oomtrace_.+", exported_namespace!=""} or {__name__=~"oomtrace_.+", exported_pod!=""})`); err != nil || len(s) > 0 {
		t.Errorf("series with exported_ labels (the target's labels won over oomtrace's): %v %v", s, err)
	}
	if s, err := m.Query(`{__name__=~"oomtrace_(oom_kills|container_deaths)_total", namespace="oomtrace"} or {__name__=~"oomtrace_.+", pod=~"oomtrace-.+"}`); err != nil || len(s) > 0 {
		t.Errorf("series named with the agent's namespace or pod: %v %v", s, err)
	}
	if s, err := m.Query(`max_over_time(ALERTS{namespace="oomtrace"}[1h]) or max_over_time(ALERTS{pod=~"oomtrace-.+"}[1h])`); err != nil || len(s) > 0 {
		t.Errorf("alerts naming the agent's pod: %v %v", s, err)
	}

	// The dashboard's queries, as Grafana sends them with its variables
	// set, over the time since the kills: each runs, and the panels about
	// kills show these.
	data, err := os.ReadFile("../../../deploy/monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	range_ := time.Since(since).Truncate(time.Minute) + time.Minute
	vars := strings.NewReplacer("$__rate_interval", "2m", "$__range", fmt.Sprintf("%ds", int(range_.Seconds())), "$namespace", ".*")
	want := map[string]map[string]string{
		"OOM kills by limit hit":            {"domain": "container"},
		"Container deaths by cause":         {"cause": "kernel_oom_container"},
		"Kills the kubelet does not report": {"namespace": "shop", "pod": "web", "container": "app"},
		"Kills by workload":                 {"namespace": "shop", "owner": "Deployment/cart"},
	}
	seen := map[string]bool{}
	for _, p := range d.Panels {
		for i, target := range p.Targets {
			expr := vars.Replace(target.Expr)
			var series []map[string]string
			var err error
			if strings.Contains(target.Expr, "$__range") {
				// A table over the dashboard's range: one instant.
				var s []Sample
				s, err = m.Query(expr)
				for _, x := range s {
					series = append(series, x.Metric)
				}
			} else {
				series, err = m.QueryRange(expr, since, time.Now(), 10*time.Second)
			}
			if err != nil {
				t.Errorf("panel %q, query %d: %v", p.Title, i, err)
				continue
			}
			if labels, ok := want[p.Title]; ok && i == 0 {
				seen[p.Title] = true
				if !hasSeries(series, labels) {
					t.Errorf("panel %q shows %v, want a series with %v\n%s", p.Title, series, labels, expr)
				}
			}
		}
	}
	for title := range want {
		if !seen[title] {
			t.Errorf("the dashboard has no panel %q", title)
		}
	}
}

// waitQuery polls an instant query until it returns a series whose labels
// include labels, and returns it.
func waitQuery(t *testing.T, m *Monitoring, what, expr string, labels map[string]string) Sample {
	t.Helper()
	var last []Sample
	var err error
	for deadline := time.Now().Add(Patience(3 * time.Minute)); ; time.Sleep(5 * time.Second) {
		last, err = m.Query(expr)
		for _, s := range last {
			if hasSeries([]map[string]string{s.Metric}, labels) {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s returned %v (%v), want a series with %v\nprometheus:\n%s", what, expr, last, err, labels, tail(m.c.Log("prometheus"), 10))
		}
	}
}

// hasSeries: one of series has every label of want.
func hasSeries(series []map[string]string, want map[string]string) bool {
	for _, s := range series {
		if subset(want, s) {
			return true
		}
	}
	return false
}

func subset(want, s map[string]string) bool {
	for k, v := range want {
		if s[k] != v {
			return false
		}
	}
	return true
}

// testLogLines: the agent's own container log, as the kubelet and
// containerd write it (CRI format: time, stream, P for a partial line or
// F for a full one, content), holds every JSON line whole: no line was
// split into partials (containerd splits those over 16 KiB), and each on
// stdout is one event, valid under docs/events.schema.json. The hostile tenant's pods (thousands of labels)
// made the longest.
func testLogLines(t *testing.T, c *Cluster, o *Oomtrace) {
	files, err := filepath.Glob(filepath.Join(c.Dir, "pod-logs", "oomtrace_"+o.Pod.Name+"_*", "oomtrace", "*.log"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no container log of %s under %s (%v)", o.Pod.Name, filepath.Join(c.Dir, "pod-logs"), err)
	}
	schema, err := jsonschema.NewCompiler().Compile(filepath.Join(repoRoot, "docs", "events.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	events, kills, longest := 0, 0, 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			fields := strings.SplitN(line, " ", 4)
			if len(fields) != 4 {
				t.Errorf("%s:%d: not a CRI log line: %.200q", f, i+1, line)
				continue
			}
			stream, tag, content := fields[1], fields[2], fields[3]
			if tag != "F" {
				t.Errorf("%s:%d: a partial line (%s, %s): %d bytes: %.200q", f, i+1, stream, tag, len(content), content)
				continue
			}
			if stream != "stdout" {
				continue
			}
			longest = max(longest, len(content)+1)
			var ev struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal([]byte(content), &ev); err != nil || ev.Type == "" {
				t.Errorf("%s:%d: not one event (%v): %.200q", f, i+1, err, content)
				continue
			}
			if v, err := jsonschema.UnmarshalJSON(strings.NewReader(content)); err != nil || schema.Validate(v) != nil {
				t.Errorf("%s:%d: not valid under docs/events.schema.json (%v, %v): %.300q", f, i+1, err, schema.Validate(v), content)
			}
			events++
			if ev.Type == "oom_kill" {
				kills++
			}
		}
	}
	t.Logf("%d events (%d kills) in %s, the longest line %d bytes", events, kills, strings.Join(files, ", "), longest)
	if kills == 0 {
		t.Error("no oom_kill line: the check would prove nothing")
	}
}
