package kubeapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// server answers as an API server would, and records the requests.
type server struct {
	mu   sync.Mutex
	reqs []string
	body []byte
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
	if len(body) > 0 {
		s.body = body
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/api/v1/pods":
		if r.URL.Query().Get("watch") == "true" {
			json.NewEncoder(w).Encode(map[string]any{"type": "ADDED", "object": corev1.Pod{
				TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "8"}}})
			return
		}
		json.NewEncoder(w).Encode(corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
			ListMeta: metav1.ListMeta{ResourceVersion: "7"},
			Items:    []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u-1"}, Spec: corev1.PodSpec{NodeName: "node-a"}}}})
	case "/api/v1/namespaces/default/events":
		json.NewEncoder(w).Encode(corev1.EventList{TypeMeta: metav1.TypeMeta{Kind: "EventList", APIVersion: "v1"}})
	case "/apis/events.k8s.io/v1/namespaces/shop/events":
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	case "/apis/events.k8s.io/v1/namespaces/shop/events/web.1":
		if r.Header.Get("Content-Type") != "application/merge-patch+json" {
			http.Error(w, "not a merge patch: "+r.Header.Get("Content-Type"), http.StatusUnsupportedMediaType)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": map[string]any{"name": "web.1"}, "series": map[string]any{"count": 2}})
	default:
		http.NotFound(w, r)
	}
}

func TestClient(t *testing.T) {
	s := &server{}
	ts := httptest.NewServer(s)
	defer ts.Close()
	c, err := New(&rest.Config{Host: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	obj, err := c.List(ctx, "", "pods", metav1.ListOptions{FieldSelector: "spec.nodeName=node-a"})
	if err != nil {
		t.Fatal(err)
	}
	pods, ok := obj.(*corev1.PodList)
	if !ok || len(pods.Items) != 1 || pods.Items[0].UID != "u-1" || pods.ResourceVersion != "7" {
		t.Fatalf("list: %T %+v", obj, obj)
	}

	w, err := c.Watch(ctx, "", "pods", metav1.ListOptions{ResourceVersion: "7"})
	if err != nil {
		t.Fatal(err)
	}
	ev := <-w.ResultChan()
	w.Stop()
	if p, ok := ev.Object.(*corev1.Pod); !ok || p.Name != "web" || ev.Type != "ADDED" {
		t.Fatalf("watch: %+v", ev)
	}

	// A namespaced list: the node's Events where the kubelet writes them.
	if _, err := c.List(ctx, "default", "events", metav1.ListOptions{FieldSelector: "involvedObject.name=node-a"}); err != nil {
		t.Fatal(err)
	}

	created, err := c.CreateEvent(ctx, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web.1", Namespace: "shop"}, Reason: "OOMKillProcess", Note: "n"})
	if err != nil || created.Reason != "OOMKillProcess" {
		t.Fatalf("create: %+v %v", created, err)
	}
	var posted map[string]any
	json.Unmarshal(s.body, &posted)
	if posted["apiVersion"] != "events.k8s.io/v1" || posted["kind"] != "Event" || posted["reason"] != "OOMKillProcess" {
		t.Errorf("posted %s", s.body)
	}

	patched, err := c.PatchEvent(ctx, "shop", "web.1", []byte(`{"series":{"count":2,"lastObservedTime":"2026-12-02T08:00:00.000000Z"}}`))
	if err != nil || patched.Series == nil || patched.Series.Count != 2 || string(s.body) != `{"series":{"count":2,"lastObservedTime":"2026-12-02T08:00:00.000000Z"}}` {
		t.Fatalf("patch: %+v %v, sent %s", patched, err, s.body)
	}

	want := []string{
		"GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a",
		"GET /api/v1/pods?resourceVersion=7&watch=true",
		"GET /api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dnode-a",
		"POST /apis/events.k8s.io/v1/namespaces/shop/events?",
		"PATCH /apis/events.k8s.io/v1/namespaces/shop/events/web.1?",
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) != len(want) {
		t.Fatalf("requests %q", s.reqs)
	}
	for i := range want {
		if s.reqs[i] != want[i] {
			t.Errorf("request %d: %q, want %q", i, s.reqs[i], want[i])
		}
	}
	if _, err := c.List(ctx, "", "secrets", metav1.ListOptions{}); err == nil {
		t.Error("a resource oomtrace does not read was listed")
	}
}
