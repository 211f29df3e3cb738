// SPDX-License-Identifier: Apache-2.0

package correlate

import (
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cause"
)

var t0 = time.Unix(1_800_000_000, 0)

func sig(below bool) *event.MemorySignal { return &event.MemorySignal{BelowThreshold: below} }

func kill(uid, container string, at time.Time, kind string, pressure bool) event.OOMKill {
	ev := event.OOMKill{Type: event.TypeOOMKill, Time: event.Time{Time: at}, OOM: event.OOM{Domain: &event.Domain{Kind: kind}},
		NodeMemory: &event.NodeMemory{MemoryAvailable: sig(false), AllocatableMemoryAvailable: sig(pressure)}}
	ev.Victim.PID, ev.Victim.Comm = 4242, "java"
	ev.Cause = cause.Of(&ev) // as the pipeline classifies it first
	if uid != "" {
		ev.Victim.Pod = &event.Pod{UID: uid, Name: "p", Namespace: "ns"}
		ev.Victim.Container = &event.Container{ID: "c", Name: container}
	}
	return ev
}

func TestKillThenEviction(t *testing.T) {
	c := New(time.Minute)
	k1 := kill("pod-a", "app", t0, event.DomainAllocatable, true)
	c.OOMKill(&k1)
	other := kill("pod-b", "db", t0.Add(time.Second), event.DomainContainer, false)
	c.OOMKill(&other)
	if k1.Cause != event.CauseOOMDuringPressure || k1.Eviction != nil {
		t.Errorf("kill: cause %q eviction %+v", k1.Cause, k1.Eviction)
	}
	ev := event.Eviction{Time: event.Time{Time: t0.Add(12 * time.Second)}, Pod: event.Pod{UID: "pod-a"}, Cause: event.CauseKubeletEviction}
	c.Eviction(&ev)
	if len(ev.KernelOOMKills) != 1 {
		t.Fatalf("kills %+v, want pod-a's one", ev.KernelOOMKills)
	}
	k := ev.KernelOOMKills[0]
	if k.SecondsBefore != 12 || k.PID != 4242 || k.Container != "app" || k.Cause != event.CauseOOMDuringPressure {
		t.Errorf("kill ref %+v", k)
	}
}

// TestKillInTheEvictionsSecond: the kubelet's pass and the kernel's kill
// at the kubepods limit race (seen in the real cluster: kill at .3, Event
// created at .7 of the same second). The Event's time has whole seconds:
// the kill is listed, a fraction of a second "after" it.
func TestKillInTheEvictionsSecond(t *testing.T) {
	c := New(time.Minute)
	k := kill("pod-a", "app", t0.Add(300*time.Millisecond), event.DomainAllocatable, true)
	c.OOMKill(&k)
	ev := event.Eviction{Time: event.Time{Time: t0}, Pod: event.Pod{UID: "pod-a"}}
	c.Eviction(&ev)
	if len(ev.KernelOOMKills) != 1 || ev.KernelOOMKills[0].SecondsBefore != -0.3 {
		t.Errorf("kills %+v, want the kill 0.3 s into the eviction's second", ev.KernelOOMKills)
	}
	// Seconds later, while the kubelet stops the pod and before the
	// eviction is written (seen in the real cluster: killed still
	// allocating after its SIGTERM): listed, after the eviction.
	c = New(time.Minute)
	k = kill("pod-a", "app", t0.Add(2500*time.Millisecond), event.DomainAllocatable, true)
	c.OOMKill(&k)
	ev = event.Eviction{Time: event.Time{Time: t0}, Pod: event.Pod{UID: "pod-a"}}
	c.Eviction(&ev)
	if len(ev.KernelOOMKills) != 1 || ev.KernelOOMKills[0].SecondsBefore != -2.5 {
		t.Errorf("kills %+v, want the kill during the stop, 2.5 s after", ev.KernelOOMKills)
	}
}

