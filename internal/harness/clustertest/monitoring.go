// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Environment of the monitoring stack (make test-cluster builds both from
// the Go module proxy and points these at them).
const (
	// OperatorEnv names the Prometheus Operator's binary, OperatorCRDsEnv
	// the directory of its CRDs (example/prometheus-operator-crd of its
	// module).
	OperatorEnv     = "OOMTRACE_PROMETHEUS_OPERATOR"
	OperatorCRDsEnv = "OOMTRACE_PROMETHEUS_OPERATOR_CRDS"
	// PrometheusEnv names the prometheus binary.
	PrometheusEnv = "OOMTRACE_PROMETHEUS"
)

// Monitoring is an operator's monitoring stack on the cluster: the
// Prometheus Operator watching the API server, a Prometheus object it
// reconciles, and a prometheus process running the scrape configuration
// and the rule files the operator generated for it.
type Monitoring struct {
	c *Cluster
	// URL is the Prometheus's HTTP API.
	URL string
}

// prometheusName is the Prometheus object's name; the operator keeps its
// configuration in the Secret prometheus-<name> and its rules in the
// ConfigMaps prometheus-<name>-rulefiles-<n>.
const prometheusName = "k8s"

// KustomizeObjects renders the kustomization at dir as kubectl apply -k
// does.
func KustomizeObjects(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	return kustomize(t, dir, krusty.MakeDefaultOptions())
}

// kustomize renders the kustomization at dir with opts.
func kustomize(t *testing.T, dir string, opts *krusty.Options) []*unstructured.Unstructured {
	t.Helper()
	resources, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range resources.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

// FileObjects decodes the YAML documents of a manifest file, as kubectl
// apply -f reads them.
func FileObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

// StartMonitoring installs the Prometheus Operator's CRDs, runs the
// operator against the cluster, creates a Prometheus object selecting
// every PodMonitor and PrometheusRule, and runs prometheus with what the
// operator generates for it (RunPrometheus). The only changes to the
// generated configuration are those of running prometheus outside a pod:
// its Kubernetes service discovery is given the API server's address and
// the admin's certificate instead of a service account, the rule files
// are read from where the test wrote the operator's ConfigMaps, and the
// variables the operator's config reloader expands in the pod ($(SHARD),
// $(POD_NAME)) are expanded as it does.
func (c *Cluster) StartMonitoring(t *testing.T) *Monitoring {
	t.Helper()
	operator, crds, prom := os.Getenv(OperatorEnv), os.Getenv(OperatorCRDsEnv), os.Getenv(PrometheusEnv)
	if operator == "" || crds == "" || prom == "" {
		t.Fatalf("%s, %s and %s must be set (make test-cluster sets them)", OperatorEnv, OperatorCRDsEnv, PrometheusEnv)
	}
	files, err := filepath.Glob(filepath.Join(crds, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in %s (%v)", crds, err)
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		objs = append(objs, FileObjects(t, f)...)
	}
	c.Apply(t, objs...)
	// Every CRD's resource in discovery, not only its group: the operator
	// looks once, at its start, and runs no controller for a resource it
	// did not find (its Prometheus then never got a configuration).
	var plurals []string
	for _, o := range objs {
		p, _, _ := unstructured.NestedString(o.Object, "spec", "names", "plural")
		versions, _, _ := unstructured.NestedSlice(o.Object, "spec", "versions")
		for _, v := range versions {
			if m, ok := v.(map[string]any); ok && m["name"] == "v1" && m["served"] == true && p != "" {
				plurals = append(plurals, p)
			}
		}
	}
	c.waitFor(t, "the monitoring CRDs", time.Minute, func() error {
		list, err := c.Client.Discovery().ServerResourcesForGroupVersion("monitoring.coreos.com/v1")
		if err != nil {
			return err
		}
		for _, p := range plurals {
			if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == p }) {
				return fmt.Errorf("%s not in discovery yet", p)
			}
		}
		return nil
	})

	p := c.pki.Path
	c.procs.Start(t, "prometheus-operator", operator, "--apiserver="+apiServer,
		"--ca-file="+p("ca.crt"), "--cert-file="+p("admin.crt"), "--key-file="+p("admin.key"),
		"--web.listen-address=127.0.0.1:8081", "--kubelet-endpoints=false")
	c.Namespace(t, "monitoring")
	// No pod runs it: replicas 0 (the operator still writes its
	// configuration); scraped and evaluated every 10 s.
	c.Apply(t, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
		"metadata": map[string]any{"name": prometheusName, "namespace": "monitoring"},
		"spec": map[string]any{
			"replicas": int64(0), "scrapeInterval": "10s", "evaluationInterval": "10s",
			"podMonitorSelector": map[string]any{}, "podMonitorNamespaceSelector": map[string]any{},
			"ruleSelector": map[string]any{}, "ruleNamespaceSelector": map[string]any{},
			"serviceMonitorSelector": map[string]any{}, "serviceMonitorNamespaceSelector": map[string]any{},
		},
	}})
	return &Monitoring{c: c}
}

