// SPDX-License-Identifier: Apache-2.0

package clusterview

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	k8stesting "k8s.io/client-go/testing"

	"github.com/oomtrace/oomtrace/event"
)

const node = "node-a"

const evictionMsg = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 71068Ki. Container hog was using 1860192Ki, request is 64Mi, has larger consumption of memory. "

// recorder collects what the watcher reports.
type recorder struct {
	mu         sync.Mutex
	evictions  []event.Eviction
	conditions []event.NodeCondition
}

func (r *recorder) handlers() Handlers {
	return Handlers{
		Eviction:      func(e event.Eviction) { r.mu.Lock(); r.evictions = append(r.evictions, e); r.mu.Unlock() },
		NodeCondition: func(c event.NodeCondition) { r.mu.Lock(); r.conditions = append(r.conditions, c); r.mu.Unlock() },
	}
}

func (r *recorder) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; evictions %+v conditions %+v", what, r.evictions, r.conditions)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *recorder) evictionsOf(uid string) []event.Eviction {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event.Eviction
	for _, e := range r.evictions {
		if e.Pod.UID == uid {
			out = append(out, e)
		}
	}
	return out
}

func start(t *testing.T, cs *fake.Clientset, log *syncWriter) *recorder {
	t.Helper()
	r, w := startUnsynced(t, cs, log)
	// The informers list before the test changes anything: from then on
	// each change comes as a watch event, in order.
	r.wait(t, "the informers' first list", w.Synced)
	return r
}

// startUnsynced starts a watcher and returns at once (its lists may be
// refused).
func startUnsynced(t *testing.T, cs *fake.Clientset, log *syncWriter) (*recorder, *Watcher) {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	if log != nil {
		logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	w := New(fakeCore{cs.CoreV1()}, Options{Node: node, Settle: 50 * time.Millisecond, Logger: logger})
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx, r.handlers()); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, w
}

// fakeCore is the API over the fake clientset's core client, saying (as the
// fake clientset does) that it cannot stream watch lists.
type fakeCore struct{ core corev1client.CoreV1Interface }

func (fakeCore) IsWatchListSemanticsUnSupported() bool { return true }

func (f fakeCore) List(ctx context.Context, namespace, resource string, o metav1.ListOptions) (runtime.Object, error) {
	switch resource {
	case "pods":
		return f.core.Pods(namespace).List(ctx, o)
	case "nodes":
		return f.core.Nodes().List(ctx, o)
	case "events":
		return f.core.Events(namespace).List(ctx, o)
	}
	return nil, fmt.Errorf("no list of %q", resource)
}

func (f fakeCore) Watch(ctx context.Context, namespace, resource string, o metav1.ListOptions) (watch.Interface, error) {
	switch resource {
	case "pods":
		return f.core.Pods(namespace).Watch(ctx, o)
	case "nodes":
		return f.core.Nodes().Watch(ctx, o)
	case "events":
		return f.core.Events(namespace).Watch(ctx, o)
	}
	return nil, fmt.Errorf("no watch of %q", resource)
}

