// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter"
	"github.com/oomtrace/oomtrace/exporter/kubeevents"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
	dto "github.com/prometheus/client_model/go"
)

// hostileComm is what the tenant names its processes: a newline and a
// terminal escape, for a log or a note read in a terminal.
const hostileComm = "x\n\x1b[2Jroot"

// refusalProcs is how many processes of the tenant's are refused memory.
const refusalProcs = 1000

// sum adds the counters of every series of fam with these labels.
func sum(fams map[string]*dto.MetricFamily, fam string, labels map[string]string) int {
	total := 0.0
	for _, m := range Series(fams, fam, labels) {
		total += m.GetCounter().GetValue()
	}
	return int(total)
}

// tenantNamespace is the hostile tenant's: it may create pods and Events
// there, and nothing else anywhere.
const tenantNamespace = "tenant"

// tenantClient is the API as a tenant user sees it (impersonated, with a
// Role that grants pods and Events in its own namespace only): what it
// writes the API server accepts from any such user.
func (c *Cluster) tenantClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	ctx := context.Background()
	c.Namespace(t, tenantNamespace)
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "tenant", Namespace: tenantNamespace}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "events"}, Verbs: []string{"create", "get", "list", "delete"}},
		{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create"}},
	}}
	if _, err := c.Client.RbacV1().Roles(tenantNamespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "tenant", Namespace: tenantNamespace},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "tenant"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "tenant"}}}
	if _, err := c.Client.RbacV1().RoleBindings(tenantNamespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "tenant"}
	tc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// RBAC takes a moment to see the binding.
	deadline := time.Now().Add(Patience(30 * time.Second))
	for {
		_, err := tc.CoreV1().Pods(tenantNamespace).List(ctx, metav1.ListOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tenant cannot list its own pods: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := tc.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("the tenant can read another namespace: the scenario would not be a tenant's")
	}
	return tc
}

// livenessRestartsAfter: the shipped liveness probe's period times the
// kubelet's default failure threshold, how long failing probes take to
// restart the agent.
const livenessRestartsAfter = 3 * 30 * time.Second

