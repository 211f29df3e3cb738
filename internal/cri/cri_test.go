// SPDX-License-Identifier: Apache-2.0

package cri

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeRuntime answers Version, ListPodSandbox and ListContainers from its
// fields, and counts the lists.
type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	mu         sync.Mutex
	sandboxes  []*runtimeapi.PodSandbox
	containers []*runtimeapi.Container
	lists      int
	down       bool
}

func (f *fakeRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, status.Error(codes.Unavailable, "down")
	}
	return &runtimeapi.VersionResponse{RuntimeName: "containerd", RuntimeVersion: "1.6.20"}, nil
}

func (f *fakeRuntime) ListPodSandbox(context.Context, *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.down {
		return nil, status.Error(codes.Unavailable, "down")
	}
	return &runtimeapi.ListPodSandboxResponse{Items: f.sandboxes}, nil
}

func (f *fakeRuntime) ListContainers(context.Context, *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &runtimeapi.ListContainersResponse{Containers: f.containers}, nil
}

func (f *fakeRuntime) set(fn func(f *fakeRuntime)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func serve(t *testing.T, f *fakeRuntime) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(s, f)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return sock
}

const (
	sandboxID = "5b0000000000000000000000000000000000000000000000000000000000000a"
	ctrID     = "c70000000000000000000000000000000000000000000000000000000000000b"
	uid       = "0b1e7bd0-4a5e-4c4b-9f34-7d1f1c2a7e10"
)

