// SPDX-License-Identifier: Apache-2.0

// Package clusterview watches this node's pods and its Node through the
// API server, and reports the kubelet's evictions and the Node's
// MemoryPressure transitions as events.
//
// No Event is read at all. Tenants write Events: any user who may create
// an Event in a namespace can make one say "reason: Evicted, source:
// kubelet" about any pod, with a message of a megabyte. And the API server
// keeps no watch cache of Events: each agent's watch of them would be an
// etcd watch the API server decodes and filters every Event of its
// namespace for, a cost that grows with the number of nodes (measured:
// make bench-scale). An eviction is what the kubelet wrote in the status
// of a pod of this node, which tenants cannot write, and every object kept
// in the caches is trimmed to the fields read here, with bounded strings
// and labels.
package clusterview

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/kube/evictionmsg"
)

// ReasonEvicted is the reason of the status of a pod the kubelet evicted.
const ReasonEvicted = "Evicted"

// ReasonTerminationByKubelet is the reason of the DisruptionTarget
// condition the kubelet sets on a pod it evicts (and on pods it stops for
// a node shutdown: the message tells them apart).
const ReasonTerminationByKubelet = "TerminationByKubelet"

// ReasonContainerStatusUnknown is the kubelet's reason for a container it
// could not see end; its exit code 137 is made up, not a SIGKILL.
const ReasonContainerStatusUnknown = "ContainerStatusUnknown"

// SourcePodStatus is the source of every eviction event: the status the
// kubelet wrote on the pod (reason Evicted, or the DisruptionTarget
// condition).
const SourcePodStatus = "pod_status"

// Handlers receive what the watcher sees; each may be nil.
type Handlers struct {
	Eviction      func(event.Eviction)
	NodeCondition func(event.NodeCondition)
}

// Options configure a Watcher.
type Options struct {
	Node string
	// Settle delays an eviction seen in the pod's status: the kubelet
	// writes the status and then stops the pod (SIGTERM, SIGKILL after
	// the grace period, 2 s for a hard eviction, then the sandbox), and
	// the event should show that. Default 5 s: 3 s missed the sandbox's
	// SIGKILL on a busy node in the cluster suite.
	Settle time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// Watcher is the cluster view of one node.
type Watcher struct {
	api  API
	opts Options
	h    Handlers

	start time.Time
	// podCache is the pod informer's cache, set once Run made it; read on
	// other goroutines too (Owner).
	podCache atomic.Pointer[cache.Indexer]

	// synced: the informers listed once (their caches hold what the API
	// had), readiness for the tests.
	synced atomic.Bool

	mu        sync.Mutex
	emitted   map[types.UID]time.Time // evictions seen, forgotten after an hour
	pruned    time.Time
	pending   map[types.UID]*time.Timer
	condition *corev1.NodeCondition
	apiFailed bool
}

// API lists and watches the core/v1 resources the watcher reads ("pods",
// "nodes", "events") in one namespace ("": all): a kubeapi.Client.
type API interface {
	List(ctx context.Context, namespace, resource string, o metav1.ListOptions) (runtime.Object, error)
	Watch(ctx context.Context, namespace, resource string, o metav1.ListOptions) (watch.Interface, error)
}

// New returns a watcher of opts.Node.
func New(api API, opts Options) *Watcher {
	if opts.Settle == 0 {
		opts.Settle = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Watcher{api: api, opts: opts, emitted: map[types.UID]time.Time{}, pending: map[types.UID]*time.Timer{}}
}

// Synced says whether the watcher's informers have listed once: what
// changes after it comes as watch events, in order.
func (w *Watcher) Synced() bool { return w.synced.Load() }

// Up says whether the view is current: synced, and its watches not
// failing.
func (w *Watcher) Up() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.synced.Load() && !w.apiFailed
}

// Run watches until ctx is done. An API server that is unreachable or
// forbids the watches costs one warning; the informers retry with backoff.
func (w *Watcher) Run(ctx context.Context, h Handlers) {
	w.h = h
	w.start = w.opts.Now()
	// client-go logs every failed list (and the API's warnings) through
	// klog: oomtrace says a failure once, at warn; client-go's own lines
	// go to its log at debug, for when that is not enough.
	klog.SetLogger(logr.FromSlogHandler(atDebug{w.opts.Logger.Handler()}))

	node := w.opts.Node
	pods := w.informer("", "pods", &corev1.Pod{}, "spec.nodeName="+node, slimPod)
	if err := pods.AddIndexers(cache.Indexers{uidIndex: podUID, containerIndex: podContainerIDs}); err != nil {
		w.opts.Logger.Warn("cluster view: pod index", "err", err)
	}
	idx := pods.GetIndexer()
	w.podCache.Store(&idx)
	nodes := w.informer("", "nodes", &corev1.Node{}, "metadata.name="+node, slimNode)
	all := []cache.SharedIndexInformer{pods, nodes}
	for name, inf := range map[string]cache.SharedIndexInformer{"pods": pods, "node": nodes} {
		_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) { w.apiError(name, err) })
	}
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.pod(nil, obj) },
		UpdateFunc: func(old, obj any) { w.pod(old, obj) },
	})
	_, _ = nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.node(obj) },
		UpdateFunc: func(_, obj any) { w.node(obj) },
	})
	var wg sync.WaitGroup
	for _, inf := range all {
		wg.Add(1)
		go func() { defer wg.Done(); inf.RunWithContext(ctx) }()
	}
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), pods.HasSynced, nodes.HasSynced) {
			w.mu.Lock()
			failed := w.apiFailed
			w.apiFailed = false
			w.mu.Unlock()
			w.synced.Store(true)
			w.opts.Logger.Info("cluster view synced", "node", node, "recovered", failed)
		}
	}()
	<-ctx.Done()
	wg.Wait()
	w.mu.Lock()
	for _, t := range w.pending {
		t.Stop()
	}
	w.mu.Unlock()
}

