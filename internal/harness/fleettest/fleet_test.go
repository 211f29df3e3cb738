// SPDX-License-Identifier: Apache-2.0

package fleettest

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/benchinfo"
)

// The bench's knobs (make bench-scale sets the first).
const (
	benchEnv = "OOMTRACE_BENCH_SCALE"
	// agentsEnv: the fleet sizes, agents (= nodes), comma-separated.
	agentsEnv = "OOMTRACE_BENCH_SCALE_AGENTS"
	// restEnv: how long each size rests; longRestEnv: the rest at the
	// largest size, long enough for the watches' renewals (client-go
	// ends a watch after 5 to 10 minutes).
	restEnv     = "OOMTRACE_BENCH_SCALE_REST"
	longRestEnv = "OOMTRACE_BENCH_SCALE_LONG_REST"
)

const (
	namespace   = "fleet"
	podsPerNode = 3
	// stormNodes are evicting at once, stormPods each.
	stormNodes = 100
	stormPods  = 2
	// killsPerNode: the burst of OOM kills on each storm node, in
	// killContainers containers of its pods, for the Event writes.
	killsPerNode   = 300
	killContainers = 20
	killWindow     = 40 * time.Second
)

func durationEnv(t *testing.T, name string, def time.Duration) time.Duration {
	if s := os.Getenv(name); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, s, err)
		}
		return d
	}
	return def
}

// TestFleetScale runs a growing fleet of agents' cluster views against a
// real API server, nodes and pods being API objects only, and measures
// what each agent costs the API server at rest, in an eviction storm on
// 100 nodes and in a burst of OOM-kill Events, with what each agent
// received. It checks that every eviction reached its own node's agent
// and no other, that an agent of a node with no eviction received
// nothing in the storm, and that a node's Event writes stay within their
// bound.
func TestFleetScale(t *testing.T) {
	if os.Getenv(benchEnv) == "" {
		t.Skip("benchmark: run with make bench-scale")
	}
	sizes := []int{100, 300, 1000, 1500}
	if s := os.Getenv(agentsEnv); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < stormNodes {
				t.Fatalf("%s=%q: want sizes of at least %d", agentsEnv, s, stormNodes)
			}
			sizes = append(sizes, n)
		}
		sort.Ints(sizes)
	}
	rest, longRest := durationEnv(t, restEnv, 90*time.Second), durationEnv(t, longRestEnv, 10*time.Minute)
	maxNodes := sizes[len(sizes)-1]

	cp := Start(t)
	ctx := context.Background()
	f := &fleet{t: t, cp: cp}
	f.scenery(ctx, maxNodes)
	agentCfg := f.agentConfig(ctx)

	report := &table{}
	report.add("machine", benchinfo.Machine())
	base := f.measure(ctx, "no agents, at rest", rest, nil)
	report.rest = append(report.rest, base)

	var agents []*Agent
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, a := range agents {
			wg.Go(a.Stop)
		}
		wg.Wait()
	})
	for step, n := range sizes {
		// This size's storm pods exist before its agents list.
		f.stormPods(ctx, step)
		startAt := f.sample(ctx, agents)
		begin := time.Now()
		agents = f.startAgents(agents, agentCfg, n)
		started := f.sample(ctx, agents)
		report.starts = append(report.starts, phaseOf(fmt.Sprintf("start %d agents (to %d)", n-len(startAt.agents), n), startAt, started, time.Since(begin)))

		r := f.measure(ctx, fmt.Sprintf("%d agents, at rest", n), rest, agents)
		report.rest = append(report.rest, r)
		report.storms = append(report.storms, f.storm(ctx, step, agents))
	}
	report.kills = f.killBurst(ctx, agents)
	report.long = f.measure(ctx, fmt.Sprintf("%d agents, at rest %s", len(agents), longRest), longRest, agents)
	report.base = base
	for _, a := range agents {
		if n := a.Snapshot().Foreign; n != 0 {
			t.Errorf("the agent of %s received %d objects of other nodes", a.Node, n)
		}
	}
	t.Log("\n" + report.String())
}

// fleet is the scenery: the nodes and pods, and the API server.
type fleet struct {
	t     *testing.T
	cp    *ControlPlane
	nodes []string
	// stormed[step][node] are the pods evicted in that step's storm.
	stormed [][][]*corev1.Pod
}

