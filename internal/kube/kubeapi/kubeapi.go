// SPDX-License-Identifier: Apache-2.0

// Package kubeapi is oomtrace's client of the API server: the resources it
// reads (this node's pods and its Node, its own pod and the metadata of
// the DaemonSet that owns it; no Event) and the Events it writes
// (events.k8s.io/v1), over REST with a scheme of only their types.
// client-go's clientset registers every API group's types when the binary
// starts: about 8 MiB of a node agent's memory for nothing it uses.
package kubeapi

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// Client talks to one API server.
type Client struct {
	// Host is the API server's address, for the log.
	Host   string
	core   *rest.RESTClient
	events *rest.RESTClient
	params runtime.ParameterCodec
}

// The types oomtrace decodes, and their lists.
var lists = map[string]func() runtime.Object{
	"pods":  func() runtime.Object { return &corev1.PodList{} },
	"nodes": func() runtime.Object { return &corev1.NodeList{} },
}

// New makes a client from cfg (its content type, protobuf unless set, and
// the like are kept; the group, version and serializer are this
// package's).
func New(cfg *rest.Config) (*Client, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, eventsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("API scheme: %w", err)
		}
	}
	// ListOptions and the like, as query parameters of every version.
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	codecs := serializer.NewCodecFactory(scheme)
	c := &Client{Host: cfg.Host, params: runtime.NewParameterCodec(scheme)}
	for _, api := range []struct {
		gv   schema.GroupVersion
		path string
		into **rest.RESTClient
	}{
		{corev1.SchemeGroupVersion, "/api", &c.core},
		{eventsv1.SchemeGroupVersion, "/apis", &c.events},
	} {
		gcfg := rest.CopyConfig(cfg)
		gv := api.gv
		gcfg.GroupVersion = &gv
		gcfg.APIPath = api.path
		gcfg.NegotiatedSerializer = codecs.WithoutConversion()
		if gcfg.ContentType == "" {
			// Protobuf, as kube-state-metrics and the kubelet ask: a
			// fraction of JSON's bytes and of its decoding's CPU on every
			// list and watch event (JSON only if the server has no
			// protobuf for a type).
			gcfg.ContentType = runtime.ContentTypeProtobuf
			gcfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
		}
		if gcfg.UserAgent == "" {
			gcfg.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		rc, err := rest.RESTClientFor(gcfg)
		if err != nil {
			return nil, fmt.Errorf("API client %s: %w", gv, err)
		}
		*api.into = rc
	}
	return c, nil
}

// List lists a core/v1 resource (pods, nodes) in a namespace ("": all,
// and for nodes).
func (c *Client) List(ctx context.Context, namespace, resource string, o metav1.ListOptions) (runtime.Object, error) {
	newList, ok := lists[resource]
	if !ok {
		return nil, fmt.Errorf("kubeapi: no list of %q", resource)
	}
	into := newList()
	err := c.core.Get().Namespace(namespace).Resource(resource).VersionedParams(&o, c.params).Do(ctx).Into(into)
	return into, err
}

// Watch watches a core/v1 resource (pods, nodes) in a namespace ("": all,
// and for nodes).
func (c *Client) Watch(ctx context.Context, namespace, resource string, o metav1.ListOptions) (watch.Interface, error) {
	if _, ok := lists[resource]; !ok {
		return nil, fmt.Errorf("kubeapi: no watch of %q", resource)
	}
	o.Watch = true
	return c.core.Get().Namespace(namespace).Resource(resource).VersionedParams(&o, c.params).Watch(ctx)
}

// PatchEvent applies a JSON merge patch to the events.k8s.io/v1 Event
// namespace/name.
func (c *Client) PatchEvent(ctx context.Context, namespace, name string, patch []byte) (*eventsv1.Event, error) {
	out := &eventsv1.Event{}
	err := c.events.Patch(types.MergePatchType).Namespace(namespace).Resource("events").Name(name).Body(patch).Do(ctx).Into(out)
	return out, err
}

// CreateEvent creates an events.k8s.io/v1 Event in its namespace.
func (c *Client) CreateEvent(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	out := &eventsv1.Event{}
	err := c.events.Post().Namespace(ev.Namespace).Resource("events").Body(ev).Do(ctx).Into(out)
	return out, err
}

// Pod gets one pod.
func (c *Client) Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	out := &corev1.Pod{}
	err := c.core.Get().Namespace(namespace).Resource("pods").Name(name).Do(ctx).Into(out)
	return out, err
}

// ObjectMeta is what oomtrace reads of an object of another API group: its
// metadata only, without a scheme of the group's types.
type ObjectMeta struct {
	UID               string       `json:"uid"`
	DeletionTimestamp *metav1.Time `json:"deletionTimestamp,omitempty"`
}

// NamespaceMeta gets the metadata of a Namespace.
func (c *Client) NamespaceMeta(ctx context.Context, name string) (ObjectMeta, error) {
	raw, err := c.core.Get().AbsPath("/api/v1/namespaces", name).
		SetHeader("Accept", runtime.ContentTypeJSON).DoRaw(ctx)
	if err != nil {
		return ObjectMeta{}, err
	}
	var obj struct {
		Metadata ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return ObjectMeta{}, fmt.Errorf("namespace %s: %w", name, err)
	}
	return obj.Metadata, nil
}

// DaemonSetMeta gets the metadata of an apps/v1 DaemonSet.
func (c *Client) DaemonSetMeta(ctx context.Context, namespace, name string) (ObjectMeta, error) {
	raw, err := c.core.Get().AbsPath("/apis/apps/v1/namespaces", namespace, "daemonsets", name).
		SetHeader("Accept", runtime.ContentTypeJSON).DoRaw(ctx)
	if err != nil {
		return ObjectMeta{}, err
	}
	var obj struct {
		Metadata ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return ObjectMeta{}, fmt.Errorf("DaemonSet %s/%s: %w", namespace, name, err)
	}
	return obj.Metadata, nil
}