type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runningPod is a burstable pod as the API holds it while it runs.
func runningPod(name, uid, nodeName string) *corev1.Pod {
	prio := int32(1000)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID(uid), Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{NodeName: nodeName, Priority: &prio, Containers: []corev1.Container{{
			Name: "hog", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSBurstable,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "hog", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
	}
}

// evict sets the status the kubelet writes when it evicts a pod.
// marker evicts a pod of its own and waits for its eviction: every status
// written before it was handled by then (one informer, events in order;
// a second eviction of an earlier pod would have been due first).
func marker(t *testing.T, cs *fake.Clientset, r *recorder) {
	t.Helper()
	m := runningPod("marker", "uid-marker", node)
	cs.CoreV1().Pods("shop").Create(context.Background(), m, metav1.CreateOptions{})
	evict(t, cs, m, time.Now())
	r.wait(t, "the marker's eviction", func() bool {
		for _, e := range r.evictions {
			if e.Pod.UID == "uid-marker" {
				return true
			}
		}
		return false
	})
}

func evict(t *testing.T, cs *fake.Clientset, pod *corev1.Pod, at time.Time) {
	t.Helper()
	p := pod.DeepCopy()
	p.Status.Phase = corev1.PodFailed
	p.Status.Reason = ReasonEvicted
	p.Status.Message = evictionMsg
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{
		Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "TerminationByKubelet",
		Message: evictionMsg, LastTransitionTime: metav1.NewTime(at),
	})
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "hog", ContainerID: "containerd://0123abcd",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error", ContainerID: "containerd://0123abcd"}}}}
	if _, err := cs.CoreV1().Pods(p.Namespace).UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// forgedEvictedEvent is an Event any user allowed to create Events in the
// pod's namespace can write: the kubelet's reason, source and host, about a
// real pod of this node, with a message of msgBytes.
func forgedEvictedEvent(t *testing.T, cs *fake.Clientset, pod *corev1.Pod, at time.Time, msgBytes int) {
	t.Helper()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", pod.Name, at.UnixNano()), Namespace: pod.Namespace, Annotations: map[string]string{
			"offending_containers": "hog", "starved_resource": "memory",
		}},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, APIVersion: "v1"},
		Reason:         ReasonEvicted, Message: evictionMsg + strings.Repeat("x", msgBytes), Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "kubelet", Host: node},
		FirstTimestamp: metav1.NewTime(at), LastTimestamp: metav1.NewTime(at), Count: 1,
	}
	if _, err := cs.CoreV1().Events(pod.Namespace).Create(context.Background(), ev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func checkEviction(t *testing.T, e event.Eviction, pod *corev1.Pod) {
	t.Helper()
	if e.Type != "eviction" || e.Node != node || e.Cause != "kubelet_eviction" || e.Source != SourcePodStatus ||
		e.Pod.UID != string(pod.UID) || e.Pod.Name != pod.Name || e.Pod.Namespace != "shop" || e.Pod.QoS != "burstable" ||
		e.Priority == nil || *e.Priority != 1000 || e.Message != evictionMsg || e.StarvedResource != "memory" ||
		e.Pod.Labels["app"] != pod.Name || e.Pod.LabelsTruncated {
		t.Errorf("eviction %+v", e)
	}
	if e.ThresholdBytes == nil || *e.ThresholdBytes != 100<<20 || e.AvailableBytes == nil || *e.AvailableBytes != 71068<<10 {
		t.Errorf("threshold %v available %v", e.ThresholdBytes, e.AvailableBytes)
	}
	if len(e.OffendingContainers) != 1 || e.OffendingContainers[0].Name != "hog" || *e.OffendingContainers[0].UsageBytes != 1860192<<10 || *e.OffendingContainers[0].RequestBytes != 64<<20 {
		t.Errorf("offending containers %+v", e.OffendingContainers)
	}
}

// TestEvictionInitContainers: an evicted pod's init containers (a
// completed one, a sidecar the kubelet killed) are among its container
// exits, first and marked init.
func TestEvictionInitContainers(t *testing.T) {
	cs := fake.NewClientset()
	r := start(t, cs, nil)
	pod := runningPod("etl", "uid-sidecar", node)
	cs.CoreV1().Pods("shop").Create(context.Background(), pod, metav1.CreateOptions{})
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{
		{Name: "migrate", ContainerID: "containerd://aa01", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", ContainerID: "containerd://aa01"}}},
		{Name: "proxy", ContainerID: "containerd://aa02", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error", ContainerID: "containerd://aa02"}}},
	}
	evict(t, cs, pod, time.Now())
	r.wait(t, "eviction", func() bool { return len(r.evictions) == 1 })
	ce := r.evictionsOf("uid-sidecar")[0].ContainerExits
	if len(ce) != 3 || ce[0].Name != "migrate" || !ce[0].Init || ce[0].Reason != "Completed" ||
		ce[1].Name != "proxy" || !ce[1].Init || ce[1].Signal != "SIGKILL" || ce[1].ContainerID != "aa02" || ce[2].Name != "hog" || ce[2].Init {
		t.Errorf("container exits %+v, want migrate and proxy (init) then hog", ce)
	}
}

// TestEviction: the kubelet's status on a pod of this node is an
// eviction, reported once, after the pod's stop (its container exits).
func TestEviction(t *testing.T) {
	cs := fake.NewClientset()
	r := start(t, cs, nil)
	pod := runningPod("etl", "uid-evicted", node)
	cs.CoreV1().Pods("shop").Create(context.Background(), pod, metav1.CreateOptions{})
	now := time.Now().Truncate(time.Second)
	evict(t, cs, pod, now)
	r.wait(t, "eviction", func() bool { return len(r.evictions) == 1 })
	// A later status update of the same pod is no second eviction.
	p, _ := cs.CoreV1().Pods("shop").Get(context.Background(), pod.Name, metav1.GetOptions{})
	p.Status.Message = evictionMsg + " "
	cs.CoreV1().Pods("shop").UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
	marker(t, cs, r)
	got := r.evictionsOf("uid-evicted")
	if len(got) != 1 {
		t.Fatalf("%d evictions, want 1: %+v", len(got), got)
	}
	checkEviction(t, got[0], pod)
	if ce := got[0].ContainerExits; len(ce) != 1 || ce[0].ExitCode == nil || *ce[0].ExitCode != 137 || ce[0].Signal != "SIGKILL" || ce[0].ContainerID != "0123abcd" {
		t.Errorf("container exits %+v", ce)
	}
	if !got[0].Time.Equal(now) {
		t.Errorf("time %v, want the DisruptionTarget condition's %v", got[0].Time, now)
	}
}

// TestForgedEvictedEvents: Events are written by tenants. Forged Evicted
// Events (the kubelet's reason, source and host, about a real pod of this
// node, about a pod that never existed, with a message of 256 KiB) are no
// eviction, and the watcher never even reads them: no pod Event is listed.
func TestForgedEvictedEvents(t *testing.T) {
	cs := fake.NewClientset()
	r := start(t, cs, nil)
	real := runningPod("cart", "uid-real", node)
	cs.CoreV1().Pods("shop").Create(context.Background(), real, metav1.CreateOptions{})
	for i := range 20 {
		forgedEvictedEvent(t, cs, real, time.Now(), 256<<10)
		forgedEvictedEvent(t, cs, runningPod(fmt.Sprintf("ghost-%d", i), fmt.Sprintf("uid-ghost-%d", i), node), time.Now(), 256<<10)
	}
	// Then the kubelet really evicts the pod: reported, with the
	// kubelet's message, not a forger's.
	evict(t, cs, real, time.Now())
	r.wait(t, "the real eviction", func() bool { return len(r.evictions) > 0 })
	time.Sleep(300 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.evictions) != 1 {
		t.Fatalf("%d evictions, want only the kubelet's: %+v", len(r.evictions), r.evictions)
	}
	checkEviction(t, r.evictions[0], real)
	for _, a := range cs.Actions() {
		if a.GetResource().Resource == "events" && (a.GetVerb() == "list" || a.GetVerb() == "watch") {
			t.Errorf("%s of events in namespace %q: Events are tenants' to write", a.GetVerb(), a.GetNamespace())
		}
	}
}

// TestHugePod: a pod of this node with 5,000 labels, 1 MiB of annotations
// and a status message of 1 MiB is kept in a few KiB, and its eviction
// says its labels were cut.
func TestHugePod(t *testing.T) {
	pod := runningPod("fat", "uid-fat", node)
	pod.Annotations = map[string]string{"blob": strings.Repeat("a", 1<<20)}
	for i := range 5000 {
		pod.Labels[fmt.Sprintf("label-%04d", i)] = strings.Repeat("v", 60)
	}
	slim, err := slimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	sp := slim.(*corev1.Pod)
	if len(sp.Labels) > event.MaxLabels || sp.Annotations["blob"] != "" || sp.Annotations[labelsTruncated] == "" {
		t.Errorf("slim pod: %d labels, annotations %d", len(sp.Labels), len(sp.Annotations))
	}
	// Transforms may run again on their own output.
	again, _ := slimPod(sp)
	if a := again.(*corev1.Pod); len(a.Labels) != len(sp.Labels) || a.Annotations[labelsTruncated] == "" {
		t.Errorf("slimPod is not idempotent: %d labels, %v", len(a.Labels), a.Annotations)
	}

	cs := fake.NewClientset()
	r := start(t, cs, nil)
	cs.CoreV1().Pods("shop").Create(context.Background(), pod, metav1.CreateOptions{})
	p := pod.DeepCopy()
	p.Status.Phase, p.Status.Reason = corev1.PodFailed, ReasonEvicted
	p.Status.Message = evictionMsg + strings.Repeat("\x1b[2J\n", 1<<17)
	if _, err := cs.CoreV1().Pods("shop").UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "eviction", func() bool { return len(r.evictions) == 1 })
	e := r.evictionsOf("uid-fat")[0]
	if !e.Pod.LabelsTruncated || len(e.Pod.Labels) != event.MaxLabels || e.Pod.Labels["app"] != "fat" {
		t.Errorf("labels: %d, truncated %v", len(e.Pod.Labels), e.Pod.LabelsTruncated)
	}
	if len(e.Message) > event.MaxMessageBytes || strings.ContainsAny(e.Message, "\x1b\n") || e.StarvedResource != "memory" {
		t.Errorf("message of %d bytes, control characters kept: %q…", len(e.Message), e.Message[:min(len(e.Message), 200)])
	}
}

// TestEvictionSucceeded: every container exited 0 on the eviction's
// SIGTERM, and kubelet 1.37 leaves the pod Succeeded with no reason
// Evicted, only the DisruptionTarget condition: still an eviction when the
// Event is lost. A node shutdown's DisruptionTarget is not.
func TestEvictionSucceeded(t *testing.T) {
	cs := fake.NewClientset()
	r := start(t, cs, nil)
	for _, tt := range []struct {
		uid, message string
	}{{"uid-succeeded", evictionMsg}, {"uid-shutdown", "Pod was terminated in response to imminent node shutdown."}} {
		pod := runningPod("web-"+tt.uid, tt.uid, node)
		cs.CoreV1().Pods("shop").Create(context.Background(), pod, metav1.CreateOptions{})
		p := pod.DeepCopy()
		p.Status.Phase = corev1.PodSucceeded
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{
			Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: ReasonTerminationByKubelet,
			Message: tt.message, LastTransitionTime: metav1.Now(),
		})
		zero := int32(0)
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "hog", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: zero, Reason: "Completed"}}}}
		if _, err := cs.CoreV1().Pods("shop").UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	marker(t, cs, r)
	got := r.evictionsOf("uid-succeeded")
	if len(got) != 1 || len(r.evictionsOf("uid-shutdown")) != 0 {
		t.Fatalf("evictions %+v, want only the memory eviction's", r.evictions)
	}
	e := got[0]
	if e.Source != SourcePodStatus || e.Message != evictionMsg || e.StarvedResource != "memory" || *e.ThresholdBytes != 100<<20 {
		t.Errorf("eviction %+v", e)
	}
	if ce := e.ContainerExits; len(ce) != 1 || *ce[0].ExitCode != 0 || ce[0].Signal != "" || ce[0].Reason != "Completed" {
		t.Errorf("container exits %+v", ce)
	}
}

