// SPDX-License-Identifier: Apache-2.0

// Package cri names containers and pods from the container runtime's CRI
// API, and remembers them for a while after they are gone.
package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/oomtrace/oomtrace/event"
)

// Labels the kubelet puts on every pod sandbox and container it creates.
const (
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"
)

// defaultSockets are the sockets tried, in order, below the host's /run
// when no endpoint is given: containerd, k3s's containerd, CRI-O.
var defaultSockets = []string{
	"containerd/containerd.sock",
	"k3s/containerd/containerd.sock",
	"crio/crio.sock",
}

// Container is what the runtime says about a container or a pod sandbox.
type Container struct {
	ID           string
	Name         string // the container's name in the pod spec; empty for a sandbox
	Runtime      string // the runtime's own name: containerd, cri-o
	Sandbox      bool   // the pod's sandbox (pause) container
	PodUID       string
	PodName      string
	PodNamespace string
	// PodLabels are the pod's own labels, without the kubelet's
	// io.kubernetes.*, bounded as event.BoundLabels does (a tenant writes
	// them); shared by the pod's containers and their events: read only.
	PodLabels map[string]string
	// PodLabelsTruncated says the pod had more labels than PodLabels.
	PodLabelsTruncated bool
	// Memory limits from the pod spec and status (the cluster view only;
	// nil when unknown or unset): the container's own, the one the
	// kubelet reports applied, the pod-level one, and the sum of the
	// containers' when every one has a limit.
	MemoryLimit, StatusMemoryLimit, PodMemoryLimit, ContainersMemoryLimit *uint64
	// ResizeInProgress: the pod has a PodResizeInProgress condition.
	ResizeInProgress bool
}

// Options configure a Client.
type Options struct {
	// Endpoint is the runtime's socket: a path or unix://path.
	Endpoint string
	// Retention keeps containers that the runtime no longer lists this
	// long, so that an event read after the container was removed still
	// resolves.
	Retention time.Duration
	// Refresh lists all containers this often in Run.
	Refresh time.Duration
	// MinListInterval spaces the lists that lookups of unknown ids cause.
	MinListInterval time.Duration
	// Timeout bounds each call to the runtime.
	Timeout time.Duration
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// missingTTL is how long an id the runtime did not list stays unknown
// without another list.
const missingTTL = 10 * time.Second

// Defaults for Options' zero values.
const (
	DefaultRetention       = 10 * time.Minute
	DefaultRefresh         = 10 * time.Second
	DefaultMinListInterval = time.Second
	DefaultTimeout         = 2 * time.Second
)

// Client resolves container ids through CRI with a cache. It is safe for
// concurrent use. A runtime that is absent or failing costs a logged
// warning and misses, never an error to the caller.
type Client struct {
	opts Options
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient

	listMu sync.Mutex // one list at a time

	mu    sync.Mutex
	cache map[string]*entry
	// missing: ids a list taken after their event did not show, and
	// when: they are not listed again for them for missingTTL (a
	// container another runtime runs would otherwise cost a list, and a
	// wait, per event).
	missing  map[string]time.Time
	runtime  string
	lastList time.Time // when the last list started
	// lastGoodList is when the last successful list started.
	lastGoodList time.Time
	listed       bool // at least one list succeeded
	unhealthy    bool // the last call failed (warned once per failure streak)
	// sandboxesTooLarge: the last list of sandboxes was over
	// maxMessageBytes (warned once per streak). Under listMu.
	sandboxesTooLarge bool
}

type entry struct {
	c         Container
	goneSince time.Time // zero while the runtime lists it
}

// detectEndpoint returns the first of defaultSockets below runDir (the
// host's /run, where /var/run points too) that is a socket, or "".
func detectEndpoint(runDir string) string {
	for _, name := range defaultSockets {
		p := filepath.Join(runDir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return p
		}
	}
	return ""
}

// maxMessageBytes is the largest CRI answer read, as the kubelet's.
const maxMessageBytes = 16 << 20

// New returns a client of the runtime at opts.Endpoint. It does not
// connect yet: a runtime that starts later is picked up by the next call.
func New(opts Options) (*Client, error) {
	if opts.Endpoint == "" {
		return nil, errors.New("cri: no endpoint")
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Refresh == 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.MinListInterval == 0 {
		opts.MinListInterval = DefaultMinListInterval
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	target := opts.Endpoint
	if !strings.HasPrefix(target, "unix://") {
		target = "unix://" + target
	}
	// The kubelet's own limit on CRI messages (16 MiB): a node whose pods
	// carry a megabyte of labels each lists past gRPC's 4 MiB default.
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes)))
	if err != nil {
		return nil, fmt.Errorf("cri endpoint %s: %w", opts.Endpoint, err)
	}
	return &Client{opts: opts, conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn), cache: map[string]*entry{}, missing: map[string]time.Time{}}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Run lists the runtime's containers every Refresh until ctx is done, so