func TestEvictionThenKill(t *testing.T) {
	c := New(time.Minute)
	ev := event.Eviction{Time: event.Time{Time: t0}, Pod: event.Pod{UID: "pod-a"}, Message: "The node was low on resource: memory. "}
	c.Eviction(&ev)
	if len(ev.KernelOOMKills) != 0 || ev.KernelOOMKills == nil {
		t.Errorf("kills %v, want an empty list", ev.KernelOOMKills)
	}
	// The kernel kills in the pod during the kubelet's grace period.
	k := kill("pod-a", "app", t0.Add(1500*time.Millisecond), event.DomainContainer, false)
	c.OOMKill(&k)
	if k.Eviction == nil || k.Eviction.SecondsBefore != 1.5 || k.Eviction.Message != ev.Message {
		t.Errorf("eviction ref %+v", k.Eviction)
	}
	// Outside the window: unrelated.
	late := kill("pod-a", "app", t0.Add(2*time.Minute), event.DomainContainer, false)
	c.OOMKill(&late)
	if late.Eviction != nil {
		t.Errorf("late kill linked to the eviction: %+v", late.Eviction)
	}
	// A host process has no pod: not linked.
	host := kill("", "", t0.Add(time.Second), event.DomainSystem, false)
	c.OOMKill(&host)
	if host.Cause != event.CauseOOMSystem || host.Eviction != nil {
		t.Errorf("host kill %+v", host)
	}
}

func TestWindowAndBounds(t *testing.T) {
	c := New(time.Minute)
	for i := 0; i < 1000; i++ {
		k := kill("pod-a", "app", t0.Add(time.Duration(i)*time.Millisecond), event.DomainContainer, false)
		c.OOMKill(&k)
	}
	ev := event.Eviction{Time: event.Time{Time: t0.Add(2 * time.Second)}, Pod: event.Pod{UID: "pod-a"}}
	c.Eviction(&ev)
	if len(ev.KernelOOMKills) != maxKillsPerPod || !ev.KernelOOMKills[maxKillsPerPod-1].Time.Equal(t0.Add(999*time.Millisecond)) {
		t.Errorf("%d kills listed (last %v), want the latest %d", len(ev.KernelOOMKills), ev.KernelOOMKills[len(ev.KernelOOMKills)-1].Time, maxKillsPerPod)
	}
	// Much later everything is forgotten.
	later := event.Eviction{Time: event.Time{Time: t0.Add(time.Hour)}, Pod: event.Pod{UID: "pod-a"}}
	c.Eviction(&later)
	if len(later.KernelOOMKills) != 0 || len(c.kills) != 0 {
		t.Errorf("after an hour: %d listed, %d pods remembered", len(later.KernelOOMKills), len(c.kills))
	}
}