func nodeName(i int) string { return fmt.Sprintf("fleet-node-%04d", i) }

// parallel runs f(0..n-1) on workers goroutines; the first error fails
// the test.
func (f *fleet) parallel(what string, n, workers int, fn func(i int) error) {
	f.t.Helper()
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if err := first.Load(); err != nil {
		f.t.Fatalf("%s: %v", what, *err)
	}
}

// scenery creates the namespaces, the DaemonSet's service account and
// RBAC (deploy/base's), and n Nodes with podsPerNode running pods each.
func (f *fleet) scenery(ctx context.Context, n int) {
	f.t.Helper()
	c := f.cp.AdminClient
	for _, ns := range []string{namespace} {
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			f.t.Fatal(err)
		}
		// No controller manager: the pods' service account is made here.
		if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			f.t.Fatal(err)
		}
	}
	f.applyDeploy(ctx, "namespace.yaml", "serviceaccount.yaml", "rbac.yaml")
	begin := time.Now()
	for i := range n {
		f.nodes = append(f.nodes, nodeName(i))
	}
	f.parallel("nodes", n, 16, func(i int) error {
		now := metav1.Now()
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: f.nodes[i], Labels: map[string]string{"kubernetes.io/hostname": f.nodes[i]}}}
		created, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status = corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now},
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
			},
			Capacity: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110")},
		}
		_, err = c.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		return err
	})
	f.parallel("pods", n*podsPerNode, 16, func(i int) error {
		_, err := f.runningPod(ctx, fmt.Sprintf("app-%04d-%d", i/podsPerNode, i%podsPerNode), f.nodes[i/podsPerNode])
		return err
	})
	f.t.Logf("%d nodes and %d running pods created in %s", n, n*podsPerNode, time.Since(begin).Round(time.Second))
}

// applyDeploy creates the objects of deploy/base's files.
func (f *fleet) applyDeploy(ctx context.Context, files ...string) {
	f.t.Helper()
	c := f.cp.AdminClient
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "base", name))
		if err != nil {
			f.t.Fatal(err)
		}
		for _, doc := range strings.Split(string(b), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
			if err != nil {
				f.t.Fatalf("%s: %v", name, err)
			}
			switch o := obj.(type) {
			case *corev1.Namespace:
				_, err = c.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
			case *corev1.ServiceAccount:
				_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.ClusterRole:
				_, err = c.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.ClusterRoleBinding:
				_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.Role:
				_, err = c.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *rbacv1.RoleBinding:
				_, err = c.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			default:
				err = fmt.Errorf("unexpected %T", obj)
			}
			if err != nil {
				f.t.Fatalf("%s: %v", name, err)
			}
		}
	}
}

// agentConfig is what the DaemonSet's pods use: the oomtrace service
// account's token, through the API server's RBAC.
func (f *fleet) agentConfig(ctx context.Context) *rest.Config {
	f.t.Helper()
	expiry := int64(4 * 3600)
	tok, err := f.cp.AdminClient.CoreV1().ServiceAccounts("oomtrace").CreateToken(ctx, "oomtrace",
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return &rest.Config{Host: f.cp.URL, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAFile: f.cp.CAFile}}
}

// runningPod creates a pod bound to node and gives it the status a
// kubelet writes of a running container.
func (f *fleet) runningPod(ctx context.Context, name, node string) (*corev1.Pod, error) {
	c := f.cp.AdminClient
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app": strings.SplitN(name, "-", 2)[0]}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
			TerminationGracePeriodSeconds: new(int64(30))},
	}
	created, err := c.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	now := metav1.Now()
	created.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, QOSClass: corev1.PodQOSBestEffort, StartTime: &now,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, Image: "registry.k8s.io/pause:3.10",
			ContainerID: fmt.Sprintf("containerd://%064x", hashOf(name)), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
	}
	return c.CoreV1().Pods(namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
}

// stormPods creates the pods that step's storm evicts: stormPods on each
// of the first stormNodes nodes.
func (f *fleet) stormPods(ctx context.Context, step int) {
	f.t.Helper()
	pods := make([][]*corev1.Pod, stormNodes)
	for i := range pods {
		pods[i] = make([]*corev1.Pod, stormPods)
	}
	f.parallel("storm pods", stormNodes*stormPods, 16, func(i int) error {
		p, err := f.runningPod(ctx, fmt.Sprintf("batch-%d-%04d-%d", step, i/stormPods, i%stormPods), f.nodes[i/stormPods])
		pods[i/stormPods][i%stormPods] = p
		return err
	})
	f.stormed = append(f.stormed, pods)
}