// informer lists and watches one resource of a namespace ("": all) with a
// field selector, and keeps each object as slim makes it. The API is asked
// whether it supports watch-list streaming (client-go's fakes say no).
func (w *Watcher) informer(namespace, resource string, example runtime.Object, selector string, slim cache.TransformFunc) cache.SharedIndexInformer {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return w.api.List(ctx, namespace, resource, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return w.api.Watch(ctx, namespace, resource, o)
		},
	}
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, w.api), example, 0, cache.Indexers{})
	if err := inf.SetTransform(slim); err != nil {
		w.opts.Logger.Warn("cluster view: trimming the cache", "resource", resource, "err", err)
	}
	return inf
}

func (w *Watcher) apiError(what string, err error) {
	w.mu.Lock()
	first := !w.apiFailed
	w.apiFailed = true
	w.mu.Unlock()
	if first {
		w.opts.Logger.Warn("cluster view: API server unavailable or forbidden; retrying with backoff, kernel events and node signals go on",
			"watch", what, "err", err)
	} else {
		w.opts.Logger.Debug("cluster view: watch failed", "watch", what, "err", err)
	}
}

// EvictedBy says whether the kubelet evicted the pod, and with what
// message: status reason Evicted (phase Failed), or, when every container
// exited 0 on the eviction's SIGTERM and the pod ended Succeeded without
// that reason (kubelet 1.37), the DisruptionTarget condition with reason
// TerminationByKubelet and the eviction message.
func EvictedBy(pod *corev1.Pod) (string, bool) {
	if pod.Status.Reason == ReasonEvicted {
		return pod.Status.Message, true
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == ReasonTerminationByKubelet &&
			evictionmsg.Parse(c.Message).StarvedResource != "" {
			return c.Message, true
		}
	}
	return "", false
}

