// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter/kubeevents"
	"github.com/oomtrace/oomtrace/internal/cgroup"
)

// memoryMax is a cgroup's memory limit as its file says (memory.max,
// memory.limit_in_bytes on v1); 0 for none, or when it cannot be read (a
// container's cgroup may go as it is read). dir is absolute.
func memoryMax(c *Cluster, dir string) uint64 {
	n, _ := cgroup.Memory{V1: c.Runtime.Memcg.V1}.Limit(dir)
	return n
}

// childLimits are the memory limits of a cgroup's child cgroups (its
// containers' and its sandbox's, for a pod), 0 for none.
func childLimits(t *testing.T, c *Cluster, dir string) []uint64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, memoryMax(c, filepath.Join(dir, e.Name())))
		}
	}
	return out
}

// testWhoseLimit: the kernel's domain of a kill on a pod cgroup is the
// containers' limit summed there (a one-container pod: container_limit
// checks it) or a pod-level limit. A two-container pod with only a
// pod-level limit of 64 MiB: the kill says limit_source pod_spec, as the
// API's spec and the cgroups' own files show (the containers have the
// pod's limit as theirs), and the Event says the pod-level limit.
func testWhoseLimit(t *testing.T, c *Cluster, o *Oomtrace) {
	p := podSpec("shop", "duo", corev1.RestartPolicyAlways, 2,
		container{name: "app", args: []string{"hog", "200"}}, container{name: "sidecar", args: []string{"idle", "4"}})
	p.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(64*mi, resource.BinarySI)}}
	c.createPod(t, p)
	defer c.deletePod(t, "shop", "duo")
	p = c.waitPod(t, "shop", "duo", "app restarted after an OOM kill", 2*time.Minute, func(p *corev1.Pod) bool {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == "app" && cs.RestartCount >= 1 && cs.LastTerminationState.Terminated != nil {
				return true
			}
		}
		return false
	})
	if p.Spec.Resources == nil {
		t.Fatal("the API dropped spec.resources: PodLevelResources is off")
	}
	var app corev1.ContainerStatus
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "app" {
			app = cs
		}
	}
	apiSaysOOMKilled(t, c, app.LastTerminationState.Terminated, "app's last state")
	// The oracle: the pod cgroup's limit is the pod-level one, and every
	// container has it as its own (the sandbox has none).
	pod := filepath.Join(c.Runtime.Memcg.Root, c.PodCgroup(strings.ToLower(string(p.Status.QOSClass)), string(p.UID)))
	podMax, children := memoryMax(c, pod), childLimits(t, c, pod)
	t.Logf("cgroup limits: pod %d, children %v", podMax, children)
	if podMax != uint64(64*mi) {
		t.Errorf("the pod cgroup's limit is %d, want the pod-level 64 MiB", podMax)
	}
	for _, l := range children {
		if l != 0 && l != podMax {
			t.Errorf("a container's limit is %d, want the pod's %d as its own", l, podMax)
		}
	}
	id := containerID(app.LastTerminationState.Terminated.ContainerID)
	ev := o.WaitEvents(t, "the kill of "+id, 30*time.Second, func(ev Events) bool { return len(killsOf(ev, id)) > 0 })
	k := killsOf(ev, id)[0]
	t.Logf("oomtrace: %s", jsonOf(k))
	d := k.OOM.Domain
	// The pod cgroup holds the app, the sidecar and the sandbox under the
	// limit each container has as its own: it is full first.
	wantKind := event.DomainPod
	if d == nil || d.Kind != wantKind || d.LimitSource != event.LimitFromPodSpec || d.LimitBytes != uint64(64*mi) ||
		k.Victim.Pod == nil || k.Victim.Pod.MemoryLimitBytes == nil || *k.Victim.Pod.MemoryLimitBytes != uint64(64*mi) ||
		k.Victim.Container == nil || k.Victim.Container.MemoryLimitBytes != nil {
		t.Errorf("kill: domain %s pod %s container %s; want kind %s, limit_source pod_spec, 64 MiB, the pod's limit and none of the container's",
			jsonOf(d), jsonOf(k.Victim.Pod), jsonOf(k.Victim.Container), wantKind)
	}
	if n, _ := Value(o.Metrics(t), "oomtrace_container_deaths_total", map[string]string{"pod": "duo", "container": "app", "limit": event.LimitFromPodSpec}); n < 1 {
		t.Errorf("container_deaths_total{duo,app,limit=pod_spec} = %v", n)
	}
	e := c.waitKubeEvent(t, o, "shop", "duo", kubeevents.ReasonContainer)
	t.Logf("Event: %s", e.Note)
	if !strings.Contains(e.Note, "at the pod-level memory limit (spec.resources) of 64.0 MiB") {
		t.Errorf("Event note %q does not say the pod-level limit", e.Note)
	}
}