// startAgents starts agents up to n, 50 at a time, each batch listed and
// watching before the next (a DaemonSet's rollout is gradual too).
func (f *fleet) startAgents(agents []*Agent, cfg *rest.Config, n int) []*Agent {
	f.t.Helper()
	for len(agents) < n {
		batch := min(50, n-len(agents))
		first := len(agents)
		for i := range batch {
			a, err := StartAgent(cfg, f.nodes[first+i])
			if err != nil {
				f.t.Fatalf("agent of %s: %v", f.nodes[first+i], err)
			}
			agents = append(agents, a)
		}
		deadline := time.Now().Add(5 * time.Minute)
		for _, a := range agents[first:] {
			for !a.Watcher.Synced() {
				if time.Now().After(deadline) {
					f.t.Fatalf("the agent of %s has not synced in 5 minutes", a.Node)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	return agents
}

// storm evicts stormPods pods on each of the first stormNodes nodes at
// once, as their kubelets do: MemoryPressure on the Node, the kubelet's
// EvictionThresholdMet Event about it, each pod's status Failed/Evicted
// with the DisruptionTarget condition and the kubelet's Evicted Event
// about it (no agent watches Events), and MemoryPressure back off. Every
// eviction must reach its node's agent, and no other agent; what an agent
// receives is its own node's objects only.
func (f *fleet) storm(ctx context.Context, step int, agents []*Agent) phase {
	f.t.Helper()
	c := f.cp.AdminClient
	before := f.sample(ctx, agents)
	seen := make([]int, len(agents))
	for i, a := range agents {
		seen[i] = len(a.Evictions())
	}
	begin := time.Now()
	f.parallel("memory pressure", stormNodes, 16, func(i int) error { return f.memoryPressure(ctx, f.nodes[i], true) })
	f.parallel("evictions", stormNodes*stormPods, 16, func(i int) error {
		pod := f.stormed[step][i/stormPods][i%stormPods]
		now := metav1.Now()
		msg := "The node was low on resource: memory. Threshold quantity: 100Mi, available: 71068Ki. Container app was using 1860192Ki, request is 0, has larger consumption of memory. "
		p := pod.DeepCopy()
		p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "Evicted", msg
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
			Reason: "TerminationByKubelet", Message: msg, LastTransitionTime: now})
		p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error",
			ContainerID: p.Status.ContainerStatuses[0].ContainerID, FinishedAt: now}}
		if _, err := c.CoreV1().Pods(namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			return err
		}
		_, err := c.CoreV1().Events(namespace).Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", p.Name, now.UnixNano()), Namespace: namespace},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: p.Name, UID: p.UID, APIVersion: "v1"},
			Reason:         "Evicted", Message: msg, Type: corev1.EventTypeWarning,
			Source:         corev1.EventSource{Component: "kubelet", Host: p.Spec.NodeName},
			FirstTimestamp: now, LastTimestamp: now, Count: 1,
		}, metav1.CreateOptions{})
		return err
	})
	// Every storm node's agent reports its evictions (after its 5 s
	// settle).
	deadline := time.Now().Add(2 * time.Minute)
	for i := range stormNodes {
		for len(agents[i].Evictions()) < seen[i]+stormPods {
			if time.Now().After(deadline) {
				f.t.Fatalf("the agent of %s reported %d of its %d evictions", agents[i].Node, len(agents[i].Evictions())-seen[i], stormPods)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	f.parallel("memory pressure off", stormNodes, 16, func(i int) error { return f.memoryPressure(ctx, f.nodes[i], false) })
	time.Sleep(5 * time.Second) // the last watch events on their way
	after := f.sample(ctx, agents)
	ph := phaseOf(fmt.Sprintf("%d agents, eviction storm (%d pods on %d nodes)", len(agents), stormNodes*stormPods, stormNodes), before, after, time.Since(begin))

	// Each eviction at its own node's agent, none elsewhere; an agent of
	// a node with no eviction received nothing.
	quiet := 0
	for i, a := range agents {
		got := a.Evictions()[seen[i]:]
		if i < stormNodes {
			var uids []string
			for _, e := range got {
				uids = append(uids, e.Pod.UID)
			}
			var want []string
			for _, p := range f.stormed[step][i] {
				want = append(want, string(p.UID))
			}
			slices.Sort(uids)
			slices.Sort(want)
			if !slices.Equal(uids, want) {
				f.t.Errorf("the agent of %s reported %v, want its own pods' %v", a.Node, uids, want)
			}
			continue
		}
		if len(got) != 0 {
			f.t.Errorf("the agent of %s, with no eviction, reported %s", a.Node, evictionNames(got))
		}
		// A watch renewed in the storm may have to list again (its
		// resource version left the watch cache's window): its own
		// objects, counted apart.
		if d := after.agents[i].Sub(before.agents[i]); d.Objects != 0 {
			f.t.Errorf("the agent of %s, with no eviction, received %d objects in the storm", a.Node, d.Objects)
		} else {
			quiet++
		}
	}
	// What a storm node's agent receives: its pods' status updates and its
	// Node's two MemoryPressure updates (fewer if a relist brought them).
	own := int64(stormPods + 2)
	for i := range stormNodes {
		d := after.agents[i].Sub(before.agents[i])
		if d.Objects > own || d.Lists == 0 && d.Objects != own {
			f.t.Errorf("the agent of %s received %d objects and %d relists in the storm, want its own %d", agents[i].Node, d.Objects, d.Lists, own)
		}
	}
	for i := range agents {
		if d := after.agents[i]; d.Foreign != 0 {
			f.t.Errorf("the agent of %s received %d objects of other nodes", agents[i].Node, d.Foreign)
		}
	}
	f.t.Logf("storm: %d evictions each at its own agent; %d agents of nodes without one received nothing; %d watch errors, %d relists",
		stormNodes*stormPods, quiet, ph.fleet.Errors, ph.fleet.Lists)
	return ph
}

func evictionNames(evs []event.Eviction) string {
	var names []string
	for _, e := range evs {
		names = append(names, e.Pod.Namespace+"/"+e.Pod.Name)
	}
	return strings.Join(names, ", ")
}

// memoryPressure sets the Node's MemoryPressure condition and, going on,
// writes the kubelet's EvictionThresholdMet Event about it.
func (f *fleet) memoryPressure(ctx context.Context, name string, on bool) error {
	c := f.cp.AdminClient
	node, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	for i := range node.Status.Conditions {
		cond := &node.Status.Conditions[i]
		if cond.Type != corev1.NodeMemoryPressure {
			continue
		}
		cond.Status, cond.Reason, cond.LastTransitionTime, cond.LastHeartbeatTime = corev1.ConditionFalse, "KubeletHasSufficientMemory", now, now
		if on {
			cond.Status, cond.Reason = corev1.ConditionTrue, "KubeletHasInsufficientMemory"
		}
	}
	if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil || !on {
		return err
	}
	_, err = c.CoreV1().Events("default").Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", name, now.UnixNano()), Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: name, UID: types.UID(name), APIVersion: "v1"},
		Reason:         "EvictionThresholdMet", Message: "Attempting to reclaim memory", Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "kubelet", Host: name},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}, metav1.CreateOptions{})
	return err
}

