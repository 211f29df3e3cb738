// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oomtrace/oomtrace/exporter"
)

// ruleGroups is a Prometheus rules file's content, decoded strictly.
type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// prometheusRule is the part of monitoring.coreos.com/v1 PrometheusRule
// we write.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ruleGroups `json:"spec"`
}

func rulesFile(t *testing.T) ruleGroups {
	t.Helper()
	data, err := os.ReadFile("monitoring/rules/oomtrace.rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rg ruleGroups
	if err := strictDecode(data, &rg); err != nil {
		t.Fatalf("rules file: %v", err)
	}
	return rg
}

// TestPrometheusRuleIsTheRulesFile: the PrometheusRule ships the groups
// promtool tests, not a copy that drifted.
func TestPrometheusRuleIsTheRulesFile(t *testing.T) {
	pr := only[*prometheusRule](t, all(t)["monitoring/prometheusrule.yaml"])
	if pr.Namespace != "oomtrace" || pr.Labels["app.kubernetes.io/name"] != "oomtrace" {
		t.Errorf("PrometheusRule %s/%s labels %v", pr.Namespace, pr.Name, pr.Labels)
	}
	if rg := rulesFile(t); !reflect.DeepEqual(pr.Spec, rg) {
		t.Errorf("the PrometheusRule's groups differ from monitoring/rules/oomtrace.rules.yaml:\n%+v\n%+v", pr.Spec, rg)
	}
}

// servedSeries are the metrics oomtrace serves and their labels, from the
// exporter's own descriptions.
func servedSeries(t *testing.T) map[string][]string {
	t.Helper()
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		exporter.NewMetrics(exporter.MetricsOptions{}).Describe(ch)
		exporter.NewStatus(exporter.StatusOptions{}).Describe(ch)
		close(ch)
	}()
	// Desc has no accessors; its String is stable: fqName: "...", ...
	// variableLabels: {a,b}.
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	labels := regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	served := map[string][]string{}
	for d := range ch {
		s := d.String()
		n := name.FindStringSubmatch(s)
		if n == nil {
			t.Fatalf("cannot read %s", s)
		}
		var ls []string
		if l := labels.FindStringSubmatch(s); l != nil && l[1] != "" {
			ls = strings.Split(l[1], ",")
		}
		served[n[1]] = ls
	}
	return served
}

// TestRulesUseServedSeries: every oomtrace metric an alert reads is one
// oomtrace serves, and every label it matches or groups by is one of the
// metric's (or a scrape target's: instance, job).
func TestRulesUseServedSeries(t *testing.T) {
	served := servedSeries(t)
	if len(served) < 10 {
		t.Fatalf("only %d metrics described: %v", len(served), served)
	}
	for _, g := range rulesFile(t).Groups {
		for _, r := range g.Rules {
			checkExpr(t, served, r.Alert, r.Expr)
		}
	}
}

// checkExpr checks the oomtrace metrics expr reads, the labels it matches
// on them and the labels it groups by against what oomtrace serves.
func checkExpr(t *testing.T, served map[string][]string, where, expr string) {
	t.Helper()
	metric := regexp.MustCompile(`\b(oomtrace_[a-z_]+)(\{[^}]*\})?`)
	matcher := regexp.MustCompile(`([a-z_]+)\s*(=~|!~|!=|=)`)
	by := regexp.MustCompile(`by \(([^)]*)\)`)
	uses := map[string]bool{}
	for _, m := range metric.FindAllStringSubmatch(expr, -1) {
		labels, ok := served[m[1]]
		if !ok {
			t.Errorf("%s: %s is not a metric oomtrace serves", where, m[1])
			continue
		}
		uses[m[1]] = true
		for _, lm := range matcher.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(labels, lm[1]) {
				t.Errorf("%s: %s has no label %s (it has %v)", where, m[1], lm[1], labels)
			}
		}
	}
	if len(uses) == 0 {
		t.Errorf("%s: %q reads no oomtrace metric", where, expr)
	}
	for _, b := range by.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(b[1], ",") {
			l = strings.TrimSpace(l)
			found := l == "instance" || l == "job"
			for m := range uses {
				found = found || slices.Contains(served[m], l)
			}
			if !found {
				t.Errorf("%s: groups by %s, which none of %v has", where, l, uses)
			}
		}
	}
}

// dashboard is the part of the Grafana dashboard the tests read.
type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
	} `json:"panels"`
}

// TestDashboardUsesServedSeries: every query of every panel reads metrics
// and labels oomtrace serves, and each legend names only labels the query
// keeps. (make test-rules parses every query with promtool.)
func TestDashboardUsesServedSeries(t *testing.T) {
	data, err := os.ReadFile("monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID != "oomtrace" || len(d.Panels) < 6 {
		t.Fatalf("dashboard %q (%s) with %d panels", d.Title, d.UID, len(d.Panels))
	}
	served := servedSeries(t)
	legend := regexp.MustCompile(`\{\{\s*([a-z_]+)\s*\}\}`)
	by := regexp.MustCompile(`by \(([^)]*)\)`)
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			checkExpr(t, served, "panel "+p.Title, q.Expr)
			// A legend's label must survive the query's aggregation.
			if b := by.FindStringSubmatch(q.Expr); b != nil {
				for _, l := range legend.FindAllStringSubmatch(q.LegendFormat, -1) {
					if !strings.Contains(b[1], l[1]) {
						t.Errorf("panel %q: legend {{%s}}, but the query keeps only %s", p.Title, l[1], b[1])
					}
				}
			}
		}
	}
}

// TestDashboardConfigMap: kubectl apply -k deploy/monitoring/ makes the
// PrometheusRule and a ConfigMap holding the dashboard as the Grafana
// sidecar finds it.
func TestDashboardConfigMap(t *testing.T) {
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "monitoring")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, r := range res.Resources() {
		kinds[r.GetKind()]++
		if r.GetKind() != "ConfigMap" {
			continue
		}
		if r.GetName() != "oomtrace-dashboard" || r.GetNamespace() != "oomtrace" || r.GetLabels()["grafana_dashboard"] != "1" {
			t.Errorf("ConfigMap %s/%s labels %v", r.GetNamespace(), r.GetName(), r.GetLabels())
		}
		if got := r.GetDataMap()["dashboard.json"]; got != string(want) {
			t.Errorf("ConfigMap's dashboard.json is not monitoring/dashboard.json")
		}
	}
	if kinds["ConfigMap"] != 1 || kinds["PrometheusRule"] != 1 {
		t.Errorf("kinds %v", kinds)
	}
}

// TestEveryAlertHasARunbook: every alert links its section of
// docs/runbooks.md, and that section is there.
func TestEveryAlertHasARunbook(t *testing.T) {
	data, err := os.ReadFile("../docs/runbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if title, ok := strings.CutPrefix(line, "## "); ok {
			anchors[strings.ToLower(strings.TrimSpace(title))] = true
		}
	}
	const base = "https://github.com/oomtrace/oomtrace/blob/main/docs/runbooks.md#"
	n := 0
	for _, g := range rulesFile(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			url := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(url, base)
			if !ok || anchor != strings.ToLower(r.Alert) || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q, want %s%s and a section ## %s in docs/runbooks.md", r.Alert, url, base, strings.ToLower(r.Alert), r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatal("no alerts")
	}
}