// checkContainersLimit: a one-container pod's kill on the pod cgroup (v2)
// says limit_source containers, which the cgroups' files prove (the pod's
// limit is its children's limits summed), and the Event says it was the
// container's limit; on v1 the container's cgroup is the domain.
func checkContainersLimit(t *testing.T, c *Cluster, p *corev1.Pod, k event.OOMKill, note string) {
	t.Helper()
	d := k.OOM.Domain
	if c.Runtime.Memcg.V1 {
		if d.LimitSource != event.LimitFromContainer {
			t.Errorf("limit_source %q, want container", d.LimitSource)
		}
		return
	}
	// The crash-looping container's cgroup lives a second at each start:
	// read the pod's children while it is there.
	pod := filepath.Join(c.Runtime.Memcg.Root, c.PodCgroup(strings.ToLower(string(p.Status.QOSClass)), string(p.UID)))
	var podMax, sum uint64
	var children []uint64
	for deadline := time.Now().Add(Patience(2 * time.Minute)); sum == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		podMax, children = memoryMax(c, pod), childLimits(t, c, pod)
		for _, l := range children {
			sum += l
		}
	}
	t.Logf("cgroup limits: pod %d, children %v", podMax, children)
	if podMax != sum || d.LimitSource != event.LimitFromContainers || d.LimitBytes != podMax {
		t.Errorf("domain %s; the pod cgroup's limit %d, its children's %v: want limit_source containers and the pod's limit the children's sum", jsonOf(d), podMax, children)
	}
	if !strings.Contains(note, "at container redis's memory limit of 64.0 MiB, enforced on the pod cgroup") {
		t.Errorf("Event note %q does not say the container's limit", note)
	}
}

// testLimitLowered: a container's limit lowered below what it holds, as
// an in-place resize or a VPA does, through CRI UpdateContainerResources
// (which the kubelet's best-effort check does not stand in front of):
// the kernel kills from the writer's context (the runtime, or systemd
// for the systemd driver's unit property). The kill says forced_by
// limit_write, the container as the domain at its new limit, and a
// trigger outside it. cgroup v2 only: v1 refuses such a write.
func testLimitLowered(t *testing.T, c *Cluster, o *Oomtrace) {
	begin := time.Now()
	c.createPod(t, podSpec("shop", "shrunk", corev1.RestartPolicyNever, 2, container{name: "app", args: []string{"idle", "200"}, limit: 256 * mi}))
	defer c.deletePod(t, "shop", "shrunk")
	p := c.waitPod(t, "shop", "shrunk", "running", time.Minute, running)
	id := containerID(p.Status.ContainerStatuses[0].ContainerID)
	dir := containerCgroup(t, c, id)
	for deadline := time.Now().Add(Patience(time.Minute)); readUint(t, dir, false) < uint64(200*mi); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the container holds %d bytes, not 200 MiB", readUint(t, dir, false))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), Patience(time.Minute))
	defer cancel()
	_, err := c.Runtime.CRI.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: id, Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 * mi},
	})
	t.Logf("UpdateContainerResources to 128 MiB: %v", err)
	ev := o.WaitEvents(t, "the kill of "+id, Patience(time.Minute), func(ev Events) bool { return len(killsOf(ev.Since(begin), id)) > 0 })
	k := killsOf(ev.Since(begin), id)[0]
	t.Logf("oomtrace: %s", jsonOf(k))
	d := k.OOM.Domain
	if k.OOM.ForcedBy != event.ForcedByLimitWrite || d == nil || d.Kind != event.DomainContainer || d.LimitBytes != uint64(128*mi) {
		t.Errorf("kill: forced_by %q domain %s; want limit_write, the container at 128 MiB", k.OOM.ForcedBy, jsonOf(d))
	}
	// The spec still says 256 MiB: the line shows it beside the limit the
	// kernel enforced, as when a resize is half applied.
	if ctr := k.Victim.Container; ctr == nil || ctr.MemoryLimitBytes == nil || *ctr.MemoryLimitBytes != uint64(256*mi) {
		t.Errorf("container %s: want the spec's limit, 256 MiB", jsonOf(ctr))
	}
	if tm := k.Trigger.Memcg; tm == nil || d == nil || d.Cgroup == nil || strings.HasPrefix(tm.Path+"/", d.Path+"/") {
		t.Errorf("trigger %s in %s: want a writer outside the domain", k.Trigger.Comm, jsonOf(tm))
	}
	e := c.waitKubeEvent(t, o, "shop", "shrunk", kubeevents.ReasonContainer)
	t.Logf("Event: %s", e.Note)
	if !strings.Contains(e.Note, "the limit had just been lowered below the usage") {
		t.Errorf("Event note %q does not say the limit was lowered", e.Note)
	}
}