func TestEvictionSignals(t *testing.T) {
	c := New(time.Minute)
	const uid = "0b1e7bd0-4a5e-4c4b-9f34-7d1f1c2a7e10"
	ctr := "aaaa000000000000000000000000000000000000000000000000000000000001"
	sig := func(name string, at time.Time, path string) event.TaskSignal {
		return event.TaskSignal{Time: event.Time{Time: at}, Signal: name,
			Target: event.Process{PID: 10, Comm: "app", Memcg: &event.Cgroup{Path: path}},
			Sender: event.Process{PID: 99, TGID: 99, Comm: "runc"}}
	}
	inPod := "/kubepods/burstable/pod" + uid + "/" + ctr
	c.Signal(sig("SIGTERM", t0.Add(-15*time.Second), inPod))                    // too early for a 2 s grace and the slack: unrelated
	c.Signal(sig("SIGTERM", t0.Add(500*time.Millisecond), inPod))               // the kubelet's stop
	c.Signal(sig("SIGKILL", t0.Add(2500*time.Millisecond), inPod))              // and its kill after the grace period
	c.Signal(sig("SIGKILL", t0.Add(time.Second), "/system.slice/cron.service")) // not a pod
	c.Signal(event.TaskSignal{Time: event.Time{Time: t0}, Signal: "SIGKILL"})   // no cgroup
	// API time: whole seconds, possibly after the first signal.
	ev := event.Eviction{Time: event.Time{Time: t0.Add(time.Second)}, Pod: event.Pod{UID: uid}}
	c.Eviction(&ev)
	if len(ev.KernelSignals) != 2 {
		t.Fatalf("signals %+v, want the SIGTERM and the SIGKILL", ev.KernelSignals)
	}
	term, kill := ev.KernelSignals[0], ev.KernelSignals[1]
	if term.Signal != "SIGTERM" || term.SecondsAfter != -0.5 || term.Container != ctr || term.SenderComm != "runc" || term.SenderPID != 99 {
		t.Errorf("SIGTERM %+v", term)
	}
	if kill.Signal != "SIGKILL" || kill.SecondsAfter != 1.5 {
		t.Errorf("SIGKILL %+v", kill)
	}
	other := event.Eviction{Time: event.Time{Time: t0}, Pod: event.Pod{UID: "other"}}
	c.Eviction(&other)
	if other.KernelSignals == nil || len(other.KernelSignals) != 0 {
		t.Errorf("another pod: %+v", other.KernelSignals)
	}
}

// TestTimeAhead: an eviction dated far ahead neither stays forever nor
// stops the pruning of what comes after it.
func TestTimeAhead(t *testing.T) {
	c := New(time.Minute)
	ahead := event.Eviction{Time: event.Time{Time: t0.Add(100 * 24 * time.Hour)}, Pod: event.Pod{UID: "pod-ahead"}}
	c.Eviction(&ahead)
	k := kill("pod-a", "app", t0, event.DomainContainer, false)
	c.OOMKill(&k)
	k2 := kill("pod-b", "app", t0.Add(10*time.Minute), event.DomainContainer, false)
	c.OOMKill(&k2)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.evictions["pod-ahead"]; ok {
		t.Error("the eviction dated 100 days ahead is kept")
	}
	if _, ok := c.kills["pod-a"]; ok {
		t.Error("a kill 10 minutes old, past the 1 minute window, is kept: pruning stopped")
	}
}

// TestEvictionSignalsBeforeTheStatus: the kubelet writes the eviction in
// the pod's status once its containers have stopped, its grace period
// after the SIGTERM: the signals from that long before (at least the
// kubelet's 2 s minimum, plus the slack of the API's whole seconds and of
// a busy kubelet's status write, 10 s) are the eviction's, earlier ones
// not.
func TestEvictionSignalsBeforeTheStatus(t *testing.T) {
	const uid = "0b1e7bd0-4a5e-4c4b-9f34-7d1f1c2a7e10"
	path := "/kubepods/burstable/pod" + uid + "/aaaa000000000000000000000000000000000000000000000000000000000001"
	thirty := int64(30)
	for _, tt := range []struct {
		grace  *int64
		before []time.Duration // signals this long before the status's time
		want   int
	}{
		{nil, []time.Duration{11900 * time.Millisecond, 12100 * time.Millisecond}, 1},
		{&thirty, []time.Duration{39 * time.Second, 41 * time.Second}, 1},
	} {
		c := New(time.Minute)
		for _, b := range tt.before {
			c.Signal(event.TaskSignal{Time: event.Time{Time: t0.Add(-b)}, Signal: "SIGTERM",
				Target: event.Process{PID: 10, Memcg: &event.Cgroup{Path: path}}})
		}
		ev := event.Eviction{Time: event.Time{Time: t0}, Pod: event.Pod{UID: uid}, TerminationGracePeriodSeconds: tt.grace}
		c.Eviction(&ev)
		if len(ev.KernelSignals) != tt.want {
			t.Errorf("grace %v: %+v, want %d", tt.grace, ev.KernelSignals, tt.want)
		}
	}
}
