// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// podMonitor is the part of monitoring.coreos.com/v1 PodMonitor we write,
// decoded strictly like the rest: a misspelt field fails.
type podMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			HonorLabels bool `json:"honorLabels"`
			Relabelings []struct {
				Action string `json:"action"`
				Regex  string `json:"regex"`
			} `json:"relabelings"`
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type kustomization struct {
	APIVersion         string   `json:"apiVersion"`
	Kind               string   `json:"kind"`
	Namespace          string   `json:"namespace,omitempty"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name    string   `json:"name"`
		Files   []string `json:"files"`
		Options struct {
			DisableNameSuffixHash bool              `json:"disableNameSuffixHash"`
			Labels                map[string]string `json:"labels"`
		} `json:"options"`
	} `json:"configMapGenerator,omitempty"`
	Patches []struct {
		Path string `json:"path"`
	} `json:"patches"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// decodeFile splits a YAML file into documents and decodes each strictly
// into the type its kind names.
func decodeFile(t *testing.T, path string) []any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var objs []any
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var obj any
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/Namespace":
			obj = &corev1.Namespace{}
		case "v1/ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "v1/Service":
			obj = &corev1.Service{}
		case "apps/v1/DaemonSet":
			obj = &appsv1.DaemonSet{}
		case "rbac.authorization.k8s.io/v1/ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case "rbac.authorization.k8s.io/v1/Role":
			obj = &rbacv1.Role{}
		case "rbac.authorization.k8s.io/v1/RoleBinding":
			obj = &rbacv1.RoleBinding{}
		case "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy":
			obj = &admissionv1.ValidatingAdmissionPolicy{}
		case "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding":
			obj = &admissionv1.ValidatingAdmissionPolicyBinding{}
		case "monitoring.coreos.com/v1/PodMonitor":
			obj = &podMonitor{}
		case "monitoring.coreos.com/v1/PrometheusRule":
			obj = &prometheusRule{}
		case "kustomize.config.k8s.io/v1beta1/Kustomization":
			obj = &kustomization{}
		default:
			t.Fatalf("%s: unexpected kind %s/%s", path, tm.APIVersion, tm.Kind)
		}
		if err := strictDecode(doc, obj); err != nil {
			t.Fatalf("%s: %s: %v", path, tm.Kind, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

// strictDecode decodes YAML the way the API server does in strict mode:
// unknown fields, duplicate fields and fields of the wrong case all fail
// (encoding/json alone would accept hostPid for hostPID).
func strictDecode(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, obj)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func all(t *testing.T) map[string][]any {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("*/*.yaml")
	out := map[string][]any{}
	for _, f := range append(files, more...) {
		out[f] = decodeFile(t, f)
	}
	return out
}

func only[T any](t *testing.T, objs []any) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("want one %T, found %d", zero, len(found))
	}
	return found[0]
}

func TestEveryManifestDecodesStrictly(t *testing.T) {
	m := all(t)
	if len(m) < 9 {
		t.Fatalf("only %d manifest files found", len(m))
	}
	// Every file the base names exists and decodes; every manifest of the
	// base is in it.
	k := only[*kustomization](t, m["base/kustomization.yaml"])
	for _, r := range k.Resources {
		if _, ok := m["base/"+r]; !ok {
			t.Errorf("base/kustomization.yaml names %s, which is not a manifest there", r)
		}
	}
	for f := range m {
		if dir, name, _ := strings.Cut(f, "/"); dir == "base" && name != "kustomization.yaml" && !slices.Contains(k.Resources, name) {
			t.Errorf("%s is not in base/kustomization.yaml", f)
		}
	}
	// Both variants take the base; neither can take deploy/ itself (a
	// base containing its overlay is a kustomize error).
	if kd := only[*kustomization](t, m["kustomization.yaml"]); len(kd.Resources) != 1 || kd.Resources[0] != "base" {
		t.Errorf("deploy/kustomization.yaml: %+v", kd)
	}
	kc := only[*kustomization](t, m["capabilities/kustomization.yaml"])
	if len(kc.Resources) != 1 || kc.Resources[0] != "../base" || len(kc.Patches) != 1 {
		t.Errorf("capabilities overlay: %+v", kc)
	}
	if _, ok := m[filepath.Join("capabilities", kc.Patches[0].Path)]; !ok {
		t.Errorf("capabilities overlay patch %s missing", kc.Patches[0].Path)
	}
	// The image users set is the one the DaemonSet names.
	ds := only[*appsv1.DaemonSet](t, m["base/daemonset.yaml"])
	if image, _, _ := strings.Cut(ds.Spec.Template.Spec.Containers[0].Image, ":"); len(k.Images) != 1 || k.Images[0].Name != image {
		t.Errorf("kustomization images %+v do not name the DaemonSet's image %s", k.Images, ds.Spec.Template.Spec.Containers[0].Image)
	}
}