// that containers are known before their first event and stay known for
// Retention after they are gone.
func (c *Client) Run(ctx context.Context) {
	t := time.NewTicker(c.opts.Refresh)
	defer t.Stop()
	for {
		_ = c.Refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Lookup returns what the runtime says about a container or sandbox id
// that existed at time at (an event's time). A list of the runtime taken
// after at is the authority: an id it did not show is unknown. Otherwise
// Lookup lists the runtime, at most once per MinListInterval, waiting for
// the next allowed list when needed; while the runtime is failing it does
// not wait.
func (c *Client) Lookup(ctx context.Context, id string, at time.Time) (Container, bool) {
	if ctr, ok := c.cached(id); ok {
		return ctr, true
	}
	c.mu.Lock()
	now := c.opts.Now()
	authoritative := c.lastGoodList.After(at)
	missingSince, missing := c.missing[id]
	recentlyMissing := missing && now.Sub(missingSince) < missingTTL
	wait := c.lastList.Add(c.opts.MinListInterval).Sub(now)
	unhealthy := c.unhealthy
	c.mu.Unlock()
	if authoritative || recentlyMissing || unhealthy && wait > 0 {
		return Container{}, false
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Container{}, false
		case <-t.C:
		}
	}
	if c.Refresh(ctx) != nil {
		return Container{}, false
	}
	ctr, ok := c.cached(id)
	if !ok {
		c.mu.Lock()
		c.missing[id] = c.lastGoodList
		c.mu.Unlock()
	}
	return ctr, ok
}

func (c *Client) cached(id string) (Container, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cache[id]; ok {
		return e.c, true
	}
	return Container{}, false
}

// Refresh lists every sandbox and container, and forgets the ones gone for
// longer than Retention.
func (c *Client) Refresh(ctx context.Context) error {
	c.listMu.Lock()
	defer c.listMu.Unlock()
	c.mu.Lock()
	start := c.opts.Now()
	c.lastList = start
	needVersion := c.runtime == ""
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	runtime := ""
	if needVersion {
		v, err := c.rt.Version(ctx, &runtimeapi.VersionRequest{})
		if err != nil {
			return c.failed(fmt.Errorf("cri version: %w", err))
		}
		runtime = strings.ToLower(v.GetRuntimeName())
	}
	// The sandboxes carry the pods' labels, which tenants write: a list
	// too large to read costs the labels, not the names, which the
	// containers' own labels carry too.
	sandboxes, sandboxErr := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if sandboxErr != nil && status.Code(sandboxErr) != codes.ResourceExhausted {
		return c.failed(fmt.Errorf("cri list pod sandboxes: %w", sandboxErr))
	}
	containers, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return c.failed(fmt.Errorf("cri list containers: %w", err))
	}
	if sandboxErr != nil && !c.sandboxesTooLarge {
		c.opts.Logger.Warn("container runtime: the pod sandboxes' list is too large to read (their labels); naming containers and pods without labels",
			"endpoint", c.opts.Endpoint, "err", sandboxErr)
	}
	c.sandboxesTooLarge = sandboxErr != nil

	c.mu.Lock()
	defer c.mu.Unlock()
	if runtime != "" {
		c.runtime = runtime
	}
	if c.unhealthy || !c.listed {
		c.opts.Logger.Info("container runtime reachable", "endpoint", c.opts.Endpoint, "runtime", c.runtime,
			"sandboxes", len(sandboxes.GetItems()), "containers", len(containers.GetContainers()))
	}
	c.unhealthy, c.listed, c.lastGoodList = false, true, start

	now := c.opts.Now()
	seen := make(map[string]bool, len(sandboxes.GetItems())+len(containers.GetContainers()))
	pods := make(map[string]Container, len(sandboxes.GetItems()))
	for _, s := range sandboxes.GetItems() {
		pod := sandboxContainer(s, c.runtime)
		pods[s.GetId()] = pod
		c.cache[s.GetId()] = &entry{c: pod}
		seen[s.GetId()] = true
	}
	for _, ctr := range containers.GetContainers() {
		c.cache[ctr.GetId()] = &entry{c: containerOf(ctr, pods[ctr.GetPodSandboxId()], c.runtime)}
		seen[ctr.GetId()] = true
	}
	for id, since := range c.missing {
		if seen[id] || now.Sub(since) >= missingTTL {
			delete(c.missing, id)
		}
	}
	for id, e := range c.cache {
		switch {
		case seen[id]:
		case e.goneSince.IsZero():
			e.goneSince = now
		case now.Sub(e.goneSince) > c.opts.Retention:
			delete(c.cache, id)
		}
	}
	return nil
}

