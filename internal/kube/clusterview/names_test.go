// SPDX-License-Identifier: Apache-2.0

package clusterview

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/oomtrace/oomtrace/internal/cri"
)

// TestLookup: containers are named from the kubelet's status of this
// node's pods (regular, init and ephemeral containers, a restarted
// container's previous id), with the pod's name, namespace and labels;
// a container of a pod on another node, an id no status names and a
// status without an id are not.
func TestLookup(t *testing.T) {
	status := func(name, id string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, ContainerID: id}
	}
	web := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "uid-web", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{
			InitContainerStatuses: []corev1.ContainerStatus{status("migrate", "containerd://init1")},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", ContainerID: "containerd://app2", LastTerminationState: corev1.ContainerState{
					Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://app1", Reason: "OOMKilled"}}},
				status("starting", ""),
			},
			EphemeralContainerStatuses: []corev1.ContainerStatus{status("debugger", "cri-o://eph1")},
		},
	}
	elsewhere := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop", UID: "uid-db"},
		Spec:       corev1.PodSpec{NodeName: "node-b"},
		Status:     corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{status("db", "containerd://db1")}},
	}
	cs := fake.NewClientset(web, elsewhere)
	_, w := startUnsynced(t, cs, nil)
	deadline := time.Now().Add(10 * time.Second)
	for !w.Synced() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	pod := func(name, runtime string) cri.Container {
		return cri.Container{Name: name, Runtime: runtime, PodUID: "uid-web", PodName: "web", PodNamespace: "shop", PodLabels: map[string]string{"app": "web"}}
	}
	for id, want := range map[string]*cri.Container{
		"init1": new(pod("migrate", "containerd")),
		"app2":  new(pod("app", "containerd")),
		"app1":  new(pod("app", "containerd")),
		"eph1":  new(pod("debugger", "cri-o")),
		"db1":   nil,
		"nope":  nil,
		"":      nil,
	} {
		got, ok := w.Lookup(context.Background(), id, time.Now())
		switch {
		case want == nil && ok:
			t.Errorf("%q: named %+v, want not known", id, got)
		case want != nil && !ok:
			t.Errorf("%q: not known, want %+v", id, *want)
		case want != nil:
			want.ID = id
			if got.ID != want.ID || got.Name != want.Name || got.Runtime != want.Runtime || got.PodUID != want.PodUID ||
				got.PodName != want.PodName || got.PodNamespace != want.PodNamespace || got.PodLabels["app"] != "web" || got.Sandbox {
				t.Errorf("%q: %+v, want %+v", id, got, *want)
			}
		}
	}
}

// TestMemoryLimits: what the kubelet makes a pod cgroup's limit, from a
// slimmed pod (so the slimming keeps what it needs): the containers' sum
// with sidecars, the largest init container when more, none when one
// container has no limit; the pod-level limit; the applied one from the
// status, and a resize in progress.
func TestMemoryLimits(t *testing.T) {
	mi := func(n int64) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: *resource.NewQuantity(n<<20, resource.BinarySI)},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
	}
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u"},
		Spec: corev1.PodSpec{
			Containers:     []corev1.Container{{Name: "app", Resources: mi(64), Image: "big"}, {Name: "log", Resources: mi(16)}},
			InitContainers: []corev1.Container{{Name: "migrate", Resources: mi(200)}, {Name: "proxy", Resources: mi(8), RestartPolicy: &always}},
		},
		Status: corev1.PodStatus{
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Resources: new(mi(48))}},
			Conditions:        []corev1.PodCondition{{Type: corev1.PodResizeInProgress, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}},
		},
	}
	slim := func(p *corev1.Pod) *corev1.Pod {
		out, err := slimPod(p.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		return out.(*corev1.Pod)
	}
	u := func(p *uint64) any {
		if p == nil {
			return nil
		}
		return *p >> 20
	}
	var c cri.Container
	s := slim(pod)
	memoryLimits(&c, s, s.Status.ContainerStatuses[0])
	if u(c.MemoryLimit) != uint64(64) || u(c.StatusMemoryLimit) != uint64(48) || c.PodMemoryLimit != nil || u(c.ContainersMemoryLimit) != uint64(200) || !c.ResizeInProgress {
		t.Errorf("init container larger: own %v status %v pod %v containers %v resize %v", u(c.MemoryLimit), u(c.StatusMemoryLimit), u(c.PodMemoryLimit), u(c.ContainersMemoryLimit), c.ResizeInProgress)
	}
	pod.Spec.InitContainers[0].Resources = mi(50)
	c = cri.Container{}
	s = slim(pod)
	memoryLimits(&c, s, corev1.ContainerStatus{Name: "app"})
	if u(c.ContainersMemoryLimit) != uint64(64+16+8) {
		t.Errorf("containers and a sidecar: %v MiB, want 88", u(c.ContainersMemoryLimit))
	}
	pod.Spec.Containers[1].Resources = corev1.ResourceRequirements{}
	pod.Spec.Resources = new(mi(128))
	c = cri.Container{}
	s = slim(pod)
	memoryLimits(&c, s, corev1.ContainerStatus{Name: "app"})
	if c.ContainersMemoryLimit != nil || u(c.PodMemoryLimit) != uint64(128) || s.Spec.Containers[0].Image != "" {
		t.Errorf("a container without a limit, a pod-level one: containers %v pod %v", u(c.ContainersMemoryLimit), u(c.PodMemoryLimit))
	}
}

// TestMemoryLimitsByPod: a pod's limits are known from its spec before
// the kubelet writes any container status (a container killed in its
// first second); a pod of another node or unknown is not.
func TestMemoryLimitsByPod(t *testing.T) {
	limit := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}
	duo := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "duo", Namespace: "shop", UID: "uid-duo"},
		Spec:       corev1.PodSpec{NodeName: node, Resources: &limit, Containers: []corev1.Container{{Name: "app"}, {Name: "sidecar"}}},
	}
	elsewhere := duo.DeepCopy()
	elsewhere.UID, elsewhere.Name, elsewhere.Spec.NodeName = "uid-other", "other", "node-b"
	_, w := startUnsynced(t, fake.NewClientset(duo, elsewhere), nil)
	for deadline := time.Now().Add(10 * time.Second); !w.Synced() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	c := cri.Container{Name: "app", PodUID: "uid-duo"}
	if !w.MemoryLimits(&c) || c.PodMemoryLimit == nil || *c.PodMemoryLimit != 64<<20 || c.MemoryLimit != nil || c.ContainersMemoryLimit != nil {
		t.Errorf("duo's app: %+v", c)
	}
	for _, uid := range []string{"uid-other", "uid-none", ""} {
		if c := (cri.Container{Name: "app", PodUID: uid}); w.MemoryLimits(&c) {
			t.Errorf("pod %q: limits %+v", uid, c)
		}
	}
}

// The enricher asks the cluster view for a runtime-named container's
// limits through this method (enrich.LimitResolver).
var _ interface{ MemoryLimits(*cri.Container) bool } = (*Watcher)(nil)