// TestKustomizeBuilds renders both variants as kubectl apply -k does: the
// capabilities variant once named deploy/ as its base, which kustomize
// refuses.
func TestKustomizeBuilds(t *testing.T) {
	for _, dir := range []string{".", "capabilities"} {
		res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
		if err != nil {
			t.Errorf("kustomize build %s: %v", dir, err)
			continue
		}
		kinds := map[string]int{}
		for _, r := range res.Resources() {
			kinds[r.GetKind()]++
			if r.GetKind() != "DaemonSet" {
				continue
			}
			privileged, _, _ := unstructuredBool(r.Map, "spec", "template", "spec", "containers", "0", "securityContext", "privileged")
			if privileged != (dir == ".") {
				t.Errorf("%s: DaemonSet privileged=%v", dir, privileged)
			}
		}
		if kinds["DaemonSet"] != 1 || kinds["ClusterRole"] != 1 || kinds["ClusterRoleBinding"] != 1 || kinds["Role"] != 1 || kinds["RoleBinding"] != 1 || kinds["ServiceAccount"] != 1 || kinds["Namespace"] != 1 {
			t.Errorf("%s: kinds %v", dir, kinds)
		}
	}
}

// unstructuredBool reads a bool along a path of map keys and list indexes.
func unstructuredBool(m func() (map[string]any, error), path ...string) (bool, bool, error) {
	obj, err := m()
	if err != nil {
		return false, false, err
	}
	var cur any = obj
	for _, p := range path {
		switch v := cur.(type) {
		case map[string]any:
			cur = v[p]
		case []any:
			i := 0
			fmt.Sscanf(p, "%d", &i)
			if i >= len(v) {
				return false, false, nil
			}
			cur = v[i]
		default:
			return false, false, nil
		}
	}
	b, ok := cur.(bool)
	return b, ok, nil
}

