// SPDX-License-Identifier: Apache-2.0

package kubeapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	restwatch "k8s.io/client-go/rest/watch"
)

// server answers as an API server would, in protobuf when the client
// accepts it (JSON otherwise), and records the requests.
type server struct {
	mu          sync.Mutex
	reqs        []string
	body        []byte
	contentType string // of the last body
	accept      string // of the last request
}

// codecs are an API server's serializers of the types the client reads.
var codecs = func() serializer.CodecFactory {
	scheme := runtime.NewScheme()
	corev1.AddToScheme(scheme)
	eventsv1.AddToScheme(scheme)
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	return serializer.NewCodecFactory(scheme)
}()

// reply writes obj as the API server would for the request's Accept.
func reply(w http.ResponseWriter, r *http.Request, status int, obj runtime.Object, gv schema.GroupVersion) {
	mediaType := runtime.ContentTypeJSON
	if strings.HasPrefix(r.Header.Get("Accept"), runtime.ContentTypeProtobuf) {
		mediaType = runtime.ContentTypeProtobuf
	}
	info, _ := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), mediaType)
	enc := codecs.EncoderForVersion(info.Serializer, gv)
	if r.URL.Query().Get("watch") == "true" {
		w.Header().Set("Content-Type", mediaType+";stream=watch")
		w.WriteHeader(status)
		stream := info.StreamSerializer
		out := restwatch.NewEncoder(streaming.NewEncoder(stream.NewFrameWriter(w), stream.Serializer), enc)
		if err := out.Encode(&watch.Event{Type: watch.Added, Object: obj}); err != nil {
			panic(err)
		}
		return
	}
	w.Header().Set("Content-Type", mediaType)
	w.WriteHeader(status)
	if err := enc.Encode(obj, w); err != nil {
		panic(err)
	}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
	s.accept = r.Header.Get("Accept")
	if len(body) > 0 {
		s.body, s.contentType = body, r.Header.Get("Content-Type")
	}
	s.mu.Unlock()
	switch r.URL.Path {
	case "/api/v1/pods":
		if r.URL.Query().Get("watch") == "true" {
			reply(w, r, http.StatusOK, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "8"}}, corev1.SchemeGroupVersion)
			return
		}
		reply(w, r, http.StatusOK, &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "7"},
			Items: []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u-1"}, Spec: corev1.PodSpec{NodeName: "node-a"}}}},
			corev1.SchemeGroupVersion)
	case "/apis/events.k8s.io/v1/namespaces/shop/events":
		// Decoded as its content type says, and sent back created.
		info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), r.Header.Get("Content-Type"))
		if !ok {
			http.Error(w, "unsupported "+r.Header.Get("Content-Type"), http.StatusUnsupportedMediaType)
			return
		}
		obj, _, err := codecs.UniversalDeserializer().Decode(body, nil, nil)
		if err != nil {
			http.Error(w, fmt.Sprintf("%s: %v", info.MediaType, err), http.StatusBadRequest)
			return
		}
		reply(w, r, http.StatusCreated, obj, eventsv1.SchemeGroupVersion)
	case "/apis/events.k8s.io/v1/namespaces/shop/events/web.1":
		if r.Header.Get("Content-Type") != "application/merge-patch+json" {
			http.Error(w, "not a merge patch: "+r.Header.Get("Content-Type"), http.StatusUnsupportedMediaType)
			return
		}
		reply(w, r, http.StatusOK, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web.1"}, Series: &eventsv1.EventSeries{Count: 2}}, eventsv1.SchemeGroupVersion)
	default:
		http.NotFound(w, r)
	}
}

// TestClient: protobuf by default, JSON when the config asks for it.
func TestClient(t *testing.T) {
	t.Run("protobuf", func(t *testing.T) { testClient(t, "", runtime.ContentTypeProtobuf) })
	t.Run("json", func(t *testing.T) { testClient(t, runtime.ContentTypeJSON, runtime.ContentTypeJSON) })
}

