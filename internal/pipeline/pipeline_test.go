// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter"
	"github.com/oomtrace/oomtrace/internal/correlate"
	"github.com/oomtrace/oomtrace/internal/cri"
	"github.com/oomtrace/oomtrace/internal/enrich"
)

// written records what reaches the output.
type written struct {
	kills     []event.OOMKill
	evictions []event.Eviction
	pressure  []event.MemoryPressure
	nodes     []event.NodeCondition
	refusals  []event.CommitRefusal
	warnings  []event.CgroupPressure
}

func (w *written) Write(ev event.Event) error {
	switch ev := ev.(type) {
	case event.OOMKill:
		w.kills = append(w.kills, ev)
	case event.CommitRefusal:
		w.refusals = append(w.refusals, ev)
	case event.MemoryPressure:
		w.pressure = append(w.pressure, ev)
	case event.Eviction:
		w.evictions = append(w.evictions, ev)
	case event.NodeCondition:
		w.nodes = append(w.nodes, ev)
	case event.CgroupPressure:
		w.warnings = append(w.warnings, ev)
	}
	return nil
}

const (
	podUID = "0b1e7bd0-4a5e-4c4b-9f34-7d1f1c2a7e10"
	ctrID  = "aaaa000000000000000000000000000000000000000000000000000000000001"
)

// allocatableKill is a kill at the kubepods limit of a task in a pod, as
// the tracer hands it over (no attribution yet).
func allocatableKill(at time.Time) event.OOMKill {
	path := "/kubepods/burstable/pod" + podUID + "/" + ctrID
	return event.OOMKill{Type: event.TypeOOMKill, Time: event.Time{Time: at},
		Victim:  event.Victim{Process: event.Process{PID: 7, TGID: 7, Comm: "java", Memcg: &event.Cgroup{ID: 1, Path: path}}},
		Trigger: event.Process{PID: 7, TGID: 7, Comm: "java", Memcg: &event.Cgroup{ID: 1, Path: path}},
		OOM:     event.OOM{Scope: event.ScopeMemcg, Domain: &event.Domain{Cgroup: &event.Cgroup{ID: 2, Path: "/kubepods"}}},
	}
}

func newStage(out *written, namespaces []string) *stage {
	return &stage{ctx: context.Background(), enricher: &enrich.Enricher{}, correlator: correlate.New(time.Minute),
		filter: NewFilter(namespaces, nil), metrics: exporter.NewMetrics(exporter.MetricsOptions{}), out: out}
}

// The kernel kill first, the kubelet's eviction of the pod after it: the
// eviction lists the kill.
func TestStageKillThenEviction(t *testing.T) {
	out := &written{}
	a := newStage(out, nil)
	t0 := time.Now()
	a.Write(allocatableKill(t0))
	a.Write(event.Eviction{Type: event.TypeEviction, Time: event.Time{Time: t0.Add(8 * time.Second)},
		Pod: event.Pod{UID: podUID, Name: "cart", Namespace: "shop"}, Cause: event.CauseKubeletEviction})
	if len(out.kills) != 1 || out.kills[0].Cause != event.CauseOOMAllocatable || out.kills[0].OOM.Domain.Kind != event.DomainAllocatable ||
		out.kills[0].Victim.Pod == nil || out.kills[0].Victim.Pod.UID != podUID || out.kills[0].Eviction != nil {
		t.Fatalf("kill %+v", out.kills)
	}
	if len(out.evictions) != 1 || len(out.evictions[0].KernelOOMKills) != 1 || out.evictions[0].KernelOOMKills[0].SecondsBefore != 8 ||
		out.evictions[0].KernelOOMKills[0].Cause != event.CauseOOMAllocatable {
		t.Fatalf("eviction %+v", out.evictions)
	}
}

