// SPDX-License-Identifier: Apache-2.0

package clusterview

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
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
