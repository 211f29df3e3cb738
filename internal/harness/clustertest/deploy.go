// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"

	"github.com/oomtrace/oomtrace/event"
)

// deployedImage is the image deploy/kustomization.yaml names.
const deployedImage = "ghcr.io/oomtrace/oomtrace"

// Oomtrace is oomtrace running in the cluster as its DaemonSet's pod.
type Oomtrace struct {
	c *Cluster
	// Pod is the DaemonSet's pod on the node.
	Pod *corev1.Pod
	// helm is the helm binary that installed it; empty for kustomize.
	helm string
}

// Deploy applies the kustomization at dir (deploy/ or an overlay of it) as
// kubectl apply -k does, with two changes a user of this cluster would
// make: the image (built by make image, imported into the node's
// containerd) and the node's paths that are not the usual ones here (the
// kubelet's config, the runtime's /run, the BPF filesystem). It waits for the DaemonSet's pod
// to be Ready.
func (c *Cluster) Deploy(t *testing.T, dir, image string) *Oomtrace {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	name, tag := image, "latest"
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		name, tag = image[:i], image[i+1:]
	}
	overlay := t.TempDir()
	// kustomize takes a base by a path relative to the overlay only.
	base, err := filepath.Rel(overlay, abs)
	if err != nil {
		t.Fatal(err)
	}
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
images:
  - name: %s
    newName: %s
    newTag: %q