// The eviction first, a kernel kill in the pod during its grace period:
// the kill points to the eviction. A namespace filter keeps the eviction
// of a kept namespace and drops the others'.
func TestStageEvictionThenKill(t *testing.T) {
	out := &written{}
	a := newStage(out, []string{"shop"})
	t0 := time.Now()
	a.Write(event.Eviction{Type: event.TypeEviction, Time: event.Time{Time: t0},
		Pod: event.Pod{UID: podUID, Name: "cart", Namespace: "shop"}, Cause: event.CauseKubeletEviction, Message: "m"})
	a.Write(event.Eviction{Type: event.TypeEviction, Time: event.Time{Time: t0}, Pod: event.Pod{UID: "other", Name: "x", Namespace: "web"}})
	a.Write(allocatableKill(t0.Add(1500 * time.Millisecond)))
	if len(out.evictions) != 1 || out.evictions[0].Pod.Namespace != "shop" || out.evictions[0].KernelOOMKills == nil {
		t.Fatalf("evictions %+v", out.evictions)
	}
	// No runtime here: the pod has no name, so a namespace filter cannot
	// keep the kill; it is counted as filtered, not lost.
	if len(out.kills) != 0 || a.filtered.Load() != 2 {
		t.Fatalf("kills %+v filtered %d", out.kills, a.filtered.Load())
	}
	a.filter = NewFilter(nil, nil)
	a.Write(allocatableKill(t0.Add(2 * time.Second)))
	if len(out.kills) != 1 || out.kills[0].Eviction == nil || out.kills[0].Eviction.SecondsBefore != 2 || out.kills[0].Eviction.Message != "m" {
		t.Fatalf("kill after eviction %+v", out.kills)
	}
}

// runtimeOf is a container runtime that knows one container and one sandbox.
type runtimeOf map[string]cri.Container

func (r runtimeOf) Lookup(_ context.Context, id string, _ time.Time) (cri.Container, bool) {
	c, ok := r[id]
	return c, ok
}

// The kubelet's stop of an evicted pod, as the kernel saw it: the
// container's SIGTERM and SIGKILL are named by the container's name, the
// pause process's SIGKILL is marked as the pod's sandbox, and a container
// the runtime does not know keeps its id.
func TestStageKernelSignalsNamed(t *testing.T) {
	const sandboxID = "bbbb000000000000000000000000000000000000000000000000000000000002"
	const unknownID = "cccc000000000000000000000000000000000000000000000000000000000003"
	out := &written{}
	a := newStage(out, nil)
	a.enricher.Resolver = runtimeOf{ctrID: {Name: "app"}, sandboxID: {Sandbox: true}}
	t0 := time.Now()
	signal := func(id, sig string, after time.Duration) {
		a.correlator.Signal(event.TaskSignal{Time: event.Time{Time: t0.Add(after)}, Signal: sig,
			Target: event.Process{PID: 9, Comm: "x", Memcg: &event.Cgroup{Path: "/kubepods/burstable/pod" + podUID + "/" + id}}})
	}
	signal(ctrID, "SIGTERM", 10*time.Millisecond)
	signal(ctrID, "SIGKILL", 2*time.Second)
	signal(sandboxID, "SIGKILL", 2100*time.Millisecond)
	signal(unknownID, "SIGKILL", 2200*time.Millisecond)
	// The runtime never listed the loader (removed at once); the API's
	// container status names it.
	const loaderID = "dddd000000000000000000000000000000000000000000000000000000000004"
	signal(loaderID, "SIGTERM", 2300*time.Millisecond)
	a.Write(event.Eviction{Type: event.TypeEviction, Time: event.Time{Time: t0}, Pod: event.Pod{UID: podUID}, Cause: event.CauseKubeletEviction,
		ContainerExits: []event.ContainerExit{{Name: "loader", ContainerID: loaderID}}})
	if len(out.evictions) != 1 {
		t.Fatalf("evictions %+v", out.evictions)
	}
	got := out.evictions[0].KernelSignals
	want := []struct {
		container string
		sandbox   bool
		signal    string
		after     float64
	}{{"app", false, "SIGTERM", 0.01}, {"app", false, "SIGKILL", 2}, {"", true, "SIGKILL", 2.1}, {unknownID, false, "SIGKILL", 2.2}, {"loader", false, "SIGTERM", 2.3}}
	if len(got) != len(want) {
		t.Fatalf("kernel signals %+v", got)
	}
	for i, w := range want {
		if g := got[i]; g.Container != w.container || g.Sandbox != w.sandbox || g.Signal != w.signal || g.SecondsAfter != w.after {
			t.Errorf("signal %d: %+v, want %+v", i, g, w)
		}
	}
}

