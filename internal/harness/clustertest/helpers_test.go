// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/oomtrace/oomtrace/internal/harness/critest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
	"github.com/oomtrace/oomtrace/internal/kernfile"
)

const mi = int64(1) << 20

// imageUnderTest is oomtrace's image and its archive, from make
// test-cluster; the test skips (fails under OOMTRACE_REQUIRE_PRIVILEGED=1)
// without them.
func imageUnderTest(t *testing.T) (name, archive string) {
	t.Helper()
	name, archive = os.Getenv(ImageEnv), os.Getenv(ImageArchiveEnv)
	if name == "" || archive == "" {
		msg := ImageEnv + " and " + ImageArchiveEnv + " are not set (make test-cluster builds the image and sets them)"
		if os.Getenv(testenv.RequireEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return name, archive
}

// memTotal is the node's memory capacity as the kubelet sees it.
func memTotal(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	mi, err := kernfile.ParseMeminfo(b)
	if err != nil {
		t.Fatal(err)
	}
	return int64(mi["MemTotal"])
}

// container is a test container: ctrbin with its arguments.
type container struct {
	name    string
	args    []string
	limit   int64 // memory limit in bytes; 0: none
	request int64 // memory request in bytes; 0: none
}

// podSpec is a host-network pod of ctrbin containers on the node, the way
// a scheduler would have placed it (no CNI here, no scheduler needed).
func podSpec(ns, name string, restart corev1.RestartPolicy, grace int64, ctrs ...container) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName: NodeName, HostNetwork: true, AutomountServiceAccountToken: new(bool),
			RestartPolicy: restart, TerminationGracePeriodSeconds: &grace,
		},
	}
	for _, c := range ctrs {
		ctr := corev1.Container{Name: c.name, Image: critest.Image, ImagePullPolicy: corev1.PullNever,
			Command: []string{"/ctrbin"}, Args: c.args}
		if c.limit > 0 {
			q := *resource.NewQuantity(c.limit, resource.BinarySI)
			ctr.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: q}
		}
		if c.request > 0 {
			q := *resource.NewQuantity(c.request, resource.BinarySI)
			ctr.Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: q}
		}
		p.Spec.Containers = append(p.Spec.Containers, ctr)
	}
	return p
}

// ofDeployment makes p a pod of the Deployment of its name: its
// ReplicaSet owns it (no controller runs them here: the reference is
// written as the ReplicaSet would).
func ofDeployment(p *corev1.Pod, hash string) *corev1.Pod {
	p.Labels["pod-template-hash"] = hash
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: p.Name + "-" + hash,
		UID: types.UID("00000000-0000-4000-8000-" + fmt.Sprintf("%012x", []byte(p.Name)[:min(len(p.Name), 6)])), Controller: new(true)}}
	return p
}

func (c *Cluster) createPod(t *testing.T, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := c.Client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	return got
}

// waitPod polls a pod until ok says so.
func (c *Cluster) waitPod(t *testing.T, ns, name, what string, timeout time.Duration, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	timeout = Patience(timeout)
	deadline := time.Now().Add(timeout)
	for {
		p, err := c.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s/%s: not %s in %v: %+v %v", ns, name, what, timeout, podStatus(p), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func podStatus(p *corev1.Pod) any {
	if p == nil {
		return nil
	}
	return p.Status
}

func running(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running == nil {
			return false
		}
	}
	return true
}

func (c *Cluster) deletePod(t *testing.T, ns, name string) {
	t.Helper()
	zero := int64(0)
	_ = c.Client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	c.waitGone(t, ns, name)
}

func (c *Cluster) waitGone(t *testing.T, ns, name string) {
	t.Helper()
	deadline := time.Now().Add(Patience(60 * time.Second))
	for {
		_, err := c.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil && strings.Contains(err.Error(), "not found") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s/%s not gone: %v", ns, name, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// containerID is a container's id without the runtime's scheme.
func containerID(s string) string {
	_, id, _ := strings.Cut(s, "://")
	return id
}

// within says whether a and b differ by at most frac of b.
func within(a, b int64, frac float64) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	if b < 0 {
		b = -b
	}
	return float64(d) <= frac*float64(b)
}

// waitKubeEvent waits for an events.k8s.io Event with reason on the pod.
// waitKubeEventSeries waits until the pod has one Event of reason whose
// series counts count kills, and fails if it has more than one.
func (c *Cluster) waitKubeEventSeries(t *testing.T, o *Oomtrace, ns, pod, reason string, count int32) eventsv1.Event {
	t.Helper()
	deadline := time.Now().Add(Patience(90 * time.Second))
	for {
		list, err := c.Client.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{
			FieldSelector: "regarding.name=" + pod + ",reason=" + reason})
		if err == nil && len(list.Items) > 1 {
			t.Fatalf("%d Events %s on pod %s/%s, want one with a series: %s", len(list.Items), reason, ns, pod, jsonOf(list.Items))
		}
		if err == nil && len(list.Items) == 1 && list.Items[0].Series != nil && list.Items[0].Series.Count >= count {
			return list.Items[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Event %s on pod %s/%s with a series of %d (%v: %s); oomtrace's log:\n%s", reason, ns, pod, count, err, jsonOf(list), tail(o.Logs(t), 20))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (c *Cluster) waitKubeEvent(t *testing.T, o *Oomtrace, ns, pod, reason string) eventsv1.Event {
	t.Helper()
	deadline := time.Now().Add(Patience(30 * time.Second))
	for {
		list, err := c.Client.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{
			FieldSelector: "regarding.name=" + pod + ",reason=" + reason})
		if err == nil && len(list.Items) > 0 {
			return list.Items[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Event %s on pod %s/%s in 30 s (%v); oomtrace's log:\n%s", reason, ns, pod, err, tail(o.Logs(t), 20))
		}
		time.Sleep(250 * time.Millisecond)
	}
}
