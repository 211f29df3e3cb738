// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// TestHarnessRunsPods: the cluster alone (no image needed) runs a pod the
// kubelet got from the API server.
func TestHarnessRunsPods(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := Start(t, KubeletConfig{})
	c.Namespace(t, "shop")
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "idle", Namespace: "shop"},
		Spec: corev1.PodSpec{NodeName: NodeName, HostNetwork: true, AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{Name: "app", Image: "docker.io/oomtrace/ctrbin:test", ImagePullPolicy: corev1.PullNever,
				Command: []string{"/ctrbin"}, Args: []string{"idle", "8"}}}},
	}
	if _, err := c.Client.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(Patience(60 * time.Second))
	for {
		p, err := c.Client.CoreV1().Pods("shop").Get(ctx, "idle", metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			t.Logf("running: %+v", p.Status.ContainerStatuses)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod not running: %+v %v\n%s", p.Status, err, tail(c.Log("kubelet"), 50))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