// TestEvictedByConditionFalse: a DisruptionTarget condition the kubelet
// set False (the disruption did not happen) is no eviction.
func TestEvictedByConditionFalse(t *testing.T) {
	pod := runningPod("web", "uid-false", node)
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{
		Type: corev1.DisruptionTarget, Status: corev1.ConditionFalse, Reason: ReasonTerminationByKubelet, Message: evictionMsg})
	if msg, ok := EvictedBy(pod); ok {
		t.Errorf("EvictedBy = %q, true for a condition with status False", msg)
	}
	pod.Status.Conditions[len(pod.Status.Conditions)-1].Status = corev1.ConditionTrue
	if _, ok := EvictedBy(pod); !ok {
		t.Error("EvictedBy = false for the same condition with status True")
	}
}

// TestContainerStatusUnknown: the kubelet's ContainerStatusUnknown comes
// with a made-up exit code 137, which is no SIGKILL, and without the
// container's id: the id it ran with names it.
func TestContainerStatusUnknown(t *testing.T) {
	cs := fake.NewClientset()
	r := start(t, cs, nil)
	pod := runningPod("lost", "uid-unknown", node)
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "killed"})
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{
		{Name: "hog", ContainerID: "containerd://feed01", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
		{Name: "killed", ContainerID: "containerd://feed02", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
	}
	cs.CoreV1().Pods("shop").Create(context.Background(), pod, metav1.CreateOptions{})
	p := pod.DeepCopy()
	p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, ReasonEvicted, evictionMsg
	p.Status.ContainerStatuses = []corev1.ContainerStatus{
		{Name: "hog", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: ReasonContainerStatusUnknown,
			Message: "The container could not be located when the pod was terminated"}}},
		{Name: "killed", ContainerID: "containerd://feed02", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error",
			ContainerID: "containerd://feed02"}}},
	}
	if _, err := cs.CoreV1().Pods("shop").UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "eviction", func() bool { return len(r.evictions) == 1 })
	ce := r.evictionsOf("uid-unknown")[0].ContainerExits
	if len(ce) != 2 || ce[0].Signal != "" || ce[0].Reason != ReasonContainerStatusUnknown || *ce[0].ExitCode != 137 || ce[1].Signal != "SIGKILL" {
		t.Errorf("container exits %+v, want no signal for the unknown one, SIGKILL for the other", ce)
	}
	if len(ce) == 2 && (ce[0].ContainerID != "feed01" || ce[1].ContainerID != "feed02") {
		t.Errorf("container ids %q %q, want feed01 (as it ran) and feed02", ce[0].ContainerID, ce[1].ContainerID)
	}
}