func TestDaemonSetInvariants(t *testing.T) {
	ds := only[*appsv1.DaemonSet](t, all(t)["base/daemonset.yaml"])
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("hostPID must be true: victims are looked up in the host's /proc")
	}
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Error("hostNetwork with ClusterFirstWithHostNet: a node agent must not depend on the pod network")
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName = %q", spec.PriorityClassName)
	}
	if spec.ServiceAccountName != "oomtrace" {
		t.Errorf("serviceAccountName = %q", spec.ServiceAccountName)
	}
	tolerateAll := false
	for _, tol := range spec.Tolerations {
		if tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == "" {
			tolerateAll = true
		}
	}
	if !tolerateAll {
		t.Error("must tolerate every taint, node.kubernetes.io/memory-pressure included")
	}
	// Tolerating every taint, it would land on Windows and virtual nodes.
	if spec.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Errorf("nodeSelector %v: want kubernetes.io/os=linux", spec.NodeSelector)
	}
	if got := ds.Spec.Selector.MatchLabels; got["app.kubernetes.io/name"] != ds.Spec.Template.Labels["app.kubernetes.io/name"] {
		t.Errorf("selector %v does not match the template's labels", got)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Error("the default variant runs privileged")
	}
	nodeName := false
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeName = true
		}
	}
	if !nodeName {
		t.Error("NODE_NAME must come from the downward API (spec.nodeName)")
	}
	volumes := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("volume %s is not a hostPath", v.Name)
			continue
		}
		volumes[v.Name] = v.HostPath.Path
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[volumes[vm.Name]] = vm
	}
	for _, host := range []string{"/sys/kernel/btf", "/sys/fs/cgroup", "/proc", "/var/lib/kubelet/config.yaml", "/sys/kernel/tracing", "/run/containerd"} {
		vm, ok := mounts[host]
		if !ok || !vm.ReadOnly {
			t.Errorf("host %s must be mounted read-only (%+v)", host, vm)
		}
	}
	// Least privilege: no writable mount but the pin directory, and not
	// the whole of the host's /run or BPF filesystem.
	for host, vm := range mounts {
		if !vm.ReadOnly && host != "/sys/fs/bpf/oomtrace" {
			t.Errorf("host %s is mounted writable", host)
		}
		if host == "/run" || host == "/sys/fs/bpf" {
			t.Errorf("the whole of the host's %s is mounted", host)
		}
	}
	// The CRI socket is found where --path.run says.
	if vm := mounts["/run/containerd"]; !slices.Contains(c.Args, "--path.run="+strings.TrimSuffix(vm.MountPath, "/containerd")) {
		t.Errorf("--path.run must name the directory the host's /run/containerd is mounted in (%s)", vm.MountPath)
	}
	// Pinned hooks survive a restart only in the host's bpffs, writable:
	// its own directory, mounted where --pin.path says.
	if vm, ok := mounts["/sys/fs/bpf/oomtrace"]; !ok || vm.ReadOnly || !slices.Contains(c.Args, "--pin.path="+vm.MountPath) || slices.Contains(c.Args, "--no-pin") {
		t.Errorf("the host's /sys/fs/bpf/oomtrace must be mounted writable where --pin.path names (%+v)", vm)
	}
	if mounts["/proc"].MountPath != "/host/proc" || !slices.Contains(c.Args, "--path.procfs=/host/proc") {
		t.Error("the host's /proc goes to /host/proc and --path.procfs points there")
	}
	if !slices.Contains(c.Args, "--kubelet.config="+mounts["/var/lib/kubelet/config.yaml"].MountPath) {
		t.Errorf("--kubelet.config must name where the kubelet's config is mounted (%s)", mounts["/var/lib/kubelet/config.yaml"].MountPath)
	}
	port := -1
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			port = int(p.ContainerPort)
		}
	}
	if port != 9808 || !slices.Contains(c.Args, "--web.listen-address=:9808") {
		t.Errorf("metrics port %d and args %v disagree", port, c.Args)
	}
	// Every pod reaches the metrics port on the node's address; the
	// probes go where none does, so that no pod can fail them.
	for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Host != "127.0.0.1" ||
			!slices.Contains(c.Args, "--web.probe-address=127.0.0.1:"+probe.HTTPGet.Port.String()) || probe.HTTPGet.Port.String() == "9808" {
			t.Errorf("probe %+v must use --web.probe-address on 127.0.0.1, not the metrics port", probe)
		}
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("readiness is /readyz, liveness /healthz")
	}
}

func TestCapabilitiesVariant(t *testing.T) {
	ds := only[*appsv1.DaemonSet](t, all(t)["capabilities/securitycontext.yaml"])
	sc := ds.Spec.Template.Spec.Containers[0].SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged {
		t.Fatal("the capabilities variant is not privileged")
	}
	if sc.Capabilities == nil {
		t.Fatal("no capabilities")
	}
	var add []string
	for _, c := range sc.Capabilities.Add {
		add = append(add, string(c))
	}
	slices.Sort(add)
	if want := []string{"BPF", "PERFMON"}; !slices.Equal(add, want) {
		t.Errorf("capabilities %v, want exactly %v", add, want)
	}
	if len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("drop %v, want ALL", sc.Capabilities.Drop)
	}
	if ds.Name != "oomtrace" || ds.Namespace != "oomtrace" || ds.Spec.Template.Spec.Containers[0].Name != "oomtrace" {
		t.Error("the patch must name the DaemonSet and container it patches")
	}
}

