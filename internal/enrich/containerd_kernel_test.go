// SPDX-License-Identifier: Apache-2.0

package enrich

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cause"
	"github.com/oomtrace/oomtrace/internal/correlate"
	"github.com/oomtrace/oomtrace/internal/cri"
	"github.com/oomtrace/oomtrace/internal/harness/critest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
	"github.com/oomtrace/oomtrace/tracer"
)

// kills runs a tracer and hands over the kills of victims below root.
func kills(t *testing.T, root string) <-chan event.OOMKill {
	t.Helper()
	tr, err := tracer.New(tracer.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatalf("tracer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan event.OOMKill, 1024)
	done := make(chan error, 1)
	go func() {
		done <- tr.Run(ctx, tracer.Handlers{OOMKill: func(ev event.OOMKill, commit func()) {
			commit()
			// Other processes on this machine may be OOM-killed too.
			if ev.Victim.Memcg != nil && strings.HasPrefix(ev.Victim.Memcg.Path, root+"/") {
				ch <- ev
			}
		}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tracer run: %v", err)
		}
		tr.Close()
	})
	return ch
}

// nextKill waits for the kill of a task in the container.
func nextKill(t *testing.T, ch <-chan event.OOMKill, containerID string) event.OOMKill {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev := <-ch:
			if strings.HasSuffix(ev.Victim.Memcg.Path, "/"+containerID) {
				return ev
			}
			t.Logf("kill of another task: %d %q in %s", ev.Victim.PID, ev.Victim.Comm, ev.Victim.Memcg.Path)
		case <-timeout:
			t.Fatalf("no OOM kill of container %s within 60 s", containerID)
		}
	}
}

func checkContainer(t *testing.T, what string, got *event.Container, id, name string) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s.container is null, want %s (%s)", what, name, id)
	}
	if got.ID != id || got.Name != name || got.Runtime != "containerd" {
		t.Errorf("%s.container = %+v, want id %s name %s runtime containerd", what, *got, id, name)
	}
}

func checkPod(t *testing.T, what string, got *event.Pod, p *critest.Pod, qos string) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s.pod is null, want %s/%s", what, p.Namespace, p.Name)
	}
	if got.UID != p.UID || got.Name != p.Name || got.Namespace != p.Namespace || got.QoS != qos {
		t.Errorf("%s.pod = %+v, want uid %s %s/%s qos %s", what, *got, p.UID, p.Namespace, p.Name, qos)
	}
}

func checkOOMKilled(t *testing.T, rt *critest.Runtime, id string) {
	t.Helper()
	st := rt.WaitExited(t, id, 30*time.Second)
	if st.ExitCode != 137 || st.Reason != "OOMKilled" {
		t.Errorf("CRI says exit %d reason %q, want 137 OOMKilled", st.ExitCode, st.Reason)
	}
}