func TestEvictionsElsewhereAndBefore(t *testing.T) {
	// Evicted before the watcher started: history, not news.
	old := runningPod("old", "uid-old", node)
	old.Status.Reason, old.Status.Message = ReasonEvicted, evictionMsg
	old.Status.Conditions = []corev1.PodCondition{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(time.Now().Add(-time.Hour))}}
	cs := fake.NewClientset(old)
	r := start(t, cs, nil)
	// Another node's pod (the fake ignores field selectors, as a
	// misconfigured proxy could: the watcher checks itself).
	other := runningPod("far", "uid-far", "node-b")
	cs.CoreV1().Pods("shop").Create(context.Background(), other, metav1.CreateOptions{})
	evict(t, cs, other, time.Now())
	// And one of this node's, last, to know when to look.
	here := runningPod("here", "uid-here", node)
	cs.CoreV1().Pods("shop").Create(context.Background(), here, metav1.CreateOptions{})
	evict(t, cs, here, time.Now())
	// here's eviction comes after the other pod's status was handled.
	r.wait(t, "this node's eviction", func() bool { return len(r.evictions) == 1 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.evictions) != 1 || r.evictions[0].Pod.UID != "uid-here" {
		t.Errorf("evictions %+v, want only this node's new one", r.evictions)
	}
}