// TestRBACIsNarrow: list and watch on pods and nodes; no Event read
// (tenants write them, and each watch of them costs the API server every
// Event of the namespace); the only write is
// creating events.k8s.io Events. No get, no patch: nothing uses them. (The
// cluster suite runs the agent with exactly this RBAC against a real API
// server with RBAC authorization.)
func TestRBACIsNarrow(t *testing.T) {
	objs := all(t)["base/rbac.yaml"]
	checkRules := func(what string, rules []rbacv1.PolicyRule, want []struct{ groups, resources, verbs, names []string }) {
		if len(rules) != len(want) {
			t.Fatalf("%s: %d rules, want %d", what, len(rules), len(want))
		}
		for i, r := range rules {
			res, verbs := slices.Clone(r.Resources), slices.Clone(r.Verbs)
			slices.Sort(res)
			slices.Sort(verbs)
			if !slices.Equal(r.APIGroups, want[i].groups) || !slices.Equal(res, want[i].resources) || !slices.Equal(verbs, want[i].verbs) ||
				!slices.Equal(r.ResourceNames, want[i].names) || len(r.NonResourceURLs) > 0 {
				t.Errorf("%s rule %d %+v: want %v on %v %v of %q only", what, i, r, want[i].verbs, want[i].resources, want[i].names, want[i].groups)
			}
		}
	}
	sa := only[*corev1.ServiceAccount](t, all(t)["base/serviceaccount.yaml"])
	role := only[*rbacv1.ClusterRole](t, objs)
	checkRules("ClusterRole", role.Rules, []struct{ groups, resources, verbs, names []string }{
		{[]string{""}, []string{"nodes", "pods"}, []string{"list", "watch"}, nil},
		{[]string{"events.k8s.io"}, []string{"events"}, []string{"create", "patch"}, nil},
		// Its own Namespace only: being deleted, it is an uninstall.
		{[]string{""}, []string{"namespaces"}, []string{"get"}, []string{sa.Namespace}},
	})
	b := only[*rbacv1.ClusterRoleBinding](t, objs)
	if b.RoleRef.Name != role.Name || len(b.Subjects) != 1 || b.Subjects[0].Name != sa.Name || b.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("binding %+v does not bind %s to %s/%s", b, role.Name, sa.Namespace, sa.Name)
	}
	// In its own namespace: its own pod and its DaemonSet, to tell an
	// uninstall from a restart.
	r := only[*rbacv1.Role](t, objs)
	checkRules("Role", r.Rules, []struct{ groups, resources, verbs, names []string }{
		{[]string{""}, []string{"pods"}, []string{"get"}, nil},
		{[]string{"apps"}, []string{"daemonsets"}, []string{"get"}, nil},
	})
	rb := only[*rbacv1.RoleBinding](t, objs)
	if r.Namespace != sa.Namespace || rb.Namespace != sa.Namespace || rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != r.Name ||
		len(rb.Subjects) != 1 || rb.Subjects[0].Name != sa.Name || rb.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("Role %s/%s and binding %+v: want them in %s, binding its ServiceAccount", r.Namespace, r.Name, rb, sa.Namespace)
	}
	if n := len(objs); n != 4 {
		t.Errorf("%d RBAC objects, want the ClusterRole, the Role and their bindings only (no Event is read)", n)
	}
}

