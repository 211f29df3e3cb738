// SPDX-License-Identifier: Apache-2.0

package fleettest

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter/kubeevents"
	"github.com/oomtrace/oomtrace/internal/kube/clusterview"
	"github.com/oomtrace/oomtrace/internal/kube/kubeapi"
)

// Agent is one node's oomtrace as the API server sees it: the cluster
// view (clusterview.Watcher) and the Event recorder (kubeevents) of the
// daemon, on a client of its own (kubeapi, as the daemon makes it) with a
// connection of its own, and counters of what crossed it.
type Agent struct {
	Node     string
	Watcher  *clusterview.Watcher
	Recorder *kubeevents.Recorder

	counts Counts

	mu        sync.Mutex
	evictions []event.Eviction
	stop      context.CancelFunc
	done      chan struct{}
}

// Counts are what crossed one agent's connection.
type Counts struct {
	// Requests the agent sent, and of them the writes (Event creates
	// and patches).
	Requests, Writes atomic.Int64
	// Bytes of response bodies it read (after the transport's gzip).
	Bytes atomic.Int64
	// Objects it received in watch events; Relisted those of lists (and
	// of a watch's initial events, which stand for a list); Bookmarks
	// (the API server's progress notes) apart; Lists how many lists.
	Objects, Relisted, Bookmarks, Lists atomic.Int64
	// Foreign: objects of another node (a pod bound elsewhere, another
	// Node): never, the agent's selectors say. Errors: a watch's error
	// events.
	Foreign, Errors atomic.Int64
}

// Snapshot is Counts at one moment.
type Snapshot struct{ Requests, Writes, Bytes, Objects, Relisted, Bookmarks, Lists, Foreign, Errors int64 }

// Snapshot reads the counters.
func (a *Agent) Snapshot() Snapshot {
	c := &a.counts
	return Snapshot{c.Requests.Load(), c.Writes.Load(), c.Bytes.Load(), c.Objects.Load(), c.Relisted.Load(), c.Bookmarks.Load(),
		c.Lists.Load(), c.Foreign.Load(), c.Errors.Load()}
}

// Sub is s minus o.
func (s Snapshot) Sub(o Snapshot) Snapshot {
	return Snapshot{s.Requests - o.Requests, s.Writes - o.Writes, s.Bytes - o.Bytes, s.Objects - o.Objects, s.Relisted - o.Relisted,
		s.Bookmarks - o.Bookmarks, s.Lists - o.Lists, s.Foreign - o.Foreign, s.Errors - o.Errors}
}

// Add is s plus o.
func (s Snapshot) Add(o Snapshot) Snapshot {
	return Snapshot{s.Requests + o.Requests, s.Writes + o.Writes, s.Bytes + o.Bytes, s.Objects + o.Objects, s.Relisted + o.Relisted,
		s.Bookmarks + o.Bookmarks, s.Lists + o.Lists, s.Foreign + o.Foreign, s.Errors + o.Errors}
}

// StartAgent starts node's agent with base's server, CA and credentials
// (a service account's token: the DaemonSet's RBAC decides).
func StartAgent(base *rest.Config, node string) (*Agent, error) {
	a := &Agent{Node: node, done: make(chan struct{})}
	cfg := rest.CopyConfig(base)
	cfg.UserAgent = "oomtrace/fleettest"
	// A dialer of its own: client-go shares one transport, and one
	// connection, among configs that are alike; each node's agent has
	// its own.
	cfg.Dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return counting{rt, &a.counts} }
	client, err := kubeapi.New(cfg)
	if err != nil {
		return nil, err
	}
	a.Watcher = clusterview.New(countingAPI{client, &a.counts, node}, clusterview.Options{Node: node})
	a.Recorder = kubeevents.New(client, node)
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	if err := a.Recorder.Start(ctx); err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(a.done)
		a.Watcher.Run(ctx, clusterview.Handlers{Eviction: func(ev event.Eviction) {
			a.mu.Lock()
			a.evictions = append(a.evictions, ev)
			a.mu.Unlock()
		}})
	}()
	return a, nil
}

// Evictions are the evictions the agent reported.
func (a *Agent) Evictions() []event.Eviction {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]event.Eviction(nil), a.evictions...)
}

// Stop stops the agent and waits for its watches to end.
func (a *Agent) Stop() {
	a.stop()
	a.Recorder.Shutdown()
	<-a.done
}

// counting counts an agent's requests and the bytes of their responses.
type counting struct {
	rt http.RoundTripper
	c  *Counts
}

func (t counting) RoundTrip(req *http.Request) (*http.Response, error) {
	t.c.Requests.Add(1)
	if req.Method == http.MethodPost || req.Method == http.MethodPatch {
		t.c.Writes.Add(1)
	}
	resp, err := t.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = countingBody{resp.Body, t.c}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	c *Counts
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.Bytes.Add(int64(n))
	return n, err
}

// countingAPI counts the objects the watcher's lists and watches bring,
// and those of another node.
type countingAPI struct {
	api  *kubeapi.Client
	c    *Counts
	node string
}

func (a countingAPI) List(ctx context.Context, namespace, resource string, o metav1.ListOptions) (runtime.Object, error) {
	obj, err := a.api.List(ctx, namespace, resource, o)
	if err == nil {
		a.c.Lists.Add(1)
		items, _ := meta.ExtractList(obj)
		for _, item := range items {
			a.c.Relisted.Add(1)
			a.check(item)
		}
	}
	return obj, err
}

func (a countingAPI) Watch(ctx context.Context, namespace, resource string, o metav1.ListOptions) (watch.Interface, error) {
	w, err := a.api.Watch(ctx, namespace, resource, o)
	if err != nil {
		return nil, err
	}
	// A watch-list (client-go's default against etcd 3.5 and later):
	// its initial events, up to the bookmark that ends them, are a list.
	initial := o.SendInitialEvents != nil && *o.SendInitialEvents
	if initial {
		a.c.Lists.Add(1)
	}
	return watch.Filter(w, func(ev watch.Event) (watch.Event, bool) {
		switch {
		case ev.Type == watch.Error:
			// A Status (the resource version left the window, say):
			// the informer lists again.
			a.c.Errors.Add(1)
		case ev.Type == watch.Bookmark:
			a.c.Bookmarks.Add(1)
			if m, err := meta.Accessor(ev.Object); err == nil && m.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
				initial = false
			}
		case initial:
			a.c.Relisted.Add(1)
			a.check(ev.Object)
		default:
			a.c.Objects.Add(1)
			a.check(ev.Object)
		}
		return ev, true
	}), nil
}

// check counts obj as foreign if it is not of this node.
func (a countingAPI) check(obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Pod:
		if o.Spec.NodeName != a.node {
			a.c.Foreign.Add(1)
		}
	case *corev1.Node:
		if o.Name != a.node {
			a.c.Foreign.Add(1)
		}
	default:
		a.c.Foreign.Add(1) // nothing else is watched
	}
}