// testHostileTenant: what a tenant controls, used against the agent. As a
// user who may create pods and Events in its own namespace only:
//   - 60 forged Evicted Events with the kubelet's source and this node's
//     host, 1 MiB of message each, about its own running pod (a real pod
//     of this node) and about pods that never existed;
//   - a pod with 8,000 labels (about 0.7 MiB) OOM-killed at its limit, its
//     process named with a newline and a terminal escape;
//   - a refusal storm: 1,000 processes one after another, each refused a
//     mapping once (each a key of its own to aggregate);
//   - 1,000 idle connections to the agent's metrics port, and every one of
//     its 64 slots held by kept-alive connections that repeat a request.
//
// (Nested cgroups below a container need a runtime that lets a container
// write its cgroup, which this node's containerd on cgroup v1 does not:
// tracer.TestDeepCgroupKeepsRootMostLevels covers the kernel's half.)
//
// The agent reports no eviction, stays below half
// its memory limit (it read none of the Events), names the fat
// pod's kill right with its labels cut and its name escaped, writes its
// Event on that pod only with the name stripped of control characters,
// counts every refusal of the storm under the right pod, answers every
// scrape during the flood and the held connections, and is never restarted.
func testHostileTenant(t *testing.T, c *Cluster, o *Oomtrace) {
	ctx := context.Background()
	tc := c.tenantClient(t)
	restarts := o.Restarts(t)
	defer func() {
		if n := o.Restarts(t); n != restarts {
			t.Errorf("oomtrace's container restarted %d times during the tenant's attack", n-restarts)
		}
	}()
	rssBefore, _ := Value(o.Metrics(t), "process_resident_memory_bytes", nil)

	// Every slot of the metrics port held by kept-alive connections that
	// repeat a request every 50 s, through the whole scenario: every scrape
	// below is answered meanwhile, and the kubelet's probes (their own port
	// on 127.0.0.1) never fail. Held at least as long as the liveness
	// probe takes to restart an agent whose probes fail (3 x 30 s).
	heldSince := time.Now()
	testenv.HoldConnections(t, &net.Dialer{Timeout: 5 * time.Second}, NodeIP+":9808", exporter.MaxConnections, 50*time.Second)
	defer func() {
		if wait := livenessRestartsAfter + 10*time.Second - time.Since(heldSince); wait > 0 {
			time.Sleep(wait)
		}
		client := &http.Client{Timeout: 2 * time.Second}
		for i := range 3 {
			resp, err := client.Get("http://" + NodeIP + ":9808/metrics")
			if err != nil {
				t.Errorf("scrape %d while the tenant holds the metrics port's connections: %v", i+1, err)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		t.Logf("the tenant held %d kept-alive connections to the metrics port for %v", exporter.MaxConnections, time.Since(heldSince).Round(time.Second))
	}()

	victim := podSpec(tenantNamespace, "victim", corev1.RestartPolicyAlways, 2, container{name: "app", args: []string{"idle", "8"}})
	if _, err := tc.CoreV1().Pods(tenantNamespace).Create(ctx, victim, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the tenant's pod: %v", err)
	}
	defer c.deletePod(t, tenantNamespace, "victim")
	real := c.waitPod(t, tenantNamespace, "victim", "running", time.Minute, running)

	message := "The node was low on resource: memory. Threshold quantity: 100Mi, available: 1Ki. Container app was using 9Gi, request is 0, has larger consumption of memory. " +
		strings.Repeat("x", 1<<20-200)
	forged := 0
	for i := range 60 {
		ref := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: tenantNamespace, Name: real.Name, UID: real.UID}
		if i%2 == 1 {
			ref.Name, ref.UID = fmt.Sprintf("ghost-%d", i), types.UID(fmt.Sprintf("00000000-0000-0000-0000-%012d", i))
		}
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("forged.%d", i), Namespace: tenantNamespace, Annotations: map[string]string{"offending_containers": "app"}},
			InvolvedObject: ref, Reason: "Evicted", Message: message, Type: corev1.EventTypeWarning,
			Source:         corev1.EventSource{Component: "kubelet", Host: NodeName},
			FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Count: 1,
		}
		if _, err := tc.CoreV1().Events(tenantNamespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Fatalf("forged Event %d: %v", i, err)
		}
		forged++
	}
	t.Logf("the API server took %d forged Evicted Events of 1 MiB from the tenant", forged)

	// The fat pod: 8,000 labels, its container OOM-killed at its limit,
	// its process named with a newline and a terminal escape.
	fat := podSpec(tenantNamespace, "fat", corev1.RestartPolicyNever, 2, container{name: "hog", args: []string{"hog", "200"}, limit: 64 * mi})
	for i := range 8000 {
		fat.Labels[fmt.Sprintf("tenant.example/l%05d", i)] = strings.Repeat("v", 63)
	}
	fat.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "CTRBIN_COMM", Value: hostileComm}}
	// A refusal storm from new processes: each its own key to aggregate.
	refusers := podSpec(tenantNamespace, "refusers", corev1.RestartPolicyNever, 2, container{name: "storm", args: []string{"refusers", fmt.Sprint(refusalProcs)}})
	refusers.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "CTRBIN_COMM", Value: hostileComm}}
	if _, err := tc.CoreV1().Pods(tenantNamespace).Create(ctx, refusers, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the refusers' pod: %v", err)
	}
	defer c.deletePod(t, tenantNamespace, "refusers")
	if _, err := tc.CoreV1().Pods(tenantNamespace).Create(ctx, fat, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the fat pod: %v", err)
	}
	defer c.deletePod(t, tenantNamespace, "fat")

	// The flood, while the kill happens.
	var flood []net.Conn
	defer func() {
		for _, conn := range flood {
			conn.Close()
		}
	}()
	for range 1000 {
		conn, err := net.Dial("tcp", NodeIP+":9808")
		if err != nil {
			t.Fatalf("dial the metrics port: %v", err)
		}
		flood = append(flood, conn)
	}

	ev := o.WaitEvents(t, "the fat pod's kill", time.Minute, func(ev Events) bool { return len(killsInPod(ev, "fat")) > 0 })
	k := killsInPod(ev, "fat")[0]
	p := k.Victim.Pod
	if p.Namespace != tenantNamespace || p.Name != "fat" || k.Victim.Container == nil || k.Victim.Container.Name != "hog" ||
		!p.LabelsTruncated || len(p.Labels) > event.MaxLabels || len(p.Labels) == 0 {
		t.Errorf("the fat pod's kill: pod %s/%s, container %s, %d labels (truncated %v)", p.Namespace, p.Name, jsonOf(k.Victim.Container), len(p.Labels), p.LabelsTruncated)
	}
	// The JSON says the name as the kernel has it, escaped.
	if k.Victim.Comm != hostileComm {
		t.Errorf("victim comm %q, want %q", k.Victim.Comm, hostileComm)
	}
	// Every refusal of the storm, each of a process of its own, counted
	// and named.
	deadline := time.Now().Add(Patience(time.Minute))
	for {
		n := sum(o.Metrics(t), "oomtrace_commit_refusals_total", map[string]string{"namespace": tenantNamespace, "pod": "refusers", "container": "storm"})
		if n == refusalProcs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("commit_refusals_total{pod=refusers} = %v, want %d", n, refusalProcs)
		}
		time.Sleep(time.Second)
	}
	// A scrape during the flood (Metrics fails the test if it cannot).
	o.Metrics(t)

	// Past the agent's settle time for evictions: nothing forged came out.
	time.Sleep(Patience(8 * time.Second))
	ev = o.Events(t)
	// The storm's lines are bounded (a burst, then about two a second:
	// one, and one folding the rest), and their counts add up to every
	// refusal.
	lines, refused := 0, uint64(0)
	for _, l := range ev.Lines {
		var r event.CommitRefusal
		if !strings.HasPrefix(l, `{"type":"commit_refusal"`) || json.Unmarshal([]byte(l), &r) != nil || r.Process.Pod == nil || r.Process.Pod.Name != "refusers" {
			continue
		}
		lines++
		refused += r.Count
	}
	t.Logf("the storm of %d refused processes: %d lines", refusalProcs, lines)
	if refused != refusalProcs || lines > refusalProcs/10 {
		t.Errorf("the storm's lines: %d, counting %d refusals; want at most %d, counting %d", lines, refused, refusalProcs/10, refusalProcs)
	}
	for _, e := range ev.Evictions {
		if e.Pod.Namespace == tenantNamespace {
			t.Errorf("a forged eviction was reported: %s", jsonOf(e))
		}
	}
	fams := o.Metrics(t)
	for _, pod := range []string{"victim", "ghost-1"} {
		if n, ok := Value(fams, "oomtrace_container_deaths_total", map[string]string{"pod": pod, "cause": event.CauseKubeletEviction}); ok {
			t.Errorf("container_deaths_total{pod=%s,kubelet_eviction} = %v: forged", pod, n)
		}
	}
	rssAfter, _ := Value(fams, "process_resident_memory_bytes", nil)
	t.Logf("oomtrace's RSS: %.1f MiB before, %.1f MiB after %d MiB of forged Events, a pod of 8,000 labels and 1,000 connections",
		rssBefore/(1<<20), rssAfter/(1<<20), forged)
	// Half the DaemonSet's limit (128Mi): the 60 Events alone took an
	// agent that cached them from 36 to 122 MiB.
	if rssAfter > 64<<20 {
		t.Errorf("oomtrace's RSS is %.1f MiB, more than half its limit", rssAfter/(1<<20))
	}
	// The Events the agent wrote in the tenant's namespace: on the fat pod
	// only, the one it killed.
	list, err := c.Client.EventsV1().Events(tenantNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fatEvents := 0
	for _, e := range list.Items {
		if e.ReportingController != kubeevents.Controller {
			continue
		}
		if e.Regarding.Name != "fat" {
			t.Errorf("oomtrace wrote an Event on %s, which was not killed: %s", e.Regarding.Name, e.Note)
		}
		if strings.ContainsAny(e.Note, "\n\x1b") || !strings.Contains(e.Note, "Process x\uFFFD\uFFFD[2Jroot (pid") {
			t.Errorf("Event note %q: the process's name with its control characters", e.Note)
		}
		fatEvents++
	}
	if fatEvents == 0 {
		t.Error("no Event of oomtrace's on the fat pod")
	}
}