func testClient(t *testing.T, configured, want string) {
	s := &server{}
	ts := httptest.NewServer(s)
	defer ts.Close()
	c, err := New(&rest.Config{Host: ts.URL, ContentConfig: rest.ContentConfig{ContentType: configured}})
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

	created, err := c.CreateEvent(ctx, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web.1", Namespace: "shop"}, Reason: "OOMKillProcess", Note: "n"})
	if err != nil || created.Reason != "OOMKillProcess" {
		t.Fatalf("create: %+v %v", created, err)
	}
	posted, gvk, err := codecs.UniversalDeserializer().Decode(s.body, nil, nil)
	if e, ok := posted.(*eventsv1.Event); err != nil || !ok || gvk.Group != "events.k8s.io" || e.Reason != "OOMKillProcess" ||
		s.contentType != want {
		t.Errorf("posted %s %q: %v %v; want %s", s.contentType, s.body, gvk, err, want)
	}
	if !strings.HasPrefix(s.accept, want) {
		t.Errorf("Accept %q: want %s first", s.accept, want)
	}

	patched, err := c.PatchEvent(ctx, "shop", "web.1", []byte(`{"series":{"count":2,"lastObservedTime":"2026-12-02T08:00:00.000000Z"}}`))
	if err != nil || patched.Series == nil || patched.Series.Count != 2 || string(s.body) != `{"series":{"count":2,"lastObservedTime":"2026-12-02T08:00:00.000000Z"}}` {
		t.Fatalf("patch: %+v %v, sent %s", patched, err, s.body)
	}

	requests := []string{
		"GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a",
		"GET /api/v1/pods?resourceVersion=7&watch=true",
		"POST /apis/events.k8s.io/v1/namespaces/shop/events?",
		"PATCH /apis/events.k8s.io/v1/namespaces/shop/events/web.1?",
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) != len(requests) {
		t.Fatalf("requests %q", s.reqs)
	}
	for i := range requests {
		if s.reqs[i] != requests[i] {
			t.Errorf("request %d: %q, want %q", i, s.reqs[i], requests[i])
		}
	}
	for _, res := range []string{"secrets", "events"} {
		if _, err := c.List(ctx, "default", res, metav1.ListOptions{}); err == nil {
			t.Errorf("%s, which oomtrace does not read, were listed", res)
		}
		if _, err := c.Watch(ctx, "default", res, metav1.ListOptions{}); err == nil {
			t.Errorf("%s, which oomtrace does not read, were watched", res)
		}
	}
}

// TestDaemonSetMeta: a DaemonSet's metadata in JSON, though the client
// speaks protobuf and has no apps types; a missing one is NotFound, as the
// API server says it.
func TestDaemonSetMeta(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/apis/apps/v1/namespaces/oomtrace/daemonsets/oomtrace", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != runtime.ContentTypeJSON {
			http.Error(w, "want JSON, not "+r.Header.Get("Accept"), http.StatusNotAcceptable)
			return
		}
		w.Header().Set("Content-Type", runtime.ContentTypeJSON)
		io.WriteString(w, `{"kind":"DaemonSet","apiVersion":"apps/v1","metadata":{"name":"oomtrace","uid":"ds-1","deletionTimestamp":"2026-12-06T09:00:00Z"},"spec":{}}`)
	})
	mux.HandleFunc("/api/v1/namespaces/oomtrace/pods/oomtrace-abc", func(w http.ResponseWriter, r *http.Request) {
		reply(w, r, http.StatusOK, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "oomtrace-abc", Namespace: "oomtrace", UID: "p-1"}}, corev1.SchemeGroupVersion)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, r, http.StatusNotFound, &metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound}, schema.GroupVersion{Version: "v1"})
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	c, err := New(&rest.Config{Host: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	meta, err := c.DaemonSetMeta(ctx, "oomtrace", "oomtrace")
	if err != nil || meta.UID != "ds-1" || meta.DeletionTimestamp == nil {
		t.Errorf("DaemonSetMeta = %+v, %v", meta, err)
	}
	if _, err := c.DaemonSetMeta(ctx, "oomtrace", "gone"); !apierrors.IsNotFound(err) {
		t.Errorf("a missing DaemonSet: %v, want NotFound", err)
	}
	pod, err := c.Pod(ctx, "oomtrace", "oomtrace-abc")
	if err != nil || pod.UID != "p-1" {
		t.Errorf("Pod = %+v, %v", pod, err)
	}
}