// The pipeline as the binary uses it: events from any goroutine go through
// its queue and stage to the metrics and the output; Close drains them;
// Signal reaches the correlator without the queue.
func TestPipelineQueuesAndDrains(t *testing.T) {
	out := &written{}
	metrics := &written{}
	p := New(context.Background(), Options{Filter: NewFilter([]string{"shop"}, nil), Metrics: metrics, Out: out, QueueSize: 16, CorrelationWindow: time.Minute})
	t0 := time.Now()
	p.Signal(event.TaskSignal{Time: event.Time{Time: t0.Add(time.Second)}, Signal: "SIGTERM",
		Target: event.Process{PID: 9, Memcg: &event.Cgroup{Path: "/kubepods/burstable/pod" + podUID + "/" + ctrID}}})
	p.Write(event.Eviction{Type: event.TypeEviction, Time: event.Time{Time: t0}, Pod: event.Pod{UID: podUID, Name: "cart", Namespace: "shop"}})
	p.Write(event.Eviction{Type: event.TypeEviction, Time: event.Time{Time: t0}, Pod: event.Pod{UID: "other", Name: "x", Namespace: "web"}})
	p.Write(event.NodeCondition{Type: event.TypeNodeCondition, Condition: "MemoryPressure", Status: "True"})
	if !p.Close(5 * time.Second) {
		t.Fatal("pipeline did not drain")
	}
	if len(out.evictions) != 1 || out.evictions[0].Pod.Name != "cart" || len(out.nodes) != 1 {
		t.Fatalf("output: evictions %+v nodes %+v", out.evictions, out.nodes)
	}
	if ks := out.evictions[0].KernelSignals; len(ks) != 1 || ks[0].Signal != "SIGTERM" || ks[0].Container != ctrID {
		t.Errorf("kernel signals %+v: want the SIGTERM recorded through Signal", ks)
	}
	if len(metrics.evictions) != 2 || len(metrics.nodes) != 1 || p.Filtered() != 1 || p.Dropped() != 0 {
		t.Errorf("metrics saw %d evictions, %d node conditions; filtered %d dropped %d: want 2, 1, 1, 0",
			len(metrics.evictions), len(metrics.nodes), p.Filtered(), p.Dropped())
	}
	if p.Write(event.NodeCondition{}); p.Dropped() != 1 {
		t.Errorf("a write after Close: dropped %d, want 1", p.Dropped())
	}
}

// acks records the acknowledged kills' sequence numbers.
type acks struct {
	mu   sync.Mutex
	seqs map[uint64]int
}

func (a *acks) ack(seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seqs == nil {
		a.seqs = map[uint64]int{}
	}
	a.seqs[seq]++
}

// commit is the commit the tracer hands over with kill seq.
func (a *acks) commit(seq uint64) func() { return func() { a.ack(seq) } }

// kill hands ev to p as the tracer does, with its commit.
func (a *acks) kill(p *Pipeline, ev event.OOMKill) { p.OOMKill(ev, a.commit(ev.Seq)) }

func (a *acks) count(seq uint64) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seqs[seq]
}

// gate blocks the output until opened, then fails every write with err
// (nil: succeeds).
type gate struct {
	open chan struct{}
	err  error
}

func (g *gate) Write(event.Event) error {
	<-g.open
	return g.err
}

