// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// chartDir is the Helm chart.
const chartDir = "helm/oomtrace"

// helmOnlyLabels are the labels the chart adds to every object's
// metadata, as Helm charts do; selectors and the pod template have the
// kustomize base's alone.
var helmOnlyLabels = []string{"app.kubernetes.io/managed-by", "helm.sh/chart"}

// helmBinary is the helm that make test-helm builds (OOMTRACE_HELM).
func helmBinary(t *testing.T) string {
	t.Helper()
	helm := os.Getenv("OOMTRACE_HELM")
	if helm == "" {
		t.Skip("needs helm: make test-helm builds it and runs this test")
	}
	return helm
}

// helmTemplate renders the chart into namespace oomtrace with the values
// set, as helm install would.
func helmTemplate(t *testing.T, helm string, set ...string) ([]map[string]any, error) {
	t.Helper()
	args := []string{"template", "oomtrace", chartDir, "--namespace", "oomtrace"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, &helmError{err: err, stderr: stderr.String()}
	}
	objs := splitYAML(t, out)
	for _, o := range objs {
		if labels, ok := o["metadata"].(map[string]any)["labels"].(map[string]any); ok {
			for _, l := range helmOnlyLabels {
				if _, ok := labels[l]; !ok {
					t.Errorf("%s has no label %s", objectKey(o), l)
				}
				delete(labels, l)
			}
		}
	}
	return objs, nil
}

type helmError struct {
	err    error
	stderr string
}

func (e *helmError) Error() string { return e.err.Error() + ": " + e.stderr }

// kustomizeObjects renders the kustomize directories as kubectl apply -k
// does, and adds the plain manifest files.
func kustomizeObjects(t *testing.T, dirs []string, files []string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, dir := range dirs {
		res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		out, err := res.AsYaml()
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, splitYAML(t, out)...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, splitYAML(t, data)...)
	}
	return objs
}

// splitYAML decodes a stream of YAML documents into JSON-shaped objects
// (numbers float64, as on both sides), leaving out empty documents.
func splitYAML(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("%v in:\n%s", err, doc)
		}
		var o map[string]any
		if err := json.Unmarshal(j, &o); err != nil {
			t.Fatal(err)
		}
		if len(o) > 0 {
			objs = append(objs, o)
		}
	}
	return objs
}