func kubeletPod() *fakeRuntime {
	return &fakeRuntime{
		sandboxes: []*runtimeapi.PodSandbox{{
			Id:       sandboxID,
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "cart-7d9f", Namespace: "shop", Uid: uid},
			Labels: map[string]string{"app": "cart", "pod-template-hash": "7d9f",
				LabelPodName: "cart-7d9f", LabelPodNamespace: "shop", LabelPodUID: uid},
		}},
		containers: []*runtimeapi.Container{{
			Id: ctrID, PodSandboxId: sandboxID, Metadata: &runtimeapi.ContainerMetadata{Name: "redis"},
			State:  runtimeapi.ContainerState_CONTAINER_EXITED,
			Labels: map[string]string{LabelContainerName: "redis", LabelPodName: "cart-7d9f", LabelPodNamespace: "shop", LabelPodUID: uid},
		}},
	}
}

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestLookup(t *testing.T) {
	f := kubeletPod()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	c, err := New(Options{Endpoint: serve(t, f), Retention: 10 * time.Minute, MinListInterval: 50 * time.Millisecond, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	t0 := clk.now
	got, ok := c.Lookup(ctx, ctrID, t0.Add(-time.Second))
	want := Container{ID: ctrID, Name: "redis", Runtime: "containerd", PodUID: uid, PodName: "cart-7d9f", PodNamespace: "shop",
		PodLabels: map[string]string{"app": "cart", "pod-template-hash": "7d9f"}}
	if !ok || got.ID != want.ID || got.Name != want.Name || got.Runtime != want.Runtime || got.PodUID != want.PodUID ||
		got.PodName != want.PodName || got.PodNamespace != want.PodNamespace || len(got.PodLabels) != 2 || got.PodLabels["app"] != "cart" {
		t.Fatalf("Lookup = %+v %v, want %+v", got, ok, want)
	}
	sb, ok := c.Lookup(ctx, sandboxID, t0.Add(-time.Second))
	if !ok || !sb.Sandbox || sb.Name != "" || sb.PodName != "cart-7d9f" {
		t.Fatalf("sandbox lookup = %+v %v", sb, ok)
	}

	// Unknown ids of events older than the last list: that list was the
	// authority, no new list.
	f.set(func(f *fakeRuntime) { f.lists = 0 })
	for i := 0; i < 100; i++ {
		if _, ok := c.Lookup(ctx, "unknown", t0.Add(-time.Millisecond)); ok {
			t.Fatal("unknown id resolved")
		}
	}
	if f.lists != 0 {
		t.Errorf("%d lists for ids of events before the last list, want 0", f.lists)
	}
	// An event after the last list: a new list, at once when allowed...
	clk.now = clk.now.Add(time.Second)
	c.Lookup(ctx, "unknown", clk.now)
	// ...and after waiting out MinListInterval when not.
	start := time.Now()
	c.Lookup(ctx, "unknown-2", clk.now.Add(time.Millisecond))
	if f.lists != 2 {
		t.Errorf("%d lists for two events after the last list, want 2", f.lists)
	}
	if waited := time.Since(start); waited < 40*time.Millisecond {
		t.Errorf("second list after %v, want it to wait for MinListInterval", waited)
	}

	// Removed from the runtime: still resolved for the retention, then
	// forgotten.
	f.set(func(f *fakeRuntime) { f.sandboxes, f.containers = nil, nil })
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	clk.now = clk.now.Add(9 * time.Minute)
	c.Refresh(ctx)
	if _, ok := c.Lookup(ctx, ctrID, t0); !ok {
		t.Error("forgotten within the retention")
	}
	clk.now = clk.now.Add(2 * time.Minute)
	c.Refresh(ctx)
	if _, ok := c.Lookup(ctx, ctrID, t0); ok {
		t.Error("still resolved after the retention")
	}
	if n := c.cacheSize(); n != 0 {
		t.Errorf("%d entries cached after the retention, want 0", n)
	}
}

func TestRuntimeDown(t *testing.T) {
	f := kubeletPod()
	f.down = true
	var log bytes.Buffer
	c, err := New(Options{Endpoint: serve(t, f), MinListInterval: time.Nanosecond,
		Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, ok := c.Lookup(ctx, ctrID, time.Now()); ok {
			t.Fatal("resolved while the runtime is down")
		}
	}
	if n := strings.Count(log.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings for one outage, want 1:\n%s", n, log.String())
	}
	f.set(func(f *fakeRuntime) { f.down = false })
	if _, ok := c.Lookup(ctx, ctrID, time.Now()); !ok {
		t.Fatal("not resolved after the runtime came back")
	}
	if !strings.Contains(log.String(), "container runtime reachable") {
		t.Errorf("recovery not logged:\n%s", log.String())
	}
}

func TestNoRuntime(t *testing.T) {
	// Nothing listens: misses and an error, never a hang or a panic.
	c, err := New(Options{Endpoint: filepath.Join(t.TempDir(), "absent.sock"), Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.Lookup(context.Background(), ctrID, time.Now()); ok {
		t.Fatal("resolved without a runtime")
	}
	if err := c.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh without a runtime succeeded")
	}
}

func TestDetectEndpoint(t *testing.T) {
	run := t.TempDir()
	if got := detectEndpoint(run); got != "" {
		t.Errorf("empty run dir: %q", got)
	}
	// A regular file where a socket should be is not a runtime.
	os.MkdirAll(filepath.Join(run, "containerd"), 0o755)
	os.WriteFile(filepath.Join(run, "containerd/containerd.sock"), nil, 0o644)
	os.MkdirAll(filepath.Join(run, "crio"), 0o755)
	l, err := net.Listen("unix", filepath.Join(run, "crio/crio.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got, want := detectEndpoint(run), filepath.Join(run, "crio/crio.sock"); got != want {
		t.Errorf("detectEndpoint = %q, want %q", got, want)
	}
}

// hugePods is a runtime with n pods, each with a container and about
// 1.5 MiB of labels on its sandbox (what the kubelet copies from a pod a
// tenant made).
func hugePods(n int) *fakeRuntime {
	f := &fakeRuntime{}
	for i := range n {
		sb := fmt.Sprintf("%062x%02x", 0xab, i)
		id := fmt.Sprintf("%062x%02x", 0xcd, i)
		u := fmt.Sprintf("0b1e7bd0-4a5e-4c4b-9f34-7d1f1c2a7e%02x", i)
		labels := map[string]string{LabelPodName: fmt.Sprintf("fat-%d", i), LabelPodNamespace: "tenant", LabelPodUID: u}
		for j := range 24000 {
			labels[fmt.Sprintf("l%05d", j)] = strings.Repeat("v", 60)
		}
		f.sandboxes = append(f.sandboxes, &runtimeapi.PodSandbox{Id: sb, Labels: labels,
			Metadata: &runtimeapi.PodSandboxMetadata{Name: fmt.Sprintf("fat-%d", i), Namespace: "tenant", Uid: u}})
		f.containers = append(f.containers, &runtimeapi.Container{Id: id, PodSandboxId: sb, Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Labels: map[string]string{LabelContainerName: "app", LabelPodName: fmt.Sprintf("fat-%d", i), LabelPodNamespace: "tenant", LabelPodUID: u}})
	}
	return f
}

// TestHugeLabels: pods with 1.5 MiB of labels each. Four of them list past
// gRPC's 4 MiB default: every container is still named, with its pod's
// labels cut to event.MaxLabels. Twelve list past the kubelet's own 16
// MiB: the containers are named all the same, without labels, and one
// warning says why.
func TestHugeLabels(t *testing.T) {
	for _, tt := range []struct {
		pods   int
		labels bool
	}{{4, true}, {12, false}} {
		f := hugePods(tt.pods)
		var log strings.Builder
		c, err := New(Options{Endpoint: serve(t, f), Logger: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Refresh(context.Background()); err != nil {
			t.Fatalf("%d pods: %v", tt.pods, err)
		}
		for i, ctr := range f.containers {
			got, ok := c.cached(ctr.GetId())
			if !ok || got.Name != "app" || got.PodName != fmt.Sprintf("fat-%d", i) || got.PodNamespace != "tenant" {
				t.Errorf("%d pods: container %d: %+v %v", tt.pods, i, got, ok)
				continue
			}
			if tt.labels && (len(got.PodLabels) != event.MaxLabels || !got.PodLabelsTruncated) {
				t.Errorf("%d pods: %d labels (truncated %v), want %d", tt.pods, len(got.PodLabels), got.PodLabelsTruncated, event.MaxLabels)
			}
			if !tt.labels && len(got.PodLabels) != 0 {
				t.Errorf("%d pods: %d labels from a list that was too large", tt.pods, len(got.PodLabels))
			}
		}
		if warned := strings.Contains(log.String(), "too large"); warned == tt.labels {
			t.Errorf("%d pods: warned %v:\n%s", tt.pods, warned, log.String())
		}
		c.Close()
	}
}

// FuzzConvert: whatever the runtime lists (labels come from tenants'
// pods), a sandbox and its container convert to names with bounded labels,
// none of the kubelet's own io.kubernetes.* among them, shared by the
// container, and the pod's identity read from the kubelet's labels first.
func FuzzConvert(f *testing.F) {
	f.Add("cart-7d9f", "shop", uid, "redis", "app", "cart", 3)
	f.Add("", "", "", "", "io.kubernetes.pod.name", "x", 300)
	f.Fuzz(func(t *testing.T, podName, namespace, podUID, ctrName, key, value string, n int) {
		n = min(max(n, 0), 300)
		labels := map[string]string{LabelPodName: podName, LabelPodNamespace: namespace, LabelPodUID: podUID, key: value}
		for i := range n {
			labels[fmt.Sprintf("l%d", i)] = value
		}
		sb := &runtimeapi.PodSandbox{Id: sandboxID, Labels: labels, Metadata: &runtimeapi.PodSandboxMetadata{Name: "meta-" + podName, Namespace: namespace, Uid: podUID}}
		pod := sandboxContainer(sb, "containerd")
		if len(pod.PodLabels) > event.MaxLabels {
			t.Errorf("%d labels", len(pod.PodLabels))
		}
		for k := range pod.PodLabels {
			if strings.HasPrefix(k, "io.kubernetes.") {
				t.Errorf("the kubelet's label %q kept", k)
			}
		}
		if pod.PodName != first(labels[LabelPodName], "meta-"+podName) || pod.PodNamespace != first(labels[LabelPodNamespace], namespace) ||
			pod.PodUID != first(labels[LabelPodUID], podUID) || !pod.Sandbox {
			t.Errorf("sandbox %+v", pod)
		}
		ctr := containerOf(&runtimeapi.Container{Id: ctrID, PodSandboxId: sandboxID, Labels: map[string]string{LabelContainerName: ctrName},
			Metadata: &runtimeapi.ContainerMetadata{Name: "meta"}}, pod, "containerd")
		if ctr.PodUID != pod.PodUID || ctr.PodName != pod.PodName || ctr.PodLabelsTruncated != pod.PodLabelsTruncated || len(ctr.PodLabels) != len(pod.PodLabels) ||
			ctr.Sandbox || (ctrName != "" && ctr.Name != ctrName) || (ctrName == "" && ctr.Name != "meta") {
			t.Errorf("container %+v of %+v", ctr, pod)
		}
	})
}