func TestScrapeTargets(t *testing.T) {
	m := all(t)
	svc := only[*corev1.Service](t, m["base/service.yaml"])
	pm := only[*podMonitor](t, m["podmonitor.yaml"])
	ds := only[*appsv1.DaemonSet](t, m["base/daemonset.yaml"])
	labels := ds.Spec.Template.Labels
	for k, v := range svc.Spec.Selector {
		if labels[k] != v {
			t.Errorf("service selector %s=%s does not select the pods", k, v)
		}
	}
	for k, v := range pm.Spec.Selector.MatchLabels {
		if labels[k] != v {
			t.Errorf("PodMonitor selector %s=%s does not select the pods", k, v)
		}
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
		t.Errorf("service ports %+v", svc.Spec.Ports)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 || pm.Spec.PodMetricsEndpoints[0].Port != "metrics" || pm.Spec.PodMetricsEndpoints[0].Path != "/metrics" {
		t.Errorf("PodMonitor endpoints %+v", pm.Spec.PodMetricsEndpoints)
	}
	// The series' namespace, pod and container are the victim's: without
	// honorLabels the Operator's target labels (oomtrace's own pod) win.
	// And a series without them (a host process's kill) gets none of the
	// target's (the cluster suite's prometheus_alerts shows both).
	for _, e := range pm.Spec.PodMetricsEndpoints {
		if !e.HonorLabels {
			t.Errorf("PodMonitor endpoint %+v: honorLabels must be true", e)
		}
		if len(e.Relabelings) != 1 || e.Relabelings[0].Action != "labeldrop" || e.Relabelings[0].Regex != "(namespace|pod|container)" {
			t.Errorf("PodMonitor endpoint %+v: want the target's namespace, pod and container dropped", e)
		}
	}
	for f, objs := range m {
		for _, o := range objs {
			if om, ok := o.(metav1.Object); ok {
				if _, cluster := o.(*rbacv1.ClusterRole); cluster {
					continue
				}
				if _, cluster := o.(*rbacv1.ClusterRoleBinding); cluster {
					continue
				}
				if _, ns := o.(*corev1.Namespace); ns {
					continue
				}
				switch o.(type) {
				case *admissionv1.ValidatingAdmissionPolicy, *admissionv1.ValidatingAdmissionPolicyBinding:
					continue // cluster-scoped
				}
				if om.GetNamespace() != "oomtrace" {
					t.Errorf("%s: %s in namespace %q", f, om.GetName(), om.GetNamespace())
				}
			}
		}
	}
}

// TestReleasePublishesTheImageDeployNames: the release workflow pushes the
// image the kustomization names, for the architectures whose BPF objects
// are committed.
func TestReleasePublishesTheImageDeployNames(t *testing.T) {
	wf, err := os.ReadFile("../.github/workflows/release.yml")
	if err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile("base/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(k), "name: ghcr.io/oomtrace/oomtrace") ||
		!strings.Contains(string(wf), "ghcr.io/${{ github.repository_owner }}/oomtrace:${{ github.ref_name }}") {
		t.Error("deploy/base names an image the release workflow does not push")
	}
	// A version, never a tag that moves; the workflow refuses to release
	// another.
	if tag := regexp.MustCompile(`(?m)^    newTag: (\S+)$`).FindStringSubmatch(string(k)); tag == nil || !regexp.MustCompile(`^v\d+\.\d+\.\d+$`).MatchString(tag[1]) ||
		strings.Contains(string(wf), "oomtrace:latest") || !strings.Contains(string(wf), `grep -qx "    newTag: ${GITHUB_REF_NAME}" deploy/base/kustomization.yaml`) {
		t.Errorf("deploy/base must name a release's version (%v), the only one the workflow publishes", tag)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		bpf := map[string]string{"amd64": "x86", "arm64": "arm64"}[arch]
		if _, err := os.Stat("../tracer/oomtrace_" + bpf + "_bpfel.o"); err != nil || !strings.Contains(string(wf), "linux/"+arch) {
			t.Errorf("%s: BPF object %v, in the workflow's platforms: %v", arch, err, strings.Contains(string(wf), "linux/"+arch))
		}
	}
}

// TestReleaseActionsPinned: every action the release workflow runs is
// pinned by commit (a tag can be moved to other code), and the image it
// pushes is signed by digest.
func TestReleaseActionsPinned(t *testing.T) {
	wf, err := os.ReadFile("../.github/workflows/release.yml")
	if err != nil {
		t.Fatal(err)
	}
	pinned := regexp.MustCompile(`^[\w.-]+/[\w.-]+@[0-9a-f]{40} # v[0-9.]+$`)
	uses := 0
	for _, line := range strings.Split(string(wf), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- "))
		ref, ok := strings.CutPrefix(line, "uses: ")
		if !ok {
			continue
		}
		uses++
		if !pinned.MatchString(ref) {
			t.Errorf("%q: not pinned by commit (owner/repo@<40 hex> # vX.Y.Z)", ref)
		}
	}
	if uses == 0 {
		t.Error("no action found")
	}
	if !strings.Contains(string(wf), `cosign sign --yes "ghcr.io/${{ github.repository_owner }}/oomtrace@${DIGEST}"`) ||
		!strings.Contains(string(wf), "DIGEST: ${{ steps.image.outputs.digest }}") || !strings.Contains(string(wf), "id-token: write") {
		t.Error("the pushed image is not signed by its digest")
	}
}

// TestReleaseLeastPrivilege: the release workflow reads the repository
// only, but in the job that publishes and the one that attaches the
// manifests; those run no build of the repository's code (the image is made FROM scratch of the checksummed
// release binaries: no builder image), and the image carries its SBOM
// and provenance.
func TestReleaseLeastPrivilege(t *testing.T) {
	data, err := os.ReadFile("../.github/workflows/release.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Permissions map[string]string `json:"permissions"`
		Jobs        map[string]struct {
			Permissions map[string]string `json:"permissions"`
			Steps       []struct {
				Run  string            `json:"run"`
				Uses string            `json:"uses"`
				With map[string]string `json:"with"`
			} `json:"steps"`
		} `json:"jobs"`
	}
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatal(err)
	}
	if len(wf.Permissions) != 1 || wf.Permissions["contents"] != "read" {
		t.Errorf("workflow permissions %v, want contents: read only", wf.Permissions)
	}
	writers := 0
	for name, job := range wf.Jobs {
		write := false
		for _, v := range job.Permissions {
			write = write || v == "write"
		}
		if !write {
			continue
		}
		writers++
		for _, s := range job.Steps {
			if strings.Contains(s.Run, "make ") || strings.Contains(s.Run, "go ") {
				t.Errorf("job %s, which may write, runs %q", name, s.Run)
			}
			if strings.HasPrefix(s.Uses, "docker/build-push-action@") {
				if s.With["sbom"] != "true" || !strings.HasPrefix(s.With["provenance"], "mode=max") || !strings.Contains(s.With["build-args"], "BINARY=release") {
					t.Errorf("image step %v: want sbom, provenance and the release binaries", s.With)
				}
			}
		}
	}
	if writers != 2 {
		t.Errorf("%d jobs may write, want the publishing one and the one that attaches the manifests", writers)
	}
	// The release's manifests and chart name the image by the digest the
	// publishing job pushed.
	pinned := false
	for _, s := range wf.Jobs["manifests"].Steps {
		pinned = pinned || strings.Contains(s.Run, `go run ./deploy/pin -digest "$DIGEST"`)
	}
	if !pinned || !strings.Contains(string(data), "DIGEST: ${{ needs.publish.outputs.digest }}") {
		t.Error("no job renders the release's manifests by the pushed image's digest")
	}
	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(df), "FROM scratch AS release\n") || !strings.Contains(string(df), "ADD bin/release/oomtrace-${VERSION}-linux-${TARGETARCH}.tar.gz /") {
		t.Error("the Dockerfile has no stage of the release binaries")
	}
}