// pod sees a pod of this node change: an eviction in its status.
func (w *Watcher) pod(oldObj, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != w.opts.Node {
		return
	}
	message, evicted := EvictedBy(pod)
	if !evicted {
		return
	}
	old, _ := oldObj.(*corev1.Pod)
	if old != nil {
		if _, was := EvictedBy(old); was {
			return
		}
	}
	now := w.opts.Now()
	at := evictionTime(pod, now)
	if at.After(now) {
		at = now // a clock ahead of ours: nothing is kept past its time
	}
	if oldObj == nil && at.Before(w.start) {
		return // evicted before oomtrace started
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, done := w.emitted[pod.UID]; done {
		return
	}
	w.forgetOld()
	w.emitted[pod.UID] = at
	// The containers' ids as the pod ran: once the runtime has removed a
	// container before the kubelet read its exit, the kubelet writes
	// ContainerStatusUnknown without an id, and nothing else names the
	// kernel's signals to it (seen under emulation in the cluster suite).
	known := containerIDs(pod, old)
	// Wait for the kubelet's stop of the pod, so that the event shows it.
	uid := pod.UID
	w.pending[uid] = time.AfterFunc(w.opts.Settle, func() {
		w.mu.Lock()
		delete(w.pending, uid)
		w.mu.Unlock()
		cur := w.podByUID(uid)
		if cur == nil {
			cur = pod
		}
		w.emit(w.eviction(cur, message, at, known))
	})
}

// containerIDs are the runtime's ids of the containers by name, as the
// pods' statuses have them (the running one, else the last that ended),
// the first pod's first; a nil pod has none.
func containerIDs(pods ...*corev1.Pod) map[string]string {
	ids := map[string]string{}
	for _, pod := range pods {
		if pod == nil {
			continue
		}
		for _, cs := range pod.Status.ContainerStatuses {
			for _, full := range statusIDs(cs) {
				if id := runtimeID(full); id != "" {
					if ids[cs.Name] == "" {
						ids[cs.Name] = id
					}
					break
				}
			}
		}
	}
	return ids
}

// forgetOld drops evictions reported more than an hour ago, at most once a
// minute: a pod is evicted once, its uid never comes back. Call with mu held.
func (w *Watcher) forgetOld() {
	now := w.opts.Now()
	if now.Sub(w.pruned) < time.Minute {
		return
	}
	w.pruned = now
	for uid, at := range w.emitted {
		if now.Sub(at) > time.Hour {
			delete(w.emitted, uid)
		}
	}
}

// node sees the Node's MemoryPressure changes.
func (w *Watcher) node(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok || n.Name != w.opts.Node {
		return
	}
	var cond *corev1.NodeCondition
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeMemoryPressure {
			cond = n.Status.Conditions[i].DeepCopy()
		}
	}
	if cond == nil {
		return
	}
	w.mu.Lock()
	prev := w.condition
	w.condition = cond
	w.mu.Unlock()
	if prev == nil || prev.Status == cond.Status {
		// The first sight is a state, not a transition.
		return
	}
	nc := event.NodeCondition{
		Type: event.TypeNodeCondition, Time: event.Time{Time: cond.LastTransitionTime.Time}, Node: w.opts.Node,
		Condition: string(corev1.NodeMemoryPressure), Status: string(cond.Status), PreviousStatus: string(prev.Status),
		Reason: cond.Reason, Message: cond.Message,
	}
	if !prev.LastTransitionTime.IsZero() && !cond.LastTransitionTime.IsZero() {
		d := event.Seconds(cond.LastTransitionTime.Sub(prev.LastTransitionTime.Time))
		nc.SincePreviousSeconds = &d
	}
	if w.h.NodeCondition != nil {
		w.h.NodeCondition(nc)
	}
}

func (w *Watcher) podByUID(uid types.UID) *corev1.Pod {
	// Read through podCache: Owner is called from other goroutines, and
	// the cache is set once Run has made it.
	pods := w.podCache.Load()
	if pods == nil {
		return nil
	}
	objs, err := (*pods).ByIndex(uidIndex, string(uid))
	if err != nil {
		return nil
	}
	for _, obj := range objs {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName == w.opts.Node {
			return p
		}
	}
	return nil
}

// Owner is the workload of the pod uid on this node, as its controller
// owner reference names it: a ReplicaSet whose name is its pod's
// pod-template-hash after a Deployment's is that Deployment. nil when the
// pod is not known (yet) or has no controller. The owner reference and
// the label are the pod's creator's to write: the owner names the pod's
// own workload as its creator says, never another pod.
func (w *Watcher) Owner(uid string) *event.PodOwner {
	p := w.podByUID(types.UID(uid))
	if p == nil {
		return nil
	}
	return ownerOf(p)
}

func ownerOf(p *corev1.Pod) *event.PodOwner {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return nil
	}
	// Bounded to what the API allows a kind and an object's name (63,
	// 253): an owner reference is the pod's creator's to write, and the
	// owner is a label of every one of the pod's series.
	o := &event.PodOwner{Kind: event.BoundText(ref.Kind, maxKind), Name: event.BoundText(ref.Name, maxName)}
	if hash := p.Labels["pod-template-hash"]; ref.Kind == "ReplicaSet" && hash != "" {
		if d, ok := strings.CutSuffix(ref.Name, "-"+hash); ok && d != "" {
			o.Kind, o.Name = "Deployment", d
		}
	}
	return o
}

// The longest kind and object name the API has (a DNS label, a DNS
// subdomain).
const (
	maxKind = 63
	maxName = 253
)

// uidIndex indexes the pod cache by pod uid.
const uidIndex = "uid"

func podUID(obj any) ([]string, error) {
	if p, ok := obj.(*corev1.Pod); ok {
		return []string{string(p.UID)}, nil
	}
	return nil, nil
}