// Every kill is acknowledged exactly once, whatever becomes of it: written
// out, kept out by the filter, or dropped from a full queue; never one the
// output failed to write.
func TestAckOncePerKill(t *testing.T) {
	kill := func(seq uint64, ns string) event.OOMKill {
		ev := allocatableKill(time.Now())
		ev.Seq = seq
		if ns != "" {
			// A host process: the namespace filter keeps it out.
			ev.Victim.Memcg.Path, ev.Trigger.Memcg.Path = "/system.slice/"+ns+".service", "/system.slice/"+ns+".service"
		}
		return ev
	}
	var a acks
	g := &gate{open: make(chan struct{})}
	// Everything goes out (no filter), through a queue of 2 whose writer
	// is stuck: 1 in the writer, 2 queued, the rest dropped.
	p := New(context.Background(), Options{Out: g, QueueSize: 2})
	a.kill(p, kill(1, ""))
	waitFor(t, func() bool { return p.outbox.inflight.Load() })
	a.kill(p, kill(2, ""))
	a.kill(p, kill(3, ""))
	waitFor(t, func() bool { return p.outbox.pending() == 3 })
	a.kill(p, kill(4, ""))
	// Dropped from the full output queue: acknowledged at once.
	waitFor(t, func() bool { return a.count(4) == 1 })
	if p.Dropped() != 1 || p.DroppedKills() != 1 {
		t.Errorf("dropped %d, kills dropped %d; want 1, 1", p.Dropped(), p.DroppedKills())
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if a.count(seq) != 0 {
			t.Errorf("kill %d acknowledged before it was written", seq)
		}
	}
	close(g.open)
	drainAckedOnce(t, p, &a, 4)

	// Filtered kills are acknowledged; kills the output failed on are not.
	var b acks
	failing := &gate{open: make(chan struct{}), err: errors.New("broken pipe")}
	close(failing.open)
	failed := make(chan error, 1)
	p = New(context.Background(), Options{Out: failing, QueueSize: 8, Filter: NewFilter([]string{"shop"}, nil),
		OutFailed: func(err error) { failed <- err }})
	b.kill(p, kill(1, "cron"))
	p.Write(event.Eviction{Type: event.TypeEviction, Pod: event.Pod{UID: podUID, Name: "cart", Namespace: "shop"}})
	<-failed
	// A kill after the failure: unnamed (no runtime), the filter would
	// keep it out, so it goes to the stage's output by hand.
	p.stage.commits.hold(2, b.commit(2))
	p.stage.out.Write(kill(2, ""))
	p.Close(5 * time.Second)
	if b.count(1) != 1 || b.count(2) != 0 || p.OutErr() == nil || p.Filtered() != 1 {
		t.Errorf("filtered kill acknowledged %d times (want 1), failed kill %d (want 0); out error %v, filtered %d",
			b.count(1), b.count(2), p.OutErr(), p.Filtered())
	}
}

// A kill the output fails to write is not acknowledged: the write that
// fails is the kill's own (the first write, nothing before it).
func TestNoAckForAKillOutFailed(t *testing.T) {
	var a acks
	failing := &gate{open: make(chan struct{}), err: errors.New("broken pipe")}
	close(failing.open)
	failed := make(chan error, 1)
	p := New(context.Background(), Options{Out: failing, QueueSize: 8, OutFailed: func(err error) { failed <- err }})
	ev := allocatableKill(time.Now())
	ev.Seq = 7
	a.kill(p, ev)
	<-failed
	p.Close(5 * time.Second)
	if a.count(7) != 0 || p.Dropped() != 1 {
		t.Errorf("a kill whose write failed: acknowledged %d times (want 0), dropped %d (want 1)", a.count(7), p.Dropped())
	}
}

// A kill dropped from a full inbox (the stage is stuck) is acknowledged at
// once: unacknowledged, the kernel's journal would hold it, the consumer
// position could not pass it and the ring buffer would fill.
func TestAckInboxFull(t *testing.T) {
	var a acks
	stuck := &firstStuck{gate: gate{open: make(chan struct{})}}
	metrics := exporter.NewMetrics(exporter.MetricsOptions{})
	p := New(context.Background(), Options{Metrics: teeSink{stuck, metrics}, Out: &written{}, QueueSize: 2})
	kill := func(seq uint64) event.OOMKill {
		ev := allocatableKill(time.Now())
		ev.Seq = seq
		return ev
	}
	a.kill(p, kill(1))
	waitFor(t, func() bool { return p.inbox.inflight.Load() })
	a.kill(p, kill(2))
	a.kill(p, kill(3))
	a.kill(p, kill(4))
	waitFor(t, func() bool { return a.count(4) == 1 })
	if p.inbox.Dropped() != 1 || p.DroppedKills() != 1 {
		t.Errorf("inbox dropped %d, kills dropped %d; want 1, 1", p.inbox.Dropped(), p.DroppedKills())
	}
	// Counted in the metrics all the same, before the stage took the others.
	if n := testutil.CollectAndCount(metrics, "oomtrace_oom_kills_total"); n != 1 {
		t.Errorf("%d series of oomtrace_oom_kills_total after the drop, want the dropped kill's", n)
	}
	close(stuck.open)
	drainAckedOnce(t, p, &a, 4)
}