// killBurst hands killsPerNode OOM kills, in killContainers containers
// of its pods, to each storm node's Event recorder at once, and measures
// the Event writes for killWindow: a DaemonSet's pods OOM-killed on
// every node in a bad hour. Each node's writes must stay within the
// recorder's bound (a burst of 25, then one per 10 s).
func (f *fleet) killBurst(ctx context.Context, agents []*Agent) phase {
	f.t.Helper()
	before := f.sample(ctx, agents)
	begin := time.Now()
	for i := range stormNodes {
		a := agents[i]
		for k := range killsPerNode {
			pod := fmt.Sprintf("app-%04d-%d", i, k%podsPerNode)
			kill := event.OOMKill{Type: event.TypeOOMKill, Time: event.Time{Time: time.Now()}, Node: a.Node}
			kill.Victim.PID, kill.Victim.Comm = uint32(1000+k), "worker"
			kill.Victim.Pod = &event.Pod{UID: fmt.Sprintf("%016x-kill", hashOf(pod)), Name: pod, Namespace: namespace}
			kill.Victim.Container = &event.Container{Name: fmt.Sprintf("c%d", k%killContainers)}
			a.Recorder.Write(kill)
		}
	}
	time.Sleep(killWindow)
	after := f.sample(ctx, agents)
	ph := phaseOf(fmt.Sprintf("%d agents, OOM-kill burst (%d kills in %d containers on each of %d nodes, %s)", len(agents), killsPerNode, killContainers, stormNodes, killWindow),
		before, after, time.Since(begin))
	bound := int64(25 + int(math.Ceil(time.Since(begin).Seconds()/10)) + 1)
	var most int64
	for i := range stormNodes {
		d := after.agents[i].Sub(before.agents[i])
		most = max(most, d.Writes)
		if d.Writes > bound || d.Writes == 0 {
			f.t.Errorf("the agent of %s wrote %d Events and patches in %s; want some, at most %d", agents[i].Node, d.Writes, time.Since(begin).Round(time.Second), bound)
		}
	}
	// The rest of the burst waits for the nodes' bound: dropped here, so
	// that the long rest is at rest.
	var left uint64
	for i := range stormNodes {
		agents[i].Recorder.Shutdown()
		left += agents[i].Recorder.Dropped()
	}
	ph.note = fmt.Sprintf("the most writes of one node: %d (bound %d); %d Events still waiting or dropped at the end", most, bound, left)
	return ph
}