// testSwapAndMemoryHigh (the systemd node's phase with swap): the
// kubelet with LimitedSwap and a memoryThrottlingFactor gives a Burstable
// container memory.swap.max in proportion to its request and a
// memory.high between its request and limit. Its kill (memory and its
// swap both full) carries the container's swap usage and limit and its
// memory.high as the files say, and the Event says the swap.
func testSwapAndMemoryHigh(t *testing.T, c *Cluster, o *Oomtrace) {
	begin := time.Now()
	c.createPod(t, podSpec("shop", "swapper", corev1.RestartPolicyNever, 2,
		container{name: "app", args: []string{"hog", "400", "3000"}, request: 64 * mi, limit: 128 * mi}))
	defer c.deletePod(t, "shop", "swapper")
	p := c.waitPod(t, "shop", "swapper", "running", time.Minute, func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].ContainerID != ""
	})
	id := containerID(p.Status.ContainerStatuses[0].ContainerID)
	dir := containerCgroup(t, c, id)
	files := map[string]uint64{}
	for _, name := range []string{"memory.swap.max", "memory.high"} {
		files[name] = memoryFile(t, dir, name)
	}
	t.Logf("the container's memory.swap.max %d, memory.high %d", files["memory.swap.max"], files["memory.high"])
	if files["memory.swap.max"] == 0 || files["memory.high"] == 0 {
		t.Fatalf("the kubelet gave the container no swap or no memory.high: %v", files)
	}
	// The domain (the pod cgroup, at the containers' sum) holds more swap
	// than the container: its swap as read until the kill is the oracle.
	pod := filepath.Join(c.Runtime.Memcg.Root, c.PodCgroup(strings.ToLower(string(p.Status.QOSClass)), string(p.UID)))
	var podSwap atomic.Uint64
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			if n, ok := (cgroup.Memory{}).Swap(pod); ok && n > podSwap.Load() {
				podSwap.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	ev := o.WaitEvents(t, "the kill of "+id, Patience(3*time.Minute), func(ev Events) bool { return len(killsOf(ev.Since(begin), id)) > 0 })
	close(stop)
	<-polled
	k := killsOf(ev.Since(begin), id)[0]
	t.Logf("oomtrace: %s", jsonOf(k))
	t.Logf("the pod cgroup's memory.swap.current at most %d before the kill", podSwap.Load())
	m := k.Victim.MemcgMemory
	near := func(got *uint64, want uint64) bool {
		return got != nil && *got+2<<20 >= want && *got <= want+2<<20
	}
	if m == nil || !near(m.SwapLimitBytes, files["memory.swap.max"]) || !near(m.SwapUsageBytes, files["memory.swap.max"]) ||
		m.HighBytes == nil || *m.HighBytes != files["memory.high"] {
		t.Errorf("victim.memcg_memory %s; want swap usage and limit within 2 MiB of memory.swap.max %d, high %d", jsonOf(m), files["memory.swap.max"], files["memory.high"])
	}
	if d := k.OOM.Domain; d == nil || !near(d.SwapUsageBytes, podSwap.Load()) {
		t.Errorf("domain %s: want its swap usage within 2 MiB of the pod cgroup's memory.swap.current, %d", jsonOf(d), podSwap.Load())
	}
	if r := k.Victim.RSS; r == nil || r.Swap == nil || *r.Swap == 0 {
		t.Errorf("victim.rss_bytes %s: want swapped-out bytes", jsonOf(r))
	}
	e := c.waitKubeEvent(t, o, "shop", "swapper", kubeevents.ReasonContainer)
	t.Logf("Event: %s", e.Note)
	if !strings.Contains(e.Note, "in swap") || !strings.Contains(e.Note, "swapped out") {
		t.Errorf("Event note %q does not say the swap", e.Note)
	}
}

// memoryFile reads a memory cgroup file of one number ("max": 0).
func memoryFile(t *testing.T, dir, name string) uint64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s/%s: %v", dir, name, err)
	}
	return n
}