// drainAckedOnce closes p and requires kills 1 to n acknowledged once each.
func drainAckedOnce(t *testing.T, p *Pipeline, a *acks, n uint64) {
	t.Helper()
	if !p.Close(5 * time.Second) {
		t.Fatal("pipeline did not drain")
	}
	for seq := uint64(1); seq <= n; seq++ {
		if a.count(seq) != 1 {
			t.Errorf("kill %d acknowledged %d times, want 1", seq, a.count(seq))
		}
	}
}

// firstStuck blocks its first write until the gate opens: the stage's
// first event, which keeps the stage busy.
type firstStuck struct {
	gate
	started atomic.Bool
}

func (f *firstStuck) Write(ev event.Event) error {
	if f.started.CompareAndSwap(false, true) {
		return f.gate.Write(ev)
	}
	return nil
}

// teeSink writes to each sink.
type teeSink []Sink

func (t teeSink) Write(ev event.Event) error {
	for _, s := range t {
		s.Write(ev)
	}
	return nil
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// The cluster view names a killed process's workload, by its pod's uid.
func TestStageOwners(t *testing.T) {
	out := &written{}
	s := newStage(out, nil)
	s.owners = func(uid string) *event.PodOwner {
		if uid == podUID {
			return &event.PodOwner{Kind: "Deployment", Name: "cart"}
		}
		return nil
	}
	s.Write(allocatableKill(time.Now()))
	if len(out.kills) != 1 || out.kills[0].Victim.Pod.Owner.String() != "Deployment/cart" || out.kills[0].Trigger.Pod.Owner.String() != "Deployment/cart" {
		t.Fatalf("kill %+v", out.kills)
	}
}

// A warning names its cgroup's pod and container (from the path here, no
// runtime), and is kept out by the namespace filter like a kill; a kill in
// a cgroup that was under pressure carries the episode, the victim's
// cgroup's before the domain's.
func TestStagePressure(t *testing.T) {
	out := &written{}
	st := newStage(out, []string{"shop"})
	path := "/kubepods/burstable/pod" + podUID + "/" + ctrID
	st.Write(event.CgroupPressure{Type: event.TypeCgroupPressure, State: event.PressureStarted, Memcg: event.Cgroup{ID: 1, Path: path}})
	if len(out.warnings) != 0 || st.filtered.Load() != 1 {
		t.Fatalf("a warning of no pod of namespace shop went out: %+v", out.warnings)
	}
	st = newStage(out, nil)
	st.Write(event.CgroupPressure{Type: event.TypeCgroupPressure, State: event.PressureStarted, Memcg: event.Cgroup{ID: 1, Path: path}})
	if len(out.warnings) != 1 || out.warnings[0].Pod == nil || out.warnings[0].Pod.UID != podUID || out.warnings[0].Container == nil || out.warnings[0].Container.ID != ctrID {
		t.Fatalf("warning %+v: want its pod and container from the path", out.warnings)
	}
	episodes := map[string]*event.PressureEpisode{
		path:        {DurationSeconds: 40, Reasons: []string{event.PressureNearLimit}},
		"/kubepods": {DurationSeconds: 3, Reasons: []string{event.PressureStalling}},
	}
	st.pressureEpisode = func(p string) *event.PressureEpisode { return episodes[p] }
	st.Write(allocatableKill(time.Now()))
	if k := out.kills[len(out.kills)-1]; k.Pressure == nil || k.Pressure.DurationSeconds != 40 {
		t.Errorf("the kill's pressure %+v: want its victim's cgroup's episode", k.Pressure)
	}
	delete(episodes, path)
	st.Write(allocatableKill(time.Now()))
	if k := out.kills[len(out.kills)-1]; k.Pressure == nil || k.Pressure.DurationSeconds != 3 {
		t.Errorf("the kill's pressure %+v: want its domain's episode", k.Pressure)
	}
}
