// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// testPodLimitLoweredByResize: the pod-level limit lowered through the
// API's resize subresource, as VPA's in-place mode does, while the pod's
// usage rises past it. The kubelet checks a decrease against the pod's
// usage as its stats provider last read it (cAdvisor's, every 10 to 15 s)
// and the containers' usage only for the containers whose own limit
// falls; here theirs stay. Usage that rose since the last read passes the
// check (the KEP calls it TOCTOU), and the kernel kills from the writer
// of the pod cgroup's memory.max (the kubelet, or systemd for the systemd
// driver's slice). The kill says forced_by limit_write, the pod as the
// domain at the new limit, and the spec's pod-level limit beside it.
// cgroup v2 only: v1 refuses a limit below usage. The check reads fresh
// stats at times: a refused resize is tried again with a new pod.
func testPodLimitLoweredByResize(t *testing.T, c *Cluster, o *Oomtrace) {
	const attempts = 3
	for attempt := 1; attempt <= attempts; attempt++ {
		name := fmt.Sprintf("lowered-%d", attempt)
		refused, ok := lowerPodLimit(t, c, o, name)
		if ok || t.Failed() {
			return
		}
		t.Logf("attempt %d: the kubelet refused the resize: %s", attempt, refused)
	}
	t.Errorf("the kubelet refused all %d resizes: its stats were fresh each time", attempts)
}

