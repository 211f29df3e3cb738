// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/oomtrace/oomtrace/exporter/kubeevents"
)

// nodeNameExtra is where the API server puts the node a pod's
// ServiceAccount token is bound to.
const nodeNameExtra = "authentication.kubernetes.io/node-name"

// agentClient is the API as the agent's ServiceAccount sees it, with its
// token bound to node (none: a token bound to no node).
func (c *Cluster) agentClient(t *testing.T, node string) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:oomtrace:oomtrace",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:oomtrace", "system:authenticated"},
	}
	if node != "" {
		cfg.Impersonate.Extra = map[string][]string{nodeNameExtra: {node}}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// testAdmissionPolicy: the shipped ValidatingAdmissionPolicy on the real
// API server. RBAC lets the agent create and patch Events in every
// namespace; the policy admits only oomtrace's own Events about a pod,
// reported as the node the writer's token is bound to, and patches that
// keep them so. Other writers are not its business.
func testAdmissionPolicy(t *testing.T, c *Cluster, o *Oomtrace) {
	ctx := context.Background()
	c.Namespace(t, "shop")
	at := metav1.NewMicroTime(time.Now())
	good := func(name string) *eventsv1.Event {
		return &eventsv1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"}, EventTime: at,
			ReportingController: kubeevents.Controller, ReportingInstance: kubeevents.Controller + "-" + NodeName,
			Action: "Killed", Reason: kubeevents.ReasonProcess, Type: corev1.EventTypeWarning, Note: "admission test",
			Regarding: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "shop", Name: "web", UID: types.UID("00000000-0000-4000-8000-000000000001")},
		}
	}
	agent := c.agentClient(t, NodeName)
	// The API server's policy informer takes a moment after the install.
	deadline := time.Now().Add(Patience(30 * time.Second))
	for {
		bad := good("admission-probe")
		bad.ReportingController = "kubelet"
		_, err := agent.EventsV1().Events("shop").Create(ctx, bad, metav1.CreateOptions{})
		if err != nil && strings.Contains(err.Error(), "oomtrace-events") {
			break
		}
		if err == nil {
			agent.EventsV1().Events("shop").Delete(ctx, bad.Name, metav1.DeleteOptions{})
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent wrote an Event as the kubelet's for 30 s: the policy is not enforced (%v)", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	made, err := agent.EventsV1().Events("shop").Create(ctx, good("admission-good"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the agent's own Event was refused: %v", err)
	}
	defer c.Client.EventsV1().Events("shop").Delete(ctx, made.Name, metav1.DeleteOptions{})

	refused := []struct {
		what   string
		client kubernetes.Interface
		edit   func(*eventsv1.Event)
	}{
		{"another node's instance", agent, func(e *eventsv1.Event) { e.ReportingInstance = kubeevents.Controller + "-other-node" }},
		{"from a token bound to another node", c.agentClient(t, "other-node"), func(*eventsv1.Event) {}},
		{"from a token bound to no node", c.agentClient(t, ""), func(*eventsv1.Event) {}},
		{"another reporter", agent, func(e *eventsv1.Event) { e.ReportingController = "kubelet" }},
		{"an Evicted reason", agent, func(e *eventsv1.Event) { e.Reason = "Evicted" }},
		{"about a Service", agent, func(e *eventsv1.Event) { e.Regarding.Kind = "Service" }},
		{"about a pod of another namespace", agent, func(e *eventsv1.Event) { e.Regarding.Namespace = "kube-system" }},
	}
	for _, r := range refused {
		e := good("admission-refused")
		r.edit(e)
		if _, err := r.client.EventsV1().Events("shop").Create(ctx, e, metav1.CreateOptions{}); err == nil {
			c.Client.EventsV1().Events("shop").Delete(ctx, e.Name, metav1.DeleteOptions{})
			t.Errorf("an Event %s was admitted", r.what)
		} else if !strings.Contains(err.Error(), "oomtrace-events") {
			t.Errorf("an Event %s: refused by %v, want the policy", r.what, err)
		}
	}

	// A patch that counts a repeat, as the agent's series do: admitted.
	series := []byte(`{"series":{"count":2,"lastObservedTime":"` + time.Now().UTC().Format("2006-01-02T15:04:05.000000Z") + `"}}`)
	if _, err := agent.EventsV1().Events("shop").Patch(ctx, made.Name, types.MergePatchType, series, metav1.PatchOptions{}); err != nil {
		t.Errorf("the agent's series patch was refused: %v", err)
	}
	// Ones that move the Event to another pod (the API's own validation
	// refuses that too) or another node: refused.
	for _, patch := range []string{`{"regarding":{"name":"another-pod"}}`, `{"reportingInstance":"oomtrace-other-node"}`} {
		if _, err := agent.EventsV1().Events("shop").Patch(ctx, made.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err == nil {
			t.Errorf("the agent's patch %s was admitted", patch)
		}
	}
	// Another writer's Event (the kubelet's, an admin's) is not the policy's.
	other := good("admission-other")
	other.ReportingController, other.ReportingInstance, other.Reason, other.Action = "kubelet", "kubelet-"+NodeName, "Evicted", "Evict"
	if _, err := c.Client.EventsV1().Events("shop").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Errorf("another writer's Event was refused: %v", err)
	} else {
		c.Client.EventsV1().Events("shop").Delete(ctx, other.Name, metav1.DeleteOptions{})
	}
}