// generatedConfig is the operator's configuration for the Prometheus
// object, once it has the scrape job of the PodMonitor, and its rule
// files, once they hold the rule group.
func (c *Cluster) generatedConfig(t *testing.T, job, group string) (config []byte, rules map[string]string) {
	t.Helper()
	ctx := context.Background()
	c.waitFor(t, "the operator's configuration with job "+job+" and group "+group, Patience(2*time.Minute), func() error {
		s, err := c.Client.CoreV1().Secrets("monitoring").Get(ctx, "prometheus-"+prometheusName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("%w\noperator:\n%s", err, tail(c.Log("prometheus-operator"), 10))
		}
		zr, err := gzip.NewReader(bytes.NewReader(s.Data["prometheus.yaml.gz"]))
		if err != nil {
			return err
		}
		if config, err = io.ReadAll(zr); err != nil {
			return err
		}
		if !bytes.Contains(config, []byte("job_name: "+job)) {
			return fmt.Errorf("no job %s in\n%s", job, config)
		}
		cms, err := c.Client.CoreV1().ConfigMaps("monitoring").List(ctx, metav1.ListOptions{LabelSelector: "prometheus-name=" + prometheusName})
		if err != nil {
			return err
		}
		rules = map[string]string{}
		for _, cm := range cms.Items {
			for name, data := range cm.Data {
				rules[cm.Name+"_"+name] = data
			}
		}
		for _, data := range rules {
			if strings.Contains(data, "name: "+group) {
				return nil
			}
		}
		return fmt.Errorf("no rule group %s in the rule files' ConfigMaps (%d files)", group, len(rules))
	})
	return config, rules
}

// RunPrometheus starts prometheus with the configuration the operator
// generated, once it scrapes job and has rule group.
func (m *Monitoring) RunPrometheus(t *testing.T, job, group string) {
	t.Helper()
	config, rules := m.c.generatedConfig(t, job, group)
	dir := filepath.Join(m.c.Dir, "prometheus")
	rulesDir := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range rules {
		if err := os.WriteFile(filepath.Join(rulesDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The operator's config reloader, beside prometheus in its pod,
	// expands these before prometheus reads the file: the shard (one,
	// 0) and the pod's name.
	config = bytes.ReplaceAll(config, []byte("$(SHARD)"), []byte("0"))
	config = bytes.ReplaceAll(config, []byte("$(POD_NAME)"), []byte("prometheus-"+prometheusName+"-0"))
	var cfg map[string]any
	if err := yaml.Unmarshal(config, &cfg); err != nil {
		t.Fatalf("the operator's configuration: %v", err)
	}
	p := m.c.pki.Path
	for _, sc := range asSlice(cfg["scrape_configs"]) {
		for _, sd := range asSlice(sc.(map[string]any)["kubernetes_sd_configs"]) {
			sd := sd.(map[string]any)
			sd["api_server"] = apiServer
			sd["tls_config"] = map[string]any{"ca_file": p("ca.crt"), "cert_file": p("admin.crt"), "key_file": p("admin.key")}
		}
	}
	cfg["rule_files"] = []any{filepath.Join(rulesDir, "*")}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "prometheus.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("prometheus runs the operator's configuration (%d bytes, %d rule files)", len(config), len(rules))
	const addr = "127.0.0.1:9090"
	m.c.procs.Start(t, "prometheus", os.Getenv(PrometheusEnv), "--config.file="+file,
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	m.URL = "http://" + addr
	m.c.waitFor(t, "prometheus", time.Minute, func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// Sample is one series of a query's result.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Query runs an instant query at the current time.
func (m *Monitoring) Query(expr string) ([]Sample, error) {
	return m.api("query", url.Values{"query": {expr}})
}

// QueryRange runs a range query and returns the labels of each series in
// its result.
func (m *Monitoring) QueryRange(expr string, start, end time.Time, step time.Duration) ([]map[string]string, error) {
	samples, err := m.api("query_range", url.Values{"query": {expr}, "start": {fmt.Sprint(start.Unix())}, "end": {fmt.Sprint(end.Unix())},
		"step": {fmt.Sprint(int(step.Seconds()))}})
	var series []map[string]string
	for _, s := range samples {
		series = append(series, s.Metric)
	}
	return series, err
}

func (m *Monitoring) api(endpoint string, q url.Values) ([]Sample, error) {
	expr := q.Get("query")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL+"/api/v1/"+endpoint+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string   `json:"resultType"`
			Result     []Sample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query %s: %s: %w", expr, resp.Status, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", expr, r.Error)
	}
	return r.Data.Result, nil
}