// TestAdmissionPolicyNamesTheAgent: the base's admission policy applies to
// the agent's ServiceAccount, and its binding denies what it refuses.
func TestAdmissionPolicyNamesTheAgent(t *testing.T) {
	objs := decodeFile(t, "base/admission.yaml")
	policy := only[*admissionv1.ValidatingAdmissionPolicy](t, objs)
	binding := only[*admissionv1.ValidatingAdmissionPolicyBinding](t, objs)
	sa := only[*corev1.ServiceAccount](t, decodeFile(t, "base/serviceaccount.yaml"))
	user := "system:serviceaccount:" + sa.Namespace + ":" + sa.Name
	if len(policy.Spec.MatchConditions) != 1 || !strings.Contains(policy.Spec.MatchConditions[0].Expression, `"`+user+`"`) {
		t.Errorf("the policy's match conditions %+v do not name %s", policy.Spec.MatchConditions, user)
	}
	if binding.Spec.PolicyName != policy.Name || !slices.Contains(binding.Spec.ValidationActions, admissionv1.Deny) {
		t.Errorf("binding %+v: want policy %s, Deny", binding.Spec, policy.Name)
	}
	if policy.Spec.FailurePolicy == nil || *policy.Spec.FailurePolicy != admissionv1.Fail {
		t.Error("the policy does not fail closed")
	}
}