// failed logs the first failure of a streak as a warning, the rest at debug.
func (c *Client) failed(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.unhealthy {
		c.opts.Logger.Warn("container runtime unavailable; events carry what their cgroup paths say, without names",
			"endpoint", c.opts.Endpoint, "err", err)
	} else {
		c.opts.Logger.Debug("container runtime still unavailable", "endpoint", c.opts.Endpoint, "err", err)
	}
	c.unhealthy = true
	return err
}

// Up says whether the runtime answered its last list (and has been
// listed once): containers are being named.
func (c *Client) Up() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.listed && !c.unhealthy
}

// cacheSize is how many containers and sandboxes the cache holds.
func (c *Client) cacheSize() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cache)
}

func sandboxContainer(s *runtimeapi.PodSandbox, runtime string) Container {
	md := s.GetMetadata()
	pod := Container{
		ID:           s.GetId(),
		Runtime:      runtime,
		Sandbox:      true,
		PodUID:       first(s.GetLabels()[LabelPodUID], md.GetUid()),
		PodName:      first(s.GetLabels()[LabelPodName], md.GetName()),
		PodNamespace: first(s.GetLabels()[LabelPodNamespace], md.GetNamespace()),
	}
	for k, v := range s.GetLabels() {
		if strings.HasPrefix(k, "io.kubernetes.") {
			continue
		}
		if pod.PodLabels == nil {
			pod.PodLabels = map[string]string{}
		}
		pod.PodLabels[k] = v
	}
	pod.PodLabels, pod.PodLabelsTruncated = event.BoundLabels(pod.PodLabels)
	return pod
}

func containerOf(ctr *runtimeapi.Container, pod Container, runtime string) Container {
	l := ctr.GetLabels()
	return Container{
		ID:           ctr.GetId(),
		Name:         first(l[LabelContainerName], ctr.GetMetadata().GetName()),
		Runtime:      runtime,
		PodUID:       first(l[LabelPodUID], pod.PodUID),
		PodName:      first(l[LabelPodName], pod.PodName),
		PodNamespace: first(l[LabelPodNamespace], pod.PodNamespace),
		// The sandbox's labels, shared, not copied.
		PodLabels:          pod.PodLabels,
		PodLabelsTruncated: pod.PodLabelsTruncated,
	}
}

func first(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Open returns a client of the runtime at endpoint: "none" for none, ""
// for the first of defaultSockets below runDir. It returns nil, and says
// why in the log, when there is no runtime to use: events then carry what
// their cgroup paths say. An endpoint given but absent is kept and tried
// again (the runtime may start later).
func Open(endpoint, runDir string, opts Options) (*Client, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch endpoint {
	case "none":
		return nil, nil
	case "":
		if endpoint = detectEndpoint(runDir); endpoint == "" {
			log.Info("no container runtime socket found; containers and pods from cgroup paths only, without names",
				"run_dir", runDir, "tried", strings.Join(defaultSockets, ","))
			return nil, nil
		}
	default:
		if _, err := os.Stat(strings.TrimPrefix(endpoint, "unix://")); err != nil {
			log.Warn("container runtime socket not there (yet); names will follow when it is", "endpoint", endpoint, "err", errors.Unwrap(err))
		}
	}
	opts.Endpoint = endpoint
	c, err := New(opts)
	if err != nil {
		return nil, err
	}
	log.Info("naming containers through CRI", "endpoint", endpoint)
	return c, nil
}