func objectKey(o map[string]any) string {
	md, _ := o["metadata"].(map[string]any)
	return o["kind"].(string) + " " + stringOf(md["namespace"]) + "/" + stringOf(md["name"])
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

// TestHelmChartRendersTheKustomizeObjects: the chart, with its values
// for each variant, renders exactly the objects kubectl apply -k renders
// (Helm's two labels aside): the privileged default, the capabilities
// variant, and with the monitoring values the PrometheusRule, the
// dashboard's ConfigMap and the PodMonitor.
func TestHelmChartRendersTheKustomizeObjects(t *testing.T) {
	helm := helmBinary(t)
	for _, c := range []struct {
		name      string
		set       []string
		kustomize []string
		files     []string
	}{
		{"privileged", []string{"namespace.create=true"}, []string{"."}, nil},
		{"capabilities", []string{"namespace.create=true", "variant=capabilities"}, []string{"capabilities"}, nil},
		{"monitoring", []string{"namespace.create=true", "rules.enabled=true", "dashboard.enabled=true", "podMonitor.enabled=true"},
			[]string{".", "monitoring"}, []string{"podmonitor.yaml"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := helmTemplate(t, helm, c.set...)
			if err != nil {
				t.Fatal(err)
			}
			want := kustomizeObjects(t, c.kustomize, c.files)
			byKey := func(objs []map[string]any) map[string]map[string]any {
				m := map[string]map[string]any{}
				for _, o := range objs {
					if _, dup := m[objectKey(o)]; dup {
						t.Errorf("%s rendered twice", objectKey(o))
					}
					m[objectKey(o)] = o
				}
				return m
			}
			g, w := byKey(got), byKey(want)
			var keys []string
			for k := range w {
				keys = append(keys, k)
			}
			for k := range g {
				if _, ok := w[k]; !ok {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			for _, k := range keys {
				switch {
				case g[k] == nil:
					t.Errorf("%s: kustomize renders it, the chart does not", k)
				case w[k] == nil:
					t.Errorf("%s: the chart renders it, kustomize does not", k)
				case !reflect.DeepEqual(g[k], w[k]):
					gj, _ := json.MarshalIndent(g[k], "", "  ")
					wj, _ := json.MarshalIndent(w[k], "", "  ")
					t.Errorf("%s differs.\nchart:\n%s\nkustomize:\n%s", k, gj, wj)
				}
			}
		})
	}
}

// TestHelmChartValues: the flags value becomes arguments in the order of
// their names, the image tag defaults to the chart's appVersion (the
// kustomize base's tag), the Namespace is left out unless namespace.create
// is set (helm install --create-namespace makes it first), and a variant it
// does not know is an error.
func TestHelmChartValues(t *testing.T) {
	helm := helmBinary(t)
	objs, err := helmTemplate(t, helm, "flags.kube\\.events\\.container-kills=false", "flags.filter\\.namespace=shop",
		"image.tag=v9.9.9")
	if err != nil {
		t.Fatal(err)
	}
	var ds map[string]any
	for _, o := range objs {
		if o["kind"] == "Namespace" {
			t.Error("the default values rendered the Namespace: Helm 3 refuses it after --create-namespace")
		}
		if o["kind"] == "DaemonSet" {
			ds = o
		}
	}
	if ds == nil {
		t.Fatal("no DaemonSet")
	}
	ctr := ds["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	var args []string
	for _, a := range ctr["args"].([]any) {
		args = append(args, a.(string))
	}
	if n := len(args); n < 2 || args[n-2] != "--filter.namespace=shop" || args[n-1] != "--kube.events.container-kills=false" {
		t.Errorf("args %q: want the flags last, by name", args)
	}
	if ctr["image"] != "ghcr.io/oomtrace/oomtrace:v9.9.9" {
		t.Errorf("image %v", ctr["image"])
	}
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	objs, err = helmTemplate(t, helm, "image.tag=v9.9.9", "image.digest="+digest)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o["kind"] == "DaemonSet" {
			c := o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
			if c["image"] != "ghcr.io/oomtrace/oomtrace@"+digest {
				t.Errorf("with image.digest: image %v, want it by digest", c["image"])
			}
		}
	}
	if _, err := helmTemplate(t, helm, "image.digest=latest"); err == nil {
		t.Error("image.digest=latest was accepted")
	}

	chart, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(chart, &meta); err != nil {
		t.Fatal(err)
	}
	k := only[*kustomization](t, decodeFile(t, "base/kustomization.yaml"))
	if len(k.Images) != 1 || k.Images[0].NewTag != meta.AppVersion {
		t.Errorf("Chart.yaml appVersion %s, the kustomize base's image tag %+v", meta.AppVersion, k.Images)
	}

	// kube-prometheus-stack selects monitors and rules by its release's
	// label: the chart adds it where asked, beside its own.
	objs, err = helmTemplate(t, helm, "podMonitor.enabled=true", "rules.enabled=true",
		"podMonitor.additionalLabels.release=kps", "rules.additionalLabels.release=kps-rules")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"PodMonitor": "kps", "PrometheusRule": "kps-rules"}
	for _, o := range objs {
		kind, _ := o["kind"].(string)
		if release, ok := want[kind]; ok {
			labels := o["metadata"].(map[string]any)["labels"].(map[string]any)
			if labels["release"] != release || labels["app.kubernetes.io/name"] != "oomtrace" {
				t.Errorf("%s labels %v: want release=%s beside the chart's own", kind, labels, release)
			}
			delete(want, kind)
		}
	}
	if len(want) > 0 {
		t.Errorf("not rendered: %v", want)
	}

	// values.schema.json refuses what the chart does not know, a
	// misspelt value too.
	for set, want := range map[string]string{
		"variant=root":              "/variant",
		"podMonitr.enabled=true":    "podMonitr",
		"metricsPort=0":             "/metricsPort",
		"kubeletConfig=config.yaml": "/kubeletConfig",
		"podMonitor.interval=30":    "/podMonitor/interval",
		"flags.--web\\.listen=:1":   "does not match pattern",
	} {
		if _, err := helmTemplate(t, helm, set); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want the schema's error at %s", set, err, want)
		}
	}
}

// TestHelmChartRuntimes: each runtime preset mounts its socket directory
// of the host's /run where oomtrace looks for it (below --path.run), or
// another host path there with runtimeRunDir; none mounts nothing and
// names containers without CRI; a runtime it does not know is an error.
func TestHelmChartRuntimes(t *testing.T) {
	helm := helmBinary(t)
	for _, c := range []struct {
		set                 []string
		hostPath, mountPath string
		criNone             bool
	}{
		{nil, "/run/containerd", "/host/run/containerd", false},
		{[]string{"runtime=crio"}, "/run/crio", "/host/run/crio", false},
		{[]string{"runtime=k3s"}, "/run/k3s/containerd", "/host/run/k3s/containerd", false},
		{[]string{"runtime=crio", "runtimeRunDir=/var/run/crio"}, "/var/run/crio", "/host/run/crio", false},
		{[]string{"runtime=none"}, "", "", true},
	} {
		objs, err := helmTemplate(t, helm, c.set...)
		if err != nil {
			t.Fatal(err)
		}
		hostPaths, mounts, args := agentPod(t, objs)
		hostPath, mountPath := hostPaths["run"], mounts["run"]
		criNone, pathRun := slices.Contains(args, "--cri.endpoint=none"), slices.Contains(args, "--path.run=/host/run")
		if hostPath != c.hostPath || mountPath != c.mountPath || criNone != c.criNone || pathRun == c.criNone {
			t.Errorf("%v: run volume %q mounted at %q, args %q; want %q at %q, --cri.endpoint=none %v", c.set, hostPath, mountPath, args, c.hostPath, c.mountPath, c.criNone)
		}
	}
	if _, err := helmTemplate(t, helm, "runtime=docker"); err == nil || !strings.Contains(err.Error(), "/runtime") {
		t.Errorf("runtime=docker: %v", err)
	}
}

// TestHelmChartPlatforms: each platform's kubelet config file (and
// drop-in directory) is mounted where oomtrace reads it; kubeletConfig
// and kubeletConfigDir win over the preset.
func TestHelmChartPlatforms(t *testing.T) {
	helm := helmBinary(t)
	for _, c := range []struct {
		set         []string
		config, dir string
	}{
		{nil, "/var/lib/kubelet/config.yaml", ""},
		{[]string{"platform=eks"}, "/etc/kubernetes/kubelet/config.json", "/etc/kubernetes/kubelet/config.json.d"},
		{[]string{"platform=eks-al2"}, "/etc/kubernetes/kubelet/kubelet-config.json", ""},
		{[]string{"platform=gke"}, "/home/kubernetes/kubelet-config.yaml", ""},
		{[]string{"platform=aks"}, "/etc/default/kubeletconfig.json", ""},
		{[]string{"platform=gke", "kubeletConfig=/etc/k.yaml", "kubeletConfigDir=/etc/k.d"}, "/etc/k.yaml", "/etc/k.d"},
	} {
		objs, err := helmTemplate(t, helm, c.set...)
		if err != nil {
			t.Fatal(err)
		}
		hostPaths, mounts, args := agentPod(t, objs)
		if hostPaths["kubelet-config"] != c.config || mounts["kubelet-config"] != "/host"+c.config || !slices.Contains(args, "--kubelet.config=/host"+c.config) {
			t.Errorf("%v: kubelet config %q at %q, args %q; want %s", c.set, hostPaths["kubelet-config"], mounts["kubelet-config"], args, c.config)
		}
		hasDir := slices.Contains(args, "--kubelet.config-dir=/host"+c.dir)
		if c.dir == "" && (hostPaths["kubelet-config-dir"] != "" || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--kubelet.config-dir") })) ||
			c.dir != "" && (hostPaths["kubelet-config-dir"] != c.dir || mounts["kubelet-config-dir"] != "/host"+c.dir || !hasDir) {
			t.Errorf("%v: drop-ins %q at %q, args %q; want %q", c.set, hostPaths["kubelet-config-dir"], mounts["kubelet-config-dir"], args, c.dir)
		}
	}
	if _, err := helmTemplate(t, helm, "platform=openshift"); err == nil || !strings.Contains(err.Error(), "/platform") {
		t.Errorf("platform=openshift: %v", err)
	}
}

// TestHelmChartWebConfig: webConfig.secretName mounts the Secret and
// passes --web.config.file; the PodMonitor's scrape takes the scheme, TLS
// and credentials given.
func TestHelmChartWebConfig(t *testing.T) {
	helm := helmBinary(t)
	objs, err := helmTemplate(t, helm, "webConfig.secretName=oomtrace-web", "podMonitor.enabled=true", "podMonitor.scheme=https",
		"podMonitor.tlsConfig.ca.secret.name=oomtrace-web", "podMonitor.tlsConfig.ca.secret.key=ca.crt",
		"podMonitor.basicAuth.username.name=scrape", "podMonitor.basicAuth.username.key=user")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, o := range objs {
		j, _ := json.Marshal(o)
		switch o["kind"] {
		case "DaemonSet":
			found++
			for _, want := range []string{`"--web.config.file=/etc/oomtrace/web/web-config.yml"`, `{"mountPath":"/etc/oomtrace/web","name":"web-config","readOnly":true}`,
				`{"name":"web-config","secret":{"secretName":"oomtrace-web"}}`} {
				if !strings.Contains(string(j), want) {
					t.Errorf("DaemonSet has no %s", want)
				}
			}
		case "PodMonitor":
			found++
			for _, want := range []string{`"scheme":"https"`, `"tlsConfig":{"ca":{"secret":{"key":"ca.crt","name":"oomtrace-web"}}}`, `"basicAuth":{"username":{"key":"user","name":"scrape"}}`} {
				if !strings.Contains(string(j), want) {
					t.Errorf("PodMonitor has no %s: %s", want, j)
				}
			}
		}
	}
	if found != 2 {
		t.Errorf("%d of the DaemonSet and the PodMonitor rendered", found)
	}
	// Without it: plain HTTP, no mount.
	objs, err = helmTemplate(t, helm, "podMonitor.enabled=true")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if j, _ := json.Marshal(o); strings.Contains(string(j), "web-config") || strings.Contains(string(j), `"scheme"`) {
			t.Errorf("%s without webConfig: %s", o["kind"], j)
		}
	}
}

// agentPod is what the rendered DaemonSet's pod takes from the host: its
// hostPath volumes' paths and its container's mounts, by volume name, and
// the container's args.
func agentPod(t *testing.T, objs []map[string]any) (hostPaths, mounts map[string]string, args []string) {
	t.Helper()
	var spec map[string]any
	for _, o := range objs {
		if o["kind"] == "DaemonSet" {
			spec = o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
		}
	}
	if spec == nil {
		t.Fatal("no DaemonSet rendered")
	}
	ctr := spec["containers"].([]any)[0].(map[string]any)
	hostPaths, mounts = map[string]string{}, map[string]string{}
	for _, v := range spec["volumes"].([]any) {
		v := v.(map[string]any)
		if hp, ok := v["hostPath"].(map[string]any); ok {
			hostPaths[v["name"].(string)] = hp["path"].(string)
		}
	}
	for _, m := range ctr["volumeMounts"].([]any) {
		m := m.(map[string]any)
		mounts[m["name"].(string)] = m["mountPath"].(string)
	}
	for _, a := range ctr["args"].([]any) {
		args = append(args, a.(string))
	}
	return hostPaths, mounts, args
}