// TestEvictionTimeAhead: a condition time ahead of this clock is taken as
// now, so that it cannot keep the eviction from being forgotten.
func TestEvictionTimeAhead(t *testing.T) {
	cs := fake.NewClientset()
	r := start(t, cs, nil)
	pod := runningPod("ahead", "uid-ahead", node)
	cs.CoreV1().Pods("shop").Create(context.Background(), pod, metav1.CreateOptions{})
	before := time.Now()
	evict(t, cs, pod, before.Add(100*24*time.Hour))
	r.wait(t, "eviction", func() bool { return len(r.evictions) == 1 })
	if at := r.evictionsOf("uid-ahead")[0].Time; at.Before(before) || at.After(time.Now()) {
		t.Errorf("time %v, want now", at)
	}
}

func nodeWith(status corev1.ConditionStatus, at time.Time) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("7Gi")},
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue},
				{Type: corev1.NodeMemoryPressure, Status: status, Reason: map[corev1.ConditionStatus]string{
					corev1.ConditionTrue: "KubeletHasInsufficientMemory", corev1.ConditionFalse: "KubeletHasSufficientMemory"}[status],
					Message: "kubelet has sufficient memory available", LastTransitionTime: metav1.NewTime(at)},
			},
		},
	}
}

func TestNodeCondition(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	cs := fake.NewClientset(nodeWith(corev1.ConditionFalse, t0))
	r := start(t, cs, nil)
	t1 := t0.Add(50 * time.Minute)
	cs.CoreV1().Nodes().UpdateStatus(context.Background(), nodeWith(corev1.ConditionTrue, t1), metav1.UpdateOptions{})
	r.wait(t, "pressure", func() bool { return len(r.conditions) == 1 })
	// The kubelet keeps MemoryPressure for the transition period (5m).
	t2 := t1.Add(5*time.Minute + 10*time.Second)
	cs.CoreV1().Nodes().UpdateStatus(context.Background(), nodeWith(corev1.ConditionFalse, t2), metav1.UpdateOptions{})
	r.wait(t, "relief", func() bool { return len(r.conditions) == 2 })
	// A status update without a transition says nothing.
	// A status update without a transition says nothing: the next
	// transition, written after it, is the third condition reported.
	cs.CoreV1().Nodes().UpdateStatus(context.Background(), nodeWith(corev1.ConditionFalse, t2), metav1.UpdateOptions{})
	t3 := t2.Add(time.Minute)
	cs.CoreV1().Nodes().UpdateStatus(context.Background(), nodeWith(corev1.ConditionTrue, t3), metav1.UpdateOptions{})
	r.wait(t, "pressure again", func() bool { return len(r.conditions) >= 3 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.conditions) != 3 || r.conditions[2].Status != "True" || !r.conditions[2].Time.Equal(t3) {
		t.Fatalf("conditions %+v: want True, False, True (nothing for the update without a transition)", r.conditions)
	}
	up, down := r.conditions[0], r.conditions[1]
	if up.Status != "True" || up.PreviousStatus != "False" || up.Reason != "KubeletHasInsufficientMemory" || *up.SincePreviousSeconds != 3000 || !up.Time.Equal(t1) || up.Type != "node_condition" || up.Condition != "MemoryPressure" {
		t.Errorf("pressure: %+v", up)
	}
	if down.Status != "False" || down.PreviousStatus != "True" || *down.SincePreviousSeconds != 310 {
		t.Errorf("relief: %+v (since %v)", down, *down.SincePreviousSeconds)
	}
}

func TestForbidden(t *testing.T) {
	cs := fake.NewClientset(nodeWith(corev1.ConditionFalse, time.Now().Add(-time.Hour)))
	// No RBAC for pods: the node view still works, one warning however
	// many times the informer tries again.
	var refused atomic.Int32
	for _, res := range []string{"pods"} {
		cs.PrependReactor("list", res, func(a k8stesting.Action) (bool, runtime.Object, error) {
			refused.Add(1)
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: a.GetResource().Resource}, "", nil)
		})
	}
	sw := &syncWriter{b: &strings.Builder{}}
	r, w := startUnsynced(t, cs, sw)
	// The node's list is allowed: its condition is known before it moves.
	r.wait(t, "the node's first list", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.condition != nil })
	cs.CoreV1().Nodes().UpdateStatus(context.Background(), nodeWith(corev1.ConditionTrue, time.Now()), metav1.UpdateOptions{})
	r.wait(t, "pressure despite forbidden pods", func() bool { return len(r.conditions) == 1 })
	// The refused informer tries again (client-go's backoff starts at
	// 800 ms): wait for two more refusals than the first.
	r.wait(t, "the informer's retries", func() bool { return refused.Load() >= 3 })
	if n := strings.Count(sw.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings after %d refused lists, want 1:\n%s", n, refused.Load(), sw.String())
	}
}