func (w *Watcher) emit(ev event.Eviction) {
	if w.h.Eviction != nil {
		w.h.Eviction(ev)
	}
}

// eviction builds the event from the pod as the kubelet left it; known
// names the ids of containers whose status has lost it.
func (w *Watcher) eviction(pod *corev1.Pod, message string, at time.Time, known map[string]string) event.Eviction {
	msg := evictionmsg.Parse(message)
	ev := event.Eviction{
		Type: event.TypeEviction, Time: event.Time{Time: at}, Node: w.opts.Node,
		Pod:   event.Pod{UID: string(pod.UID), Name: pod.Name, Namespace: pod.Namespace},
		Cause: event.CauseKubeletEviction, Source: SourcePodStatus, Message: message,
		StarvedResource: msg.StarvedResource, ThresholdBytes: msg.ThresholdBytes, AvailableBytes: msg.AvailableBytes,
		OffendingContainers: msg.Containers, OffendingPod: msg.Pod,
		KernelOOMKills: []event.KillRef{},
		ContainerExits: []event.ContainerExit{},
	}
	if ev.OffendingContainers == nil {
		ev.OffendingContainers = []event.OffendingContainer{}
	}
	ev.Pod.QoS = strings.ToLower(string(pod.Status.QOSClass))
	ev.Pod.Labels, ev.Pod.LabelsTruncated = pod.Labels, pod.Annotations[labelsTruncated] != ""
	ev.Pod.Owner = ownerOf(pod)
	ev.Priority = pod.Spec.Priority
	ev.TerminationGracePeriodSeconds = pod.Spec.TerminationGracePeriodSeconds
	// Init containers first, as the kubelet starts them; a sidecar is one
	// that keeps running.
	exits := make([]corev1.ContainerStatus, 0, len(pod.Status.InitContainerStatuses)+len(pod.Status.ContainerStatuses))
	exits = append(append(exits, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for i, cs := range exits {
		ce := event.ContainerExit{Name: cs.Name, ContainerID: runtimeID(cs.ContainerID), Init: i < len(pod.Status.InitContainerStatuses)}
		t := cs.State.Terminated
		if t == nil {
			t = cs.LastTerminationState.Terminated
		}
		if t != nil {
			if id := runtimeID(t.ContainerID); id != "" {
				ce.ContainerID = id
			}
			code := t.ExitCode
			ce.ExitCode, ce.Reason = &code, t.Reason
			switch {
			case t.Reason == ReasonContainerStatusUnknown:
				// The kubelet made up 137: no signal is known.
			case t.Signal != 0:
				ce.Signal = signalName(t.Signal)
			case code > 128:
				ce.Signal = signalName(code - 128)
			}
		}
		if ce.ContainerID == "" {
			ce.ContainerID = known[cs.Name]
		}
		ev.ContainerExits = append(ev.ContainerExits, ce)
	}
	return ev
}

// runtimeID is a container id without the runtime's scheme
// (containerd://).
func runtimeID(s string) string {
	if _, id, ok := strings.Cut(s, "://"); ok {
		return id
	}
	return s
}

func signalName(sig int32) string {
	switch sig {
	case 9:
		return "SIGKILL"
	case 15:
		return "SIGTERM"
	case 6:
		return "SIGABRT"
	case 11:
		return "SIGSEGV"
	}
	return ""
}

// evictionTime: the DisruptionTarget condition the kubelet sets, else the
// pod's last condition change, else now. (The kubelet 1.37 writes the
// condition once the pod's containers have stopped: its stop began up to
// the grace period before.)
func evictionTime(pod *corev1.Pod, now time.Time) time.Time {
	var latest time.Time
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && !c.LastTransitionTime.IsZero() {
			return c.LastTransitionTime.Time
		}
		if c.LastTransitionTime.After(latest) {
			latest = c.LastTransitionTime.Time
		}
	}
	if latest.IsZero() {
		return now
	}
	return latest
}

// atDebug is a log handler that says everything at debug level.
type atDebug struct{ slog.Handler }

func (h atDebug) Enabled(ctx context.Context, _ slog.Level) bool {
	return h.Handler.Enabled(ctx, slog.LevelDebug)
}

func (h atDebug) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return h.Handler.Handle(ctx, r)
}

func (h atDebug) WithAttrs(attrs []slog.Attr) slog.Handler {
	return atDebug{h.Handler.WithAttrs(attrs)}
}

func (h atDebug) WithGroup(name string) slog.Handler { return atDebug{h.Handler.WithGroup(name)} }