// sample is the API server's and every agent's counters at one moment.
type sample struct {
	at       time.Time
	apiCPU   float64 // seconds
	etcdCPU  float64
	rss      float64            // bytes
	heap     float64            // in use
	watchEv  map[string]float64 // by resource
	watchB   float64
	watchers float64 // WATCH requests open
	// creates: the latency of Event creates (every series of them summed)
	creates *dto.Histogram
	agents  []Snapshot
}

func (f *fleet) sample(ctx context.Context, agents []*Agent) sample {
	f.t.Helper()
	runtime.GC()
	s := sample{at: time.Now(), watchEv: map[string]float64{}}
	var err error
	if s.apiCPU, err = f.cp.CPUSeconds("kube-apiserver"); err != nil {
		f.t.Fatal(err)
	}
	if s.etcdCPU, err = f.cp.CPUSeconds("etcd"); err != nil {
		f.t.Fatal(err)
	}
	fams, err := f.cp.Metrics(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	s.rss = gauge(fams, "process_resident_memory_bytes")
	s.heap = gauge(fams, "go_memstats_heap_inuse_bytes")
	if fam := fams["apiserver_longrunning_requests"]; fam != nil {
		for _, m := range fam.Metric {
			if label(m, "verb") == "WATCH" {
				s.watchers += m.GetGauge().GetValue()
			}
		}
	}
	if fam := fams["apiserver_watch_events_total"]; fam != nil {
		for _, m := range fam.Metric {
			s.watchEv[label(m, "resource")] += m.GetCounter().GetValue()
		}
	}
	if fam := fams["apiserver_watch_events_sizes"]; fam != nil {
		for _, m := range fam.Metric {
			s.watchB += m.GetHistogram().GetSampleSum()
		}
	}
	if fam := fams["apiserver_request_duration_seconds"]; fam != nil {
		for _, m := range fam.Metric {
			if label(m, "verb") == "POST" && label(m, "group") == "events.k8s.io" && label(m, "resource") == "events" {
				s.creates = addHistogram(s.creates, m.GetHistogram())
			}
		}
	}
	for _, a := range agents {
		s.agents = append(s.agents, a.Snapshot())
	}
	return s
}

func gauge(fams map[string]*dto.MetricFamily, name string) float64 {
	var v float64
	if fam := fams[name]; fam != nil {
		for _, m := range fam.Metric {
			v += m.GetGauge().GetValue()
		}
	}
	return v
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// addHistogram sums histograms of the same buckets.
func addHistogram(sum, h *dto.Histogram) *dto.Histogram {
	if sum == nil {
		out := &dto.Histogram{SampleCount: new(h.GetSampleCount()), SampleSum: new(h.GetSampleSum())}
		for _, b := range h.Bucket {
			out.Bucket = append(out.Bucket, &dto.Bucket{UpperBound: new(b.GetUpperBound()), CumulativeCount: new(b.GetCumulativeCount())})
		}
		return out
	}
	*sum.SampleCount += h.GetSampleCount()
	*sum.SampleSum += h.GetSampleSum()
	for i, b := range h.Bucket {
		if i < len(sum.Bucket) {
			*sum.Bucket[i].CumulativeCount += b.GetCumulativeCount()
		}
	}
	return sum
}

// quantile of the observations between two cumulative histograms, by
// linear interpolation in the bucket (as histogram_quantile does); NaN
// when there were none.
func quantile(q float64, before, after *dto.Histogram) float64 {
	if after == nil {
		return math.NaN()
	}
	count := float64(after.GetSampleCount())
	if before != nil {
		count -= float64(before.GetSampleCount())
	}
	if count <= 0 {
		return math.NaN()
	}
	rank := q * count
	lower, prev := 0.0, 0.0
	for i, b := range after.Bucket {
		c := float64(b.GetCumulativeCount())
		if before != nil && i < len(before.Bucket) {
			c -= float64(before.Bucket[i].GetCumulativeCount())
		}
		if c >= rank {
			return lower + (b.GetUpperBound()-lower)*(rank-prev)/math.Max(c-prev, 1)
		}
		lower, prev = b.GetUpperBound(), c
	}
	return lower
}

// phase is what one part of the run cost.
type phase struct {
	name        string
	seconds     float64
	agents      int
	apiCPU      float64 // API server CPU seconds
	etcdCPU     float64
	rss, heap   float64            // the API server's, at the end
	watchEvents float64            // sent by the API server
	watchBy     map[string]float64 // of them, by resource
	watchBytes  float64
	watchers    float64
	fleet       Snapshot // what all agents received and sent
	mostObjects int64    // the most one agent received
	p99Create   float64  // s; NaN: none
	note        string
}

func phaseOf(name string, a, b sample, d time.Duration) phase {
	p := phase{name: name, seconds: d.Seconds(), agents: len(b.agents), apiCPU: b.apiCPU - a.apiCPU, etcdCPU: b.etcdCPU - a.etcdCPU,
		rss: b.rss, heap: b.heap, watchBytes: b.watchB - a.watchB, watchers: b.watchers,
		watchBy: map[string]float64{}, p99Create: quantile(0.99, a.creates, b.creates)}
	for k, v := range b.watchEv {
		if d := v - a.watchEv[k]; d > 0 {
			p.watchBy[k] = d
			p.watchEvents += d
		}
	}
	for i, s := range b.agents {
		var o Snapshot
		if i < len(a.agents) {
			o = a.agents[i]
		}
		d := s.Sub(o)
		p.fleet = p.fleet.Add(d)
		p.mostObjects = max(p.mostObjects, d.Objects+d.Relisted)
	}
	return p
}

// measure rests for d and says what it cost.
func (f *fleet) measure(ctx context.Context, name string, d time.Duration, agents []*Agent) phase {
	f.t.Helper()
	a := f.sample(ctx, agents)
	time.Sleep(d)
	b := f.sample(ctx, agents)
	p := phaseOf(name, a, b, d)
	f.t.Logf("%s: API server %.1f ms CPU/s, RSS %.0f MiB, %d watches; fleet %.2f requests/s, %d objects, %d watch errors, %d relists (%d objects), %d bookmarks",
		name, 1000*p.apiCPU/p.seconds, p.rss/(1<<20), int(p.watchers), float64(p.fleet.Requests)/p.seconds, p.fleet.Objects,
		p.fleet.Errors, p.fleet.Lists, p.fleet.Relisted, p.fleet.Bookmarks)
	return p
}

// table is the bench's report.
type table struct {
	lines  []string
	base   phase
	starts []phase
	rest   []phase
	storms []phase
	kills  phase
	long   phase
}

func (r *table) add(k, v string) { r.lines = append(r.lines, k+": "+v) }

func (r *table) String() string {
	var b strings.Builder
	for _, l := range r.lines {
		b.WriteString(l + "\n")
	}
	base := r.base
	baseCPU := base.apiCPU / base.seconds
	b.WriteString("\nAt rest (the API server's cost above its cost with no agent: per agent; the fleet's requests):\n")
	b.WriteString("| agents | API server CPU | per agent | RSS | per agent | heap per agent | watches | fleet requests/s | per agent | objects/agent/min | relists/agent/hour | bookmarks/agent/min |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range append(append([]phase{}, r.rest...), r.long) {
		if p.seconds == 0 {
			continue
		}
		cpu := p.apiCPU / p.seconds
		n := float64(max(p.agents, 1))
		perAgent := func(v float64) float64 {
			if p.agents == 0 {
				return math.NaN()
			}
			return v / n
		}
		fmt.Fprintf(&b, "| %d (%s) | %.1f ms/s | %.3f ms/s | %.0f MiB | %.1f KiB | %.1f KiB | %d | %.3f | %.5f | %.3f | %.3f | %.3f |\n",
			p.agents, time.Duration(p.seconds*float64(time.Second)).Round(time.Second), 1000*cpu, perAgent(1000*(cpu-baseCPU)),
			p.rss/(1<<20), perAgent((p.rss-base.rss)/1024), perAgent((p.heap-base.heap)/1024), int(p.watchers),
			float64(p.fleet.Requests)/p.seconds, perAgent(float64(p.fleet.Requests)/p.seconds),
			perAgent(float64(p.fleet.Objects+p.fleet.Relisted)/p.seconds*60), perAgent(float64(p.fleet.Lists)/p.seconds*3600),
			perAgent(float64(p.fleet.Bookmarks)/p.seconds*60))
	}
	b.WriteString("\nThe API server's memory per agent, between one size and the next (at rest; Go's heap in use, and RSS):\n")
	prevRest := base
	for _, p := range r.rest[1:] {
		if n := float64(p.agents - prevRest.agents); n > 0 {
			fmt.Fprintf(&b, "- %d to %d agents: heap %.1f KiB, RSS %.1f KiB an agent\n", prevRest.agents, p.agents,
				(p.heap-prevRest.heap)/n/1024, (p.rss-prevRest.rss)/n/1024)
		}
		prevRest = p
	}
	b.WriteString("\nStarting (per agent started: requests, objects and bytes it received, the API server's CPU):\n")
	b.WriteString("| phase | seconds | requests/agent | objects/agent | KiB/agent | API server CPU/agent |\n|---|---:|---:|---:|---:|---:|\n")
	prev := 0
	for _, p := range r.starts {
		n := float64(p.agents - prev)
		prev = p.agents
		fmt.Fprintf(&b, "| %s | %.0f | %.1f | %.1f | %.1f | %.1f ms |\n", p.name, p.seconds, float64(p.fleet.Requests)/n,
			float64(p.fleet.Objects+p.fleet.Relisted)/n, float64(p.fleet.Bytes)/n/1024, 1000*p.apiCPU/n)
	}
	b.WriteString("\nEviction storm (what the API server sent and spent; what agents received):\n")
	b.WriteString("| phase | seconds | API server CPU | etcd CPU | watch events sent (pods, nodes, events) | watch KiB sent | objects, all agents | most to one agent | bytes, all agents |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range append(append([]phase{}, r.storms...), r.kills) {
		if p.name == "" {
			continue
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.2f s | %.2f s | %.0f (%.0f, %.0f, %.0f) | %.1f | %d | %d | %.1f KiB |\n", p.name, p.seconds, p.apiCPU, p.etcdCPU,
			p.watchEvents, p.watchBy["pods"], p.watchBy["nodes"], p.watchBy["events"], p.watchBytes/1024, p.fleet.Objects+p.fleet.Relisted, p.mostObjects,
			float64(p.fleet.Bytes)/1024)
	}
	if r.kills.name != "" {
		k := r.kills
		fmt.Fprintf(&b, "\nOOM-kill burst: %d Event writes from %d nodes in %.0f s (%.2f/s a node); %s; p99 of a create %s\n",
			k.fleet.Writes, stormNodes, k.seconds, float64(k.fleet.Writes)/k.seconds/stormNodes, k.note, ms(k.p99Create))
	}
	return b.String()
}

func ms(s float64) string {
	if s == 0 || math.IsNaN(s) {
		return "-"
	}
	return fmt.Sprintf("%.0f ms", 1000*s)
}

// hashOf is a name's FNV-1a hash: ids that are stable per name.
func hashOf(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}