// TestWatchesNarrowed: what the API server is asked for, by field
// selector: this node's pods and its Node; no Event, anywhere (the API
// server has no watch cache of Events: each watch of them costs it every
// Event of the namespace, on every node).
func TestWatchesNarrowed(t *testing.T) {
	cs := fake.NewClientset()
	start(t, cs, nil)
	want := map[string]string{
		"pods":  "spec.nodeName=" + node,
		"nodes": "metadata.name=" + node,
	}
	seen := map[string]bool{}
	for _, a := range cs.Actions() {
		la, ok := a.(k8stesting.ListActionImpl)
		if !ok {
			continue
		}
		sel := la.GetListRestrictions().Fields.String()
		res := la.GetResource().Resource
		if w, ok := want[res]; ok && sel == w {
			seen[res] = true
		}
		if _, ok := want[res]; !ok {
			t.Errorf("%s listed in %q with %q: not a resource of this node's view", res, la.GetNamespace(), sel)
		}
	}
	for res, sel := range want {
		if !seen[res] {
			t.Errorf("no list of %s with field selector %q", res, sel)
		}
	}
}

// TestClientGoLogAtDebug: client-go's own lines (klog) reach oomtrace's log
// at debug level, whatever level client-go gave them, and not above.
func TestClientGoLogAtDebug(t *testing.T) {
	var buf bytes.Buffer
	h := atDebug{slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})}
	slog.New(h).Error("Failed to watch", "err", "forbidden")
	if !strings.Contains(buf.String(), `"level":"DEBUG"`) || !strings.Contains(buf.String(), "Failed to watch") {
		t.Errorf("client-go's error: %s", buf.String())
	}
	buf.Reset()
	quiet := atDebug{slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})}
	if quiet.Enabled(context.Background(), slog.LevelError) {
		t.Error("client-go's lines shown at info level")
	}
}