// lowerPodLimit is one attempt of testPodLimitLoweredByResize, with pod
// name: false and the kubelet's message when it refused the resize.
func lowerPodLimit(t *testing.T, c *Cluster, o *Oomtrace, name string) (string, bool) {
	begin := time.Now()
	p := podSpec("shop", name, corev1.RestartPolicyNever, 2,
		container{name: "a", args: []string{"armed", "96"}, request: 16 * mi, limit: 112 * mi},
		container{name: "b", args: []string{"armed", "96"}, request: 16 * mi, limit: 112 * mi})
	p.Spec.Resources = &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(64*mi, resource.BinarySI)},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(256*mi, resource.BinarySI)},
	}
	c.createPod(t, p)
	defer c.deletePod(t, "shop", name)
	p = c.waitPod(t, "shop", name, "running", time.Minute, running)
	podDir := filepath.Join(c.Runtime.Memcg.Root, c.PodCgroup(strings.ToLower(string(p.Status.QOSClass)), string(p.UID)))
	if got := memoryMax(c, podDir); got != uint64(256*mi) {
		t.Fatalf("the pod cgroup's limit is %d, not the pod-level 256 MiB", got)
	}
	c.waitStats(t, "shop", name)
	// Right after the stats provider reads the pod cgroup, both
	// containers take 96 MiB (192 MiB: under 256, over 128) and the
	// resize is sent, all before its next read.
	statsTime := func() string {
		for _, ps := range c.summary(t).Pods {
			if ps.PodRef.Namespace == "shop" && ps.PodRef.Name == name && ps.Memory != nil {
				return ps.Memory.Time
			}
		}
		return ""
	}
	for last, deadline := statsTime(), time.Now().Add(Patience(time.Minute)); statsTime() == last; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the kubelet's stats of %s were not read again in %v", name, Patience(time.Minute))
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		for _, pid := range procsOf(t, containerCgroup(t, c, containerID(cs.ContainerID))) {
			if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
				t.Fatalf("fire container %s (pid %d): %v", cs.Name, pid, err)
			}
		}
	}
	for deadline := time.Now().Add(Patience(10 * time.Second)); readUint(t, podDir, false) < uint64(190*mi); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pod holds %d bytes, not 192 MiB", readUint(t, podDir, false))
		}
	}
	lower := p.DeepCopy()
	lower.Spec.Resources.Limits[corev1.ResourceMemory] = *resource.NewQuantity(128*mi, resource.BinarySI)
	if _, err := c.Client.CoreV1().Pods("shop").UpdateResize(context.Background(), name, lower, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("resize %s to a 128 MiB pod limit: %v", name, err)
	}
	t.Logf("resized the pod-level limit to 128 MiB while the pod holds %d MiB", readUint(t, podDir, false)>>20)
	var refused string
	deadline := time.Now().Add(Patience(time.Minute))
	for len(killsInPod(o.Events(t).Since(begin), name)) == 0 {
		got, err := c.Client.CoreV1().Pods("shop").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			for _, cond := range got.Status.Conditions {
				if cond.Type == corev1.PodResizeInProgress && cond.Reason == corev1.PodReasonError && strings.Contains(cond.Message, "cannot decrease memory limits") {
					refused = cond.Message
				}
			}
		}
		if refused != "" {
			return refused, false
		}
		if time.Now().After(deadline) {
			t.Fatalf("no kill in %s and no refusal of its resize in %v", name, Patience(time.Minute))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The rest of the group's lines come with the first.
	time.Sleep(time.Second)
	k := killsInPod(o.Events(t).Since(begin), name)[0]
	t.Logf("oomtrace: %s", jsonOf(k))
	d := k.OOM.Domain
	if k.OOM.ForcedBy != event.ForcedByLimitWrite || d == nil || d.Kind != event.DomainPod || d.LimitBytes != uint64(128*mi) {
		t.Errorf("kill: forced_by %q domain %s; want limit_write, the pod at 128 MiB", k.OOM.ForcedBy, jsonOf(d))
	}
	if d != nil && d.LimitSource != event.LimitFromPodSpec {
		t.Errorf("domain limit_source %q, want %q", d.LimitSource, event.LimitFromPodSpec)
	}
	if tm := k.Trigger.Memcg; tm == nil || d == nil || d.Cgroup == nil || strings.HasPrefix(tm.Path+"/", d.Path+"/") {
		t.Errorf("trigger %s in %s: want the writer, outside the pod", k.Trigger.Comm, jsonOf(tm))
	}
	if vp := k.Victim.Pod; vp == nil || vp.MemoryLimitBytes == nil || *vp.MemoryLimitBytes != uint64(128*mi) {
		t.Errorf("victim.pod %s: want the resized spec's pod-level limit, 128 MiB", jsonOf(vp))
	}
	e := c.waitKubeEvent(t, o, "shop", name, kubeevents.ReasonContainer)
	t.Logf("Event: %s", e.Note)
	if !strings.Contains(e.Note, "the limit had just been lowered below the usage") {
		t.Errorf("Event note %q does not say the limit was lowered", e.Note)
	}
	return "", true
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
	for _, name := range []string{"memory.swap.max", "memory.high", "memory.low"} {
		files[name] = memoryFile(t, dir, name)
	}
	t.Logf("the container's memory.swap.max %d, memory.high %d, memory.low %d", files["memory.swap.max"], files["memory.high"], files["memory.low"])
	if files["memory.swap.max"] == 0 || files["memory.high"] == 0 || files["memory.low"] != uint64(64*mi) {
		t.Fatalf("the kubelet gave the container no swap, no memory.high or not its request as memory.low: %v", files)
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
		m.HighBytes == nil || *m.HighBytes != files["memory.high"] || m.LowBytes == nil || *m.LowBytes != files["memory.low"] {
		t.Errorf("victim.memcg_memory %s; want swap usage and limit within 2 MiB of memory.swap.max %d, high %d, low %d",
			jsonOf(m), files["memory.swap.max"], files["memory.high"], files["memory.low"])
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

// testMemoryReservation (the systemd node's phase with MemoryQoS): with
// TieredReservation the kubelet protects a Guaranteed container's memory
// up to its request, which is its limit: memory.min equals memory.max,
// and none of its page cache can be reclaimed for the pod (the KEP's
// warning). Its kill carries the container's and the domain's memory.min
// as their files say.
func testMemoryReservation(t *testing.T, c *Cluster, o *Oomtrace) {
	begin := time.Now()
	spec := podSpec("shop", "reserved", corev1.RestartPolicyNever, 2,
		container{name: "app", args: []string{"hog", "200", "3000"}, request: 64 * mi, limit: 64 * mi})
	// Guaranteed: CPU's request and limit equal too.
	cpu := resource.MustParse("100m")
	spec.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = cpu
	spec.Spec.Containers[0].Resources.Limits[corev1.ResourceCPU] = cpu
	c.createPod(t, spec)
	defer c.deletePod(t, "shop", "reserved")
	p := c.waitPod(t, "shop", "reserved", "running", time.Minute, func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].ContainerID != ""
	})
	if p.Status.QOSClass != corev1.PodQOSGuaranteed {
		t.Fatalf("pod reserved is %s, not Guaranteed", p.Status.QOSClass)
	}
	id := containerID(p.Status.ContainerStatuses[0].ContainerID)
	ctrMin := memoryFile(t, containerCgroup(t, c, id), "memory.min")
	pod := filepath.Join(c.Runtime.Memcg.Root, c.PodCgroup(strings.ToLower(string(p.Status.QOSClass)), string(p.UID)))
	podMin := memoryFile(t, pod, "memory.min")
	t.Logf("memory.min: the container's %d, the pod's %d", ctrMin, podMin)
	if ctrMin != uint64(64*mi) {
		t.Fatalf("the container's memory.min is %d, not its request (64 MiB)", ctrMin)
	}
	ev := o.WaitEvents(t, "the kill of "+id, Patience(time.Minute), func(ev Events) bool { return len(killsOf(ev.Since(begin), id)) > 0 })
	k := killsOf(ev.Since(begin), id)[0]
	t.Logf("oomtrace: %s", jsonOf(k))
	if m := k.Victim.MemcgMemory; m == nil || m.MinBytes == nil || *m.MinBytes != ctrMin || m.LimitBytes == nil || *m.LimitBytes != ctrMin {
		t.Errorf("victim.memcg_memory %s: want memory.min %d, equal to its limit", jsonOf(m), ctrMin)
	}
	if d := k.OOM.Domain; d == nil || d.MinBytes == nil || *d.MinBytes != podMin && *d.MinBytes != ctrMin {
		t.Errorf("domain %s: want its memory.min, %d (the pod's) or %d (the container's)", jsonOf(d), podMin, ctrMin)
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