// TestContainerd attributes real OOM kills in pods run by a real containerd
// over CRI, labeled the way the kubelet labels them.
func TestContainerd(t *testing.T) {
	testenv.RequirePrivileged(t)
	rt := critest.Start(t)
	ch := kills(t, rt.CgroupRoot)
	client, err := cri.New(cri.Options{Endpoint: rt.Socket, MinListInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	e := &Enricher{Resolver: client}
	ctx := context.Background()

	t.Run("container limit", func(t *testing.T) {
		pod := rt.RunPod(t, critest.PodOptions{Name: "cart-7d9f", Namespace: "shop", Labels: map[string]string{"app": "cart"}})
		id := pod.StartContainer(t, critest.ContainerOptions{Name: "redis", Args: []string{"hog", "400"}, MemoryLimit: 64 << 20, OOMScoreAdj: 900})
		ev := nextKill(t, ch, id)
		e.OOMKill(ctx, &ev)
		cause.Classify(&ev) // the domain kind from the real paths, as the pipeline classifies it
		checkContainer(t, "victim", ev.Victim.Container, id, "redis")
		checkPod(t, "victim", ev.Victim.Pod, pod, "burstable")
		if ev.Victim.Pod.Labels["app"] != "cart" {
			t.Errorf("victim.pod.labels = %v, want app=cart", ev.Victim.Pod.Labels)
		}
		checkContainer(t, "trigger", ev.Trigger.Container, id, "redis")
		if ev.OOM.Domain == nil || ev.OOM.Domain.Kind != event.DomainContainer || ev.OOM.Domain.LimitBytes != 64<<20 {
			t.Errorf("oom.domain = %+v, want kind container, limit 64 MiB", ev.OOM.Domain)
		}
		checkOOMKilled(t, rt, id)
	})

	t.Run("pod limit", func(t *testing.T) {
		pod := rt.RunPod(t, critest.PodOptions{Name: "etl-0", Namespace: "batch", QoS: "guaranteed", MemoryLimit: 64 << 20})
		id := pod.StartContainer(t, critest.ContainerOptions{Name: "worker", Args: []string{"hog", "400"}})
		ev := nextKill(t, ch, id)
		e.OOMKill(ctx, &ev)
		cause.Classify(&ev)
		checkContainer(t, "victim", ev.Victim.Container, id, "worker")
		checkPod(t, "victim", ev.Victim.Pod, pod, "guaranteed")
		if d := ev.OOM.Domain; d == nil || d.Kind != event.DomainPod || d.Cgroup == nil || d.Path != pod.CgroupParent {
			t.Errorf("oom.domain = %+v, want kind pod at %s", d, pod.CgroupParent)
		}
		checkOOMKilled(t, rt, id)
	})

	t.Run("trigger and victim in different containers", func(t *testing.T) {
		pod := rt.RunPod(t, critest.PodOptions{Name: "api-5c8b", Namespace: "web", MemoryLimit: 96 << 20})
		// The idle sidecar is the kernel's choice: with oom_score_adj 1000
		// its badness is its RSS plus the whole limit, more than the
		// allocating app (adj 0) can reach below that limit.
		idle := pod.StartContainer(t, critest.ContainerOptions{Name: "sidecar", Args: []string{"idle", "8"}, OOMScoreAdj: 1000})
		waitRunning(t, rt, idle)
		hog := pod.StartContainer(t, critest.ContainerOptions{Name: "app", Args: []string{"hog", "400"}})
		ev := nextKill(t, ch, idle)
		e.OOMKill(ctx, &ev)
		cause.Classify(&ev)
		checkContainer(t, "victim", ev.Victim.Container, idle, "sidecar")
		checkContainer(t, "trigger", ev.Trigger.Container, hog, "app")
		checkPod(t, "victim", ev.Victim.Pod, pod, "burstable")
		checkPod(t, "trigger", ev.Trigger.Pod, pod, "burstable")
		if ev.OOM.Domain == nil || ev.OOM.Domain.Kind != event.DomainPod {
			t.Errorf("oom.domain = %+v, want kind pod", ev.OOM.Domain)
		}
		checkOOMKilled(t, rt, idle)
	})

	t.Run("container removed before the lookup", func(t *testing.T) {
		pod := rt.RunPod(t, critest.PodOptions{Name: "job-x1", Namespace: "batch"})
		id := pod.StartContainer(t, critest.ContainerOptions{Name: "once", Args: []string{"hog", "400"}, MemoryLimit: 48 << 20, OOMScoreAdj: 900})
		// The runtime is listed while the container exists, as the
		// periodic refresh does in the daemon.
		if _, ok := client.Lookup(ctx, id, time.Now()); !ok {
			t.Fatalf("the runtime does not list container %s", id)
		}
		ev := nextKill(t, ch, id)
		// Gone from the runtime and from the cgroup tree before the event
		// is looked at.
		pod.Remove(t)
		if err := client.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.CRI.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); err == nil {
			t.Fatal("container still known to the runtime after removal")
		}
		if _, err := os.Stat(rt.Memcg.Root + ev.Victim.Memcg.Path); err == nil {
			t.Fatal("container cgroup still exists after removal")
		}
		e.OOMKill(ctx, &ev)
		cause.Classify(&ev)
		checkContainer(t, "victim", ev.Victim.Container, id, "once")
		checkPod(t, "victim", ev.Victim.Pod, pod, "burstable")
		if ev.OOM.Domain == nil || ev.OOM.Domain.Kind != event.DomainContainer {
			t.Errorf("oom.domain = %+v, want kind container", ev.OOM.Domain)
		}
		// A client without that history cannot name it: the retention did.
		fresh, err := cri.New(cri.Options{Endpoint: rt.Socket})
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		if c, ok := fresh.Lookup(ctx, id, ev.Time.Time); ok {
			t.Errorf("a fresh client resolved the removed container: %+v", c)
		}
	})
}

// TestContainerdDead: the runtime crashed before the kill (its containers
// live on under their shims). The event still carries everything the
// cgroup path says, one warning is logged, nothing fails.
func TestContainerdDead(t *testing.T) {
	testenv.RequirePrivileged(t)
	rt := critest.Start(t)
	ch := kills(t, rt.CgroupRoot)
	pod := rt.RunPod(t, critest.PodOptions{Name: "late-1", Namespace: "batch", QoS: "besteffort"})
	id := pod.StartContainer(t, critest.ContainerOptions{Name: "hog", Args: []string{"hog", "400", "1500"}, MemoryLimit: 48 << 20, OOMScoreAdj: 900})
	rt.Kill(t)

	var log strings.Builder
	client, err := cri.New(cri.Options{Endpoint: rt.Socket, MinListInterval: time.Nanosecond,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	e := &Enricher{Resolver: client}
	ev := nextKill(t, ch, id)
	e.OOMKill(context.Background(), &ev)
	cause.Classify(&ev)
	want := &event.Container{ID: id}
	if c := ev.Victim.Container; c == nil || *c != *want {
		t.Errorf("victim.container = %+v, want %+v", c, want)
	}
	if p := ev.Victim.Pod; p == nil || p.UID != pod.UID || p.QoS != "besteffort" || p.Name != "" {
		t.Errorf("victim.pod = %+v, want uid %s qos besteffort, no name", p, pod.UID)
	}
	if ev.OOM.Domain.Kind != event.DomainContainer {
		t.Errorf("domain kind %q", ev.OOM.Domain.Kind)
	}
	e.OOMKill(context.Background(), &ev) // a second event: no second warning
	if n := strings.Count(log.String(), "container runtime unavailable"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, log.String())
	}
}

func waitRunning(t *testing.T, rt *critest.Runtime, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := rt.CRI.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err == nil && st.Status.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			// Give it a moment to touch its memory.
			time.Sleep(300 * time.Millisecond)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("container %s not running", id)
}

// TestContainerdStopSignals stops a container the way a hard eviction does
// (CRI StopContainer with a 2 s grace period) and checks that the kernel's
// view of it reaches the pod's eviction: the runtime's SIGTERM, ignored, and
// its SIGKILL after the grace period, attributed to the container.
func TestContainerdStopSignals(t *testing.T) {
	testenv.RequirePrivileged(t)
	rt := critest.Start(t)
	correlator := correlate.New(time.Minute)
	tr, err := tracer.New(tracer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, tracer.Handlers{TaskSignal: correlator.Signal}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		tr.Close()
	}()
	client, err := cri.New(cri.Options{Endpoint: rt.Socket, MinListInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	e := &Enricher{Resolver: client}

	pod := rt.RunPod(t, critest.PodOptions{Name: "victim-0", Namespace: "batch"})
	id := pod.StartContainer(t, critest.ContainerOptions{Name: "app", Args: []string{"stubborn"}})
	waitRunning(t, rt, id)
	evicted := time.Now()
	stopStart := time.Now()
	if _, err := rt.CRI.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(stopStart)
	st := rt.WaitExited(t, id, 10*time.Second)
	if st.ExitCode != 137 || stopped < 2*time.Second {
		t.Errorf("stop: exit %d after %v, want SIGKILL (137) after the 2 s grace period", st.ExitCode, stopped)
	}
	time.Sleep(200 * time.Millisecond) // the last records through the ring buffer
	ev := event.Eviction{Time: event.Time{Time: evicted}, Pod: event.Pod{UID: pod.UID}}
	correlator.Eviction(&ev)
	var term, kill *event.SignalRef
	for i, s := range ev.KernelSignals {
		if s.Container != id {
			continue // the pause process is not stopped here; nothing else is in the pod
		}
		switch s.Signal {
		case "SIGTERM":
			term = &ev.KernelSignals[i]
		case "SIGKILL":
			kill = &ev.KernelSignals[i]
		}
	}
	if term == nil || kill == nil {
		t.Fatalf("kernel signals %+v, want the container's SIGTERM and SIGKILL", ev.KernelSignals)
	}
	if term.SecondsAfter < 0 || term.SecondsAfter > 1 || kill.SecondsAfter < 1.9 || kill.SecondsAfter > 4 {
		t.Errorf("SIGTERM at +%.2fs, SIGKILL at +%.2fs: want at once and after the 2 s grace period", term.SecondsAfter, kill.SecondsAfter)
	}
	if term.Comm != "ctrbin" || term.SenderComm == "" {
		t.Errorf("SIGTERM %+v", *term)
	}
	if name, sandbox := e.Container(context.Background(), id, evicted); name != "app" || sandbox {
		t.Errorf("container name %q sandbox %v, want app", name, sandbox)
	}
	t.Logf("SIGTERM from %q (%d) at +%.3fs, SIGKILL from %q (%d) at +%.3fs",
		term.SenderComm, term.SenderPID, term.SecondsAfter, kill.SenderComm, kill.SenderPID, kill.SecondsAfter)

	// Removing the pod SIGKILLs its pause process: the signal's cgroup
	// names the sandbox id, which the runtime says is the sandbox.
	pod.Remove(t)
	time.Sleep(200 * time.Millisecond)
	ev = event.Eviction{Time: event.Time{Time: evicted}, Pod: event.Pod{UID: pod.UID}}
	correlator.Eviction(&ev)
	var pause *event.SignalRef
	for i, s := range ev.KernelSignals {
		if s.Container == pod.ID && s.Signal == "SIGKILL" {
			pause = &ev.KernelSignals[i]
		}
	}
	if pause == nil {
		t.Fatalf("kernel signals %+v, want the pause process's SIGKILL", ev.KernelSignals)
	}
	if name, sandbox := e.Container(context.Background(), pod.ID, pause.Time.Time); name != "" || !sandbox {
		t.Errorf("sandbox %s: name %q sandbox %v, want the sandbox", pod.ID, name, sandbox)
	}
}