patches:
  - patch: |
      apiVersion: apps/v1
      kind: DaemonSet
      metadata: {name: oomtrace, namespace: oomtrace}
      spec:
        template:
          spec:
            volumes:
              - name: kubelet-config
                hostPath: {path: %s, type: File}
              - name: run
                hostPath: {path: %s, type: Directory}
              - name: bpffs
                hostPath: {path: %s, type: DirectoryOrCreate}
  # The kubelet's drop-in directory (--config-dir), as an operator whose
  # kubelet has one adds it.
  - target: {kind: DaemonSet, name: oomtrace}
    patch: |
      - op: add
        path: /spec/template/spec/volumes/-
        value: {name: kubelet-config-dir, hostPath: {path: %s, type: Directory}}
      - op: add
        path: /spec/template/spec/containers/0/volumeMounts/-
        value: {name: kubelet-config-dir, mountPath: /host/var/lib/kubelet/config.d, readOnly: true}
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --kubelet.config-dir=/host/var/lib/kubelet/config.d
`, base, deployedImage, name, tag, filepath.Join(c.KubeletDir, "config.yaml"), filepath.Join(c.Runtime.RunDir, "containerd"), filepath.Join(c.BPFFS, "oomtrace"),
		c.KubeletConfigDir())
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = 0 // LoadRestrictionsNone: the base is outside the overlay
	c.Apply(t, kustomize(t, overlay, opts)...)
	o := &Oomtrace{c: c}
	o.waitReady(t, "")
	return o
}

// Restarts is how many times the kubelet restarted oomtrace's container
// in its current pod (a failed liveness probe, a crash, its own OOM kill).
func (o *Oomtrace) Restarts(t *testing.T) int32 {
	t.Helper()
	p, err := o.c.Client.CoreV1().Pods(o.Pod.Namespace).Get(context.Background(), o.Pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("oomtrace's pod: %v", err)
	}
	var n int32
	for _, cs := range p.Status.ContainerStatuses {
		n += cs.RestartCount
		if cs.LastTerminationState.Terminated != nil {
			last := cs.LastTerminationState.Terminated
			t.Logf("oomtrace's container last ended: %s, exit %d at %s", last.Reason, last.ExitCode, last.FinishedAt)
		}
	}
	return n
}

// Restart deletes the DaemonSet's pod, as a node reboot or a kubectl
// delete would, and waits for its replacement to be Ready: it reads the
// kubelet's configuration again.
func (o *Oomtrace) Restart(t *testing.T) {
	t.Helper()
	old := o.Pod.Name
	if err := o.c.Client.CoreV1().Pods("oomtrace").Delete(context.Background(), old, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete %s: %v", old, err)
	}
	o.waitReady(t, old)
}

// waitReady waits for a Ready pod of the DaemonSet other than not.
func (o *Oomtrace) waitReady(t *testing.T, not string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(Patience(3 * time.Minute))
	var last *corev1.Pod
	for {
		pods, err := o.c.Client.CoreV1().Pods("oomtrace").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=oomtrace"})
		if err == nil {
			for i := range pods.Items {
				p := &pods.Items[i]
				if p.Name == not || p.DeletionTimestamp != nil {
					continue
				}
				last = p
				if p.Spec.NodeName == NodeName && podReady(p) {
					o.Pod = p
					return
				}
			}
		}
		if time.Now().After(deadline) {
			if last == nil {
				t.Fatalf("no pod of oomtrace's DaemonSet on the node (%v)\ncontroller-manager:\n%s", err, tail(o.c.Log("kube-controller-manager"), 20))
			}
			t.Fatalf("oomtrace's pod %s not Ready: phase %s, conditions %+v, containers %+v\nlogs:\n%s\nkubelet on it:\n%s",
				last.Name, last.Status.Phase, last.Status.Conditions, last.Status.ContainerStatuses,
				tail(o.logsOf(t, last.Name), 30), o.c.grepLog("kubelet", last.Name, 10))
		}
		time.Sleep(time.Second)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// Logs is the pod's log through the API server (kubectl logs): the events
// on stdout and the log lines on stderr.
func (o *Oomtrace) Logs(t *testing.T) string {
	t.Helper()
	return o.logsOf(t, o.Pod.Name)
}

func (o *Oomtrace) logsOf(t *testing.T, pod string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := o.c.Client.CoreV1().Pods("oomtrace").GetLogs(pod, &corev1.PodLogOptions{Container: "oomtrace"}).Stream(ctx)
	if err != nil {
		return fmt.Sprintf("(logs of %s: %v)", pod, err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

// Events are the events in the pod's log so far, by type.
type Events struct {
	Kills     []event.OOMKill
	Evictions []event.Eviction
	Pressure  []event.MemoryPressure
	Nodes     []event.NodeCondition
	UserKills []event.UserspaceKill
	// Warnings are the cgroup_memory_pressure lines.
	Warnings []event.CgroupPressure
	Lines    []string // every JSON line, as written
}

// Events parses the JSON lines of the pod's log.
func (o *Oomtrace) Events(t *testing.T) Events {
	t.Helper()
	var ev Events
	sc := bufio.NewScanner(strings.NewReader(o.Logs(t)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(`{"type":`)) {
			continue
		}
		ev.Lines = append(ev.Lines, string(line))
		var head struct{ Type string }
		if err := json.Unmarshal(line, &head); err != nil {
			t.Fatalf("bad JSON line %s: %v", line, err)
		}
		var err error
		switch head.Type {
		case event.TypeOOMKill:
			ev.Kills, err = appendDecoded(ev.Kills, line)
		case event.TypeEviction:
			ev.Evictions, err = appendDecoded(ev.Evictions, line)
		case event.TypeMemoryPressure:
			ev.Pressure, err = appendDecoded(ev.Pressure, line)
		case event.TypeNodeCondition:
			ev.Nodes, err = appendDecoded(ev.Nodes, line)
		case event.TypeUserspaceKill:
			ev.UserKills, err = appendDecoded(ev.UserKills, line)
		case event.TypeCgroupPressure:
			ev.Warnings, err = appendDecoded(ev.Warnings, line)
		}
		if err != nil {
			t.Fatalf("line %s: %v", line, err)
		}
	}
	return ev
}

// Since keeps the kills, evictions, pressure crossings, node conditions
// and user-space kills from from on, so that a scenario's checks read its own
// events, not what an earlier scenario left in the log. The API's times
// (a condition's lastTransitionTime, an eviction's) have whole seconds:
// from is cut to its second. Lines are kept whole.
func (ev Events) Since(from time.Time) Events {
	from = from.Truncate(time.Second)
	return Events{
		Kills:     since(ev.Kills, from, func(k event.OOMKill) event.Time { return k.Time }),
		Evictions: since(ev.Evictions, from, func(e event.Eviction) event.Time { return e.Time }),
		Pressure:  since(ev.Pressure, from, func(p event.MemoryPressure) event.Time { return p.Time }),
		Nodes:     since(ev.Nodes, from, func(n event.NodeCondition) event.Time { return n.Time }),
		UserKills: since(ev.UserKills, from, func(k event.UserspaceKill) event.Time { return k.Time }),
		Warnings:  since(ev.Warnings, from, func(w event.CgroupPressure) event.Time { return w.Time }),
		Lines:     ev.Lines,
	}
}

// since keeps the events of xs at or after from.
func since[T any](xs []T, from time.Time, at func(T) event.Time) []T {
	var out []T
	for _, x := range xs {
		if !at(x).Before(from) {
			out = append(out, x)
		}
	}
	return out
}

func appendDecoded[T any](to []T, line []byte) ([]T, error) {
	var v T
	err := json.Unmarshal(line, &v)
	return append(to, v), err
}

// WaitEvents polls the pod's log until done says the events are there.
func (o *Oomtrace) WaitEvents(t *testing.T, what string, timeout time.Duration, done func(Events) bool) Events {
	t.Helper()
	timeout = Patience(timeout)
	deadline := time.Now().Add(timeout)
	for {
		ev := o.Events(t)
		if done(ev) {
			return ev
		}
		if time.Now().After(deadline) {
			t.Fatalf("oomtrace did not report %s in %v; its log but commit refusals:\n%s", what, timeout, tail(withoutRefusals(o.Logs(t)), 60))
		}
		time.Sleep(time.Second)
	}
}

// Metrics scrapes the pod's /metrics on the node's address (hostNetwork).
func (o *Oomtrace) Metrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + NodeIP + ":9808/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// Value is the value of the series of fam with these labels (a subset),
// and whether there is one.
func Value(fams map[string]*dto.MetricFamily, fam string, labels map[string]string) (float64, bool) {
	for _, m := range Series(fams, fam, labels) {
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// Series are the series of fam with these labels (a subset).
func Series(fams map[string]*dto.MetricFamily, fam string, labels map[string]string) []*dto.Metric {
	f, ok := fams[fam]
	if !ok {
		return nil
	}
	var out []*dto.Metric
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// RolloutRestart restarts the DaemonSet as kubectl rollout restart does
// (a new template annotation: the pod is replaced by the rolling update)
// and waits for the new pod to be Ready.
func (o *Oomtrace) RolloutRestart(t *testing.T) {
	t.Helper()
	old := o.Pod.Name
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339))
	if _, err := o.c.Client.AppsV1().DaemonSets("oomtrace").Patch(context.Background(), "oomtrace", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("rollout restart: %v", err)
	}
	o.waitReady(t, old)
}

// LogFollower is a pod's log streamed as kubectl logs -f does, until its
// container ends.
type LogFollower struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

// Follow streams the log of pod from its start.
func (o *Oomtrace) Follow(t *testing.T, pod string) *LogFollower {
	t.Helper()
	rc, err := o.c.Client.CoreV1().Pods("oomtrace").GetLogs(pod, &corev1.PodLogOptions{Container: "oomtrace", Follow: true}).Stream(context.Background())
	if err != nil {
		t.Fatalf("follow the log of %s: %v", pod, err)
	}
	f := &LogFollower{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer rc.Close()
		sc := bufio.NewScanner(rc)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			f.mu.Lock()
			f.lines = append(f.lines, sc.Text())
			f.mu.Unlock()
		}
	}()
	t.Cleanup(func() { rc.Close() })
	return f
}

// Lines is the log so far.
func (f *LogFollower) Lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

// Ended says whether the container's log ended within timeout.
func (f *LogFollower) Ended(timeout time.Duration) bool {
	select {
	case <-f.done:
		return true
	case <-time.After(Patience(timeout)):
		return false
	}
}

// withoutRefusals is a log without its commit_refusal lines, which a storm
// makes most of it, and how many there were.
func withoutRefusals(log string) string {
	var kept []string
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, `{"type":"commit_refusal"`) {
			n++
			continue
		}
		kept = append(kept, l)
	}
	return strings.Join(kept, "\n") + fmt.Sprintf("\n(and %d commit_refusal lines)", n)
}

// Apply applies objs as kubectl apply --server-side --force-conflicts
// does, in their order.
func (c *Cluster) Apply(t *testing.T, objs ...*unstructured.Unstructured) {
	t.Helper()
	clientOf := c.resourceClients(t)
	for _, obj := range objs {
		if _, err := clientOf(obj).Apply(context.Background(), obj.GetName(), obj, metav1.ApplyOptions{FieldManager: "oomtrace-test", Force: true}); err != nil {
			t.Fatalf("apply %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
}

// Delete deletes objs as kubectl delete does (background propagation),
// in their order; one already gone is no error.
func (c *Cluster) Delete(t *testing.T, objs ...*unstructured.Unstructured) {
	t.Helper()
	clientOf := c.resourceClients(t)
	background := metav1.DeletePropagationBackground
	for _, obj := range objs {
		err := clientOf(obj).Delete(context.Background(), obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &background})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("delete %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
}

// resourceClients returns the API's client of an object's resource (in
// its namespace, if it has one), as kubectl maps a kind to a resource
// through discovery.
func (c *Cluster) resourceClients(t *testing.T) func(*unstructured.Unstructured) dynamic.ResourceInterface {
	t.Helper()
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client.Discovery()))
	return func(obj *unstructured.Unstructured) dynamic.ResourceInterface {
		gvk := obj.GroupVersionKind()
		// The API server's discovery lags a CRD just established by a
		// moment: ask again, afresh, as kubectl would on a retry.
		deadline := time.Now().Add(Patience(10 * time.Second))
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			mapper.Reset()
			mapping, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		if ns := obj.GetNamespace(); ns != "" {
			return dyn.Resource(mapping.Resource).Namespace(ns)
		}
		return dyn.Resource(mapping.Resource)
	}
}

// EditArgs rolls the DaemonSet out with its container's arguments as edit
// makes them, and waits for the new pod to be Ready.
func (o *Oomtrace) EditArgs(t *testing.T, edit func([]string) []string) {
	t.Helper()
	ctx := context.Background()
	ds, err := o.c.Client.AppsV1().DaemonSets("oomtrace").Get(ctx, "oomtrace", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctr := &ds.Spec.Template.Spec.Containers[0]
	ctr.Args = edit(slices.Clone(ctr.Args))
	old := o.Pod.Name
	if _, err := o.c.Client.AppsV1().DaemonSets("oomtrace").Update(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update the DaemonSet's args: %v", err)
	}
	o.waitReady(t, old)
}