// TestOwnerOf: a pod's workload from its controller owner reference; a
// ReplicaSet named after its pods' pod-template-hash is its Deployment's.
func TestOwnerOf(t *testing.T) {
	yes := true
	pod := func(kind, name, hash string, controller *bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{}}}
		if hash != "" {
			p.Labels["pod-template-hash"] = hash
		}
		if kind != "" {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: kind, Name: name, Controller: controller}}
		}
		return p
	}
	cases := []struct {
		name string
		p    *corev1.Pod
		want string
	}{
		{"deployment", pod("ReplicaSet", "web-5c8d7f9b6d", "5c8d7f9b6d", &yes), "Deployment/web"},
		{"bare replicaset", pod("ReplicaSet", "web", "", &yes), "ReplicaSet/web"},
		{"hash that is not the name's", pod("ReplicaSet", "web-5c8d7f9b6d", "aaaa", &yes), "ReplicaSet/web-5c8d7f9b6d"},
		{"hash that is the whole name", pod("ReplicaSet", "-abc", "abc", &yes), "ReplicaSet/-abc"},
		{"statefulset", pod("StatefulSet", "db", "", &yes), "StatefulSet/db"},
		{"static pod", pod("Node", "node-1", "", &yes), "Node/node-1"},
		{"not a controller", pod("ConfigMap", "x", "", nil), ""},
		{"no owner", pod("", "", "", nil), ""},
	}
	for _, c := range cases {
		if got := ownerOf(c.p).String(); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	// The slimmed pod keeps the controller reference, bounded; the owner,
	// a label of every series of the pod, to what the API allows a kind
	// and a name (63, 253).
	long := pod("ReplicaSet", strings.Repeat("x", 1<<20), "", &yes)
	slim, _ := slimPod(long)
	if refs := slim.(*corev1.Pod).OwnerReferences; len(refs) != 1 || len(refs[0].Name) > event.MaxMessageBytes || refs[0].Kind != "ReplicaSet" {
		t.Errorf("slim pod's owner references: %d, name of %d bytes", len(refs), len(refs[0].Name))
	}
	if o := ownerOf(slim.(*corev1.Pod)); o == nil || len(o.Name) != 253 || o.Kind != "ReplicaSet" {
		t.Errorf("owner %v: want its name cut to 253 bytes", o)
	}
	if o := ownerOf(pod(strings.Repeat("K", 100), "web", "", &yes)); o == nil || len(o.Kind) != 63 {
		t.Errorf("owner %v: want its kind cut to 63 bytes", o)
	}
}
