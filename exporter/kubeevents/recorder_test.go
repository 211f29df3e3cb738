// SPDX-License-Identifier: Apache-2.0

package kubeevents

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/oomtrace/oomtrace/event"
)

// fakeAPI records the Events created and the patches; the first fail
// creates fail (with failErr, or a transient error).
type fakeAPI struct {
	mu       sync.Mutex
	patchErr error // what PatchEvent answers; nil: success
	created  []*eventsv1.Event
	patches  []patchCall
	fail     int
	failErr  error
	calls    int
	block    chan struct{} // nil: never blocks
}

type patchCall struct {
	namespace, name string
	body            string
}

func (f *fakeAPI) PatchEvent(ctx context.Context, namespace, name string, patch []byte) (*eventsv1.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.patches = append(f.patches, patchCall{namespace, name, string(patch)})
	if f.patchErr != nil {
		return nil, f.patchErr
	}
	return &eventsv1.Event{}, nil
}

func (f *fakeAPI) patched() []patchCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]patchCall(nil), f.patches...)
}

func (f *fakeAPI) CreateEvent(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail > 0 {
		f.fail--
		if f.failErr != nil {
			return nil, f.failErr
		}
		return nil, errors.New("API server restarting")
	}
	f.created = append(f.created, ev)
	if ev.UID == "" {
		ev.UID = types.UID(fmt.Sprintf("event-uid-%d", len(f.created)))
	}
	return ev, nil
}

func (f *fakeAPI) events() []*eventsv1.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*eventsv1.Event(nil), f.created...)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func podKill(uid string, at time.Time) event.OOMKill {
	survived := true
	k := kill(&survived, false)
	k.Victim.Pod = &event.Pod{Name: "shop-1", Namespace: "shop", UID: uid}
	k.Time = event.Time{Time: at}
	return k
}

// TestRecorderWritesTheEvent: every field the API and kubectl describe
// read, the node as the reporting instance.
func TestRecorderWritesTheEvent(t *testing.T) {
	api := &fakeAPI{}
	r := New(api, "node-a")
	r.Start(context.Background())
	defer r.Shutdown()
	at := time.Date(2026, 11, 30, 8, 45, 58, 852321268, time.UTC)
	r.Write(podKill("uid-1", at))
	r.Write(event.CommitRefusal{}) // not a kill: ignored
	unnamed := podKill("uid-2", at)
	unnamed.Victim.Pod = nil
	r.Write(unnamed) // no pod: ignored
	waitFor(t, "the Event", func() bool { return len(api.events()) == 1 })
	e := api.events()[0]
	wantReason, wantNote := Describe(podKill("uid-1", at))
	if e.Name != "shop-1.18ecc646cfeb9ff4" || e.Namespace != "shop" || !e.EventTime.Time.Equal(at) ||
		e.ReportingController != "oomtrace" || e.ReportingInstance != "oomtrace-node-a" || e.Action != "Killed" ||
		e.Reason != wantReason || e.Note != wantNote || e.Type != corev1.EventTypeWarning ||
		e.Regarding != (corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "shop", Name: "shop-1", UID: "uid-1"}) {
		t.Errorf("Event %+v", e)
	}
	time.Sleep(20 * time.Millisecond)
	if n := len(api.events()); n != 1 || r.Sent() != 1 || r.Dropped() != 0 {
		t.Errorf("%d created, sent %d, dropped %d; want 1, 1, 0", n, r.Sent(), r.Dropped())
	}
}

// TestRecorderLimitsAPod: a burst of 25 new Events of one pod, then one
// per five minutes; another pod has its own allowance. (Kills in 40
// containers: the repeats of one container count in one Event's series.)
func TestRecorderLimitsAPod(t *testing.T) {
	api := &fakeAPI{}
	r := New(api, "node-a")
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	r.writeBurst, r.writes.Left = 1000, 1000 // the pod's bound, not the node's
	r.Start(context.Background())
	defer r.Shutdown()
	inContainer := func(uid string, i int, at time.Time) event.OOMKill {
		k := podKill(uid, at)
		k.Victim.Container.Name = fmt.Sprintf("c%d", i)
		return k
	}
	for i := 0; i < 40; i++ {
		r.Write(inContainer("storm", i, now.Add(time.Duration(i)*time.Millisecond)))
	}
	r.Write(podKill("other", now))
	waitFor(t, "26 Events", func() bool { return len(api.events()) == 26 })
	if r.Dropped() != 15 {
		t.Errorf("dropped %d, want 15", r.Dropped())
	}
	now = now.Add(4 * time.Minute)
	r.Write(inContainer("storm", 100, now))
	now = now.Add(time.Minute + time.Second)
	r.Write(inContainer("storm", 101, now))
	waitFor(t, "27 Events", func() bool { return len(api.events()) == 27 })
	time.Sleep(20 * time.Millisecond)
	if n := len(api.events()); n != 27 || r.Dropped() != 16 {
		t.Errorf("after 5 min: %d created, %d dropped; want 27, 16", n, r.Dropped())
	}
}

// TestRecorderLimitsTheNode: the node's writes, whatever its pods, are a
// burst of 25 and then one per 10 s; a write over the bound waits for its
// turn, none is dropped while the queue holds them.
func TestRecorderLimitsTheNode(t *testing.T) {
	api := &fakeAPI{}
	r := New(api, "node-a")
	c := &clock{t: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	r.now = c.now
	r.Start(context.Background())
	defer r.Shutdown()
	for i := range 40 {
		r.Write(podKill(fmt.Sprintf("uid-%d", i), c.now()))
	}
	waitFor(t, "the burst", func() bool { return len(api.events()) == nodeBurst })
	time.Sleep(300 * time.Millisecond) // the recorder polls its clock every 100 ms
	if n := len(api.events()); n != nodeBurst || r.Throttled() != 1 {
		t.Fatalf("%d created, %d throttled; want the burst of %d, then one waiting", n, r.Throttled(), nodeBurst)
	}
	c.add(nodeEvery)
	waitFor(t, "one more after 10 s", func() bool { return len(api.events()) == nodeBurst+1 })
	time.Sleep(300 * time.Millisecond)
	if n := len(api.events()); n != nodeBurst+1 {
		t.Fatalf("%d created after 10 s, want %d", n, nodeBurst+1)
	}
	c.add(14 * nodeEvery)
	waitFor(t, "all 40", func() bool { return len(api.events()) == 40 })
	if r.Dropped() != 0 || r.Sent() != 40 {
		t.Errorf("sent %d, dropped %d; want 40, 0", r.Sent(), r.Dropped())
	}
}

// TestRecorderRetriesThenDrops: an API that fails twice gets the Event on
// the third try; one that keeps failing costs a counted drop.
func TestRecorderRetriesThenDrops(t *testing.T) {
	api := &fakeAPI{fail: 2}
	r := New(api, "node-a")
	r.retry = time.Millisecond
	r.Start(context.Background())
	defer r.Shutdown()
	r.Write(podKill("a", time.Now()))
	waitFor(t, "the Event", func() bool { return len(api.events()) == 1 })
	api.mu.Lock()
	api.fail = attempts
	api.mu.Unlock()
	r.Write(podKill("b", time.Now()))
	waitFor(t, "the drop", func() bool { return r.Dropped() == 1 })
	if len(api.events()) != 1 || r.Sent() != 1 {
		t.Errorf("%d created, %d sent", len(api.events()), r.Sent())
	}
}

// TestRecorderNeverWaits: with the API stuck, Write returns at once; what
// the queue cannot hold is dropped and counted; Shutdown returns.
func TestRecorderNeverWaits(t *testing.T) {
	api := &fakeAPI{block: make(chan struct{})}
	r := New(api, "node-a")
	r.Start(context.Background())
	start := time.Now()
	n := queueSize + 10
	for i := 0; i < n; i++ {
		r.Write(podKill(string(rune('a'+i%26))+string(rune('a'+i/26)), time.Now()))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("writes took %v with the API stuck", took)
	}
	// One is with the stuck API, queueSize queued: the rest dropped.
	waitFor(t, "the drops", func() bool { return r.Dropped() >= uint64(n-queueSize-1) })
	r.Shutdown()
	if len(api.events()) != 0 {
		t.Errorf("%d created through a stuck API", len(api.events()))
	}
}

// TestRecorderOneEventPerGroupKill: the kills of one memory.oom.group
// decision make one Event, written once the group is complete and saying
// how many processes it killed; another decision makes its own.
func TestRecorderOneEventPerGroupKill(t *testing.T) {
	api := &fakeAPI{}
	r := New(api, "node-a")
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	r.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	r.Start(context.Background())
	defer r.Shutdown()

	group := func(seq, decision uint64) event.OOMKill {
		k := podKill("uid-1", now)
		survived := false
		k.ContainerSurvived = &survived
		k.Seq = seq
		k.Victim.TGID = uint32(seq)
		k.Victim.Memcg = &event.Cgroup{ID: 42, Path: "/kubepods/pod-1/ctr"}
		k.OOM.Group = &event.GroupKill{Cgroup: event.Cgroup{ID: 42, Path: "/kubepods/pod-1/ctr"}, DecisionSeq: decision, Chosen: seq == decision}
		return k
	}
	// Out of order: the chosen task's kill (seq 10) comes second.
	for _, seq := range []uint64{11, 10, 12} {
		r.Write(group(seq, 10))
	}
	r.Write(group(13, 13))
	time.Sleep(50 * time.Millisecond)
	if n := len(api.events()); n != 0 {
		t.Fatalf("%d Events before the groups waited %v", n, groupWait)
	}
	advance(groupWait)
	waitFor(t, "two Events", func() bool { return len(api.events()) == 2 })
	time.Sleep(20 * time.Millisecond)
	notes := map[string]bool{}
	for _, e := range api.events() {
		notes[e.Note] = true
		if e.Reason != ReasonContainer {
			t.Errorf("reason %s, want %s", e.Reason, ReasonContainer)
		}
	}
	for n := range notes {
		if strings.Contains(n, "killed 3 processes") && !strings.Contains(n, "(pid 10,") {
			t.Errorf("the group's Event does not describe the chosen task (pid 10): %q", n)
		}
	}
	for _, want := range []string{"killed 3 processes", "killed 1 process"} {
		found := false
		for n := range notes {
			found = found || strings.Contains(n, "One decision of the kernel (memory.oom.group of container web) "+want+".")
		}
		if !found {
			t.Errorf("no Event note says %q: %v", want, notes)
		}
	}
	if len(api.events()) != 2 || r.Sent() != 2 || r.Dropped() != 0 {
		t.Errorf("%d created, sent %d, dropped %d; want 2, 2, 0", len(api.events()), r.Sent(), r.Dropped())
	}
}

// TestRecorderLeavesEndedContainersToKubelet: with the option, a kill that
// ended its container (single or a group's) makes no Event; one its
// container survived, and one whose outcome is unknown, still do.
func TestRecorderLeavesEndedContainersToKubelet(t *testing.T) {
	api := &fakeAPI{}
	r := New(api, "node-a")
	r.LeaveEndedContainersToKubelet()
	r.Start(context.Background())
	defer r.Shutdown()
	at := time.Now()
	ended, unknown, ran := podKill("uid-ended", at), podKill("uid-unknown", at), podKill("uid-ran", at)
	no := false
	ended.ContainerSurvived = &no
	unknown.ContainerSurvived = nil
	group := podKill("uid-group", at)
	group.ContainerSurvived = &no
	group.OOM.Group = &event.GroupKill{DecisionSeq: 7}
	for _, k := range []event.OOMKill{ended, unknown, ran, group} {
		r.Write(k)
	}
	waitFor(t, "two Events", func() bool { return len(api.events()) == 2 })
	time.Sleep(groupWait + 50*time.Millisecond) // a group's Event would have come by now
	got := map[string]string{}
	for _, e := range api.events() {
		got[string(e.Regarding.UID)] = e.Reason
	}
	if len(got) != 2 || got["uid-unknown"] != ReasonUnknown || got["uid-ran"] != ReasonProcess {
		t.Errorf("Events by pod: %v; want uid-unknown %s and uid-ran %s only", got, ReasonUnknown, ReasonProcess)
	}
	if r.Left() != 2 || r.Dropped() != 0 {
		t.Errorf("left %d, dropped %d; want 2, 0", r.Left(), r.Dropped())
	}
	// Without the option the same kill that ended its container is written.
	api2 := &fakeAPI{}
	r2 := New(api2, "node-a")
	r2.Start(context.Background())
	defer r2.Shutdown()
	r2.Write(ended)
	waitFor(t, "the Event", func() bool { return len(api2.events()) == 1 })
	if e := api2.events()[0]; e.Reason != ReasonContainer {
		t.Errorf("reason %s, want %s", e.Reason, ReasonContainer)
	}
}

// TestRecorderNamespacesTakeTurns: a namespace crash-looping 100 OOMing
// pods does not delay another namespace's first Event behind its own:
// past the node's burst, writes are taken a namespace at a time, so the
// other's comes within two of the node's intervals, not after all 100
// (75 intervals, 12.5 minutes, in arrival order). When the queue is full,
// the flooding namespace's newest write gives way.
func TestRecorderNamespacesTakeTurns(t *testing.T) {
	api := &fakeAPI{}
	r, c := startRecorder(t, api)
	inNamespace := func(ns, uid string) event.OOMKill {
		k := podKill(uid, c.now())
		k.Victim.Pod.Namespace, k.Victim.Pod.Name = ns, uid
		return k
	}
	for i := range 100 {
		r.Write(inNamespace("flood", fmt.Sprintf("flood-%d", i)))
	}
	waitFor(t, "the burst", func() bool { return len(api.events()) == nodeBurst })
	r.Write(inNamespace("shop", "cart"))
	c.add(2 * nodeEvery)
	waitFor(t, "two more", func() bool { return len(api.events()) >= nodeBurst+2 })
	shop := -1
	for i, e := range api.events() {
		if e.Regarding.Namespace == "shop" {
			shop = i
		}
	}
	if shop < 0 {
		t.Fatalf("shop's Event is not among the first %d: it waits behind the flood", len(api.events()))
	}
	t.Logf("shop's Event was write %d", shop+1)

	// A full queue: the flood's newest writes give way to shop's.
	for i := range queueSize {
		r.Write(inNamespace("flood", fmt.Sprintf("more-%d", i)))
	}
	before := r.Dropped()
	r.Write(inNamespace("shop", "web"))
	if r.Dropped() != before+1 {
		t.Errorf("dropped %d, want one of the flood's", r.Dropped()-before)
	}
	c.add(3 * nodeEvery)
	waitFor(t, "shop's second Event", func() bool {
		for _, e := range api.events() {
			if e.Regarding.Name == "web" {
				return true
			}
		}
		return false
	})
}

// TestRecorderGroupKillWaitsForItsChosenKill: the tracer hands on a group
// decision's chosen kill last, with the kills it folded (no event of their
// own). The group's one Event waits for it and counts them: 7 members, the
// chosen task and 1,292 folded make 1,300 processes.
func TestRecorderGroupKillWaitsForItsChosenKill(t *testing.T) {
	api := &fakeAPI{}
	r := New(api, "node-a")
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	r.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	r.Start(context.Background())
	defer r.Shutdown()

	kill := func(seq, decision, folded uint64) event.OOMKill {
		k := podKill("uid-1", now)
		survived := false
		k.ContainerSurvived = &survived
		k.Seq = seq
		k.Victim.TGID = uint32(seq)
		k.Victim.Memcg = &event.Cgroup{ID: 42, Path: "/kubepods/pod-1/ctr"}
		k.OOM.Group = &event.GroupKill{Cgroup: event.Cgroup{ID: 42, Path: "/kubepods/pod-1/ctr"}, DecisionSeq: decision, Chosen: seq == decision, Folded: folded}
		return k
	}
	for seq := uint64(11); seq <= 17; seq++ {
		r.Write(kill(seq, 10, 0))
	}
	advance(groupWait + time.Second)
	// The first flush runs groupWait after the first kill, on the real
	// clock: past it, a flush has run.
	time.Sleep(groupWait + 100*time.Millisecond)
	if n := len(api.events()); n != 0 {
		t.Fatalf("%d Events before the chosen kill came", n)
	}
	r.Write(kill(10, 10, 1292))
	waitFor(t, "the group's Event", func() bool { return len(api.events()) == 1 })
	e := api.events()[0]
	if !strings.Contains(e.Note, "killed 1300 processes.") || !strings.Contains(e.Note, "(pid 10,") {
		t.Errorf("note %q: want the chosen task (pid 10) and 1300 processes", e.Note)
	}

	// Its record lost, the chosen kill never comes: the Event is written
	// groupChosenWait later, of the kills that came.
	r.Write(kill(21, 20, 0))
	advance(groupWait)
	time.Sleep(groupWait/4 + 100*time.Millisecond)
	if n := len(api.events()); n != 1 {
		t.Fatalf("%d Events: the second group's was written before its chosen kill could come", n)
	}
	advance(groupChosenWait)
	waitFor(t, "the second group's Event", func() bool { return len(api.events()) == 2 })
}

// A user-space kill of a named pod's processes is one UserspaceOOMKill
// Event naming the killer, the method and the cgroup's memory; of no pod,
// none.
func TestRecorderWritesUserspaceKills(t *testing.T) {
	api := &fakeAPI{}
	r := New(api, "node-a")
	r.Start(context.Background())
	defer r.Shutdown()
	at := time.Date(2026, 12, 6, 19, 0, 0, 0, time.UTC)
	limit, swap := uint64(64<<20), uint64(0)
	victim := podKill("uid-1", at).Victim.Process
	kill := event.UserspaceKill{Type: event.TypeUserspaceKill, Time: event.Time{Time: at}, Method: event.MethodCgroupKill,
		Killer:      event.Process{TGID: 812, Comm: "systemd-oomd", Unit: "systemd-oomd.service"},
		KnownKiller: "systemd-oomd", Victims: []event.Process{victim, victim}, VictimCount: 3,
		Memory: &event.CgroupMemory{UsageBytes: 63 << 20, LimitBytes: &limit, SwapBytes: &swap, Pressure: &event.Pressure{SomeAvg10: 71.5, FullAvg10: 64.2}}}
	r.Write(kill)
	unnamed := kill
	unnamed.Victims = []event.Process{{TGID: 5, Comm: "sleep"}}
	r.Write(unnamed)
	waitFor(t, "the Event", func() bool { return len(api.events()) == 1 })
	e := api.events()[0]
	want := "Process gunicorn (pid 4242) and 2 more of container web were SIGKILLed by the user-space OOM killer systemd-oomd " +
		"(systemd-oomd, pid 812, unit systemd-oomd.service, through cgroup.kill), not by the kernel's OOM killer nor the kubelet; " +
		"the cgroup used 63.0 MiB of 64.0 MiB, its tasks stalled on memory 72% (some) and 64% (full) of the last 10 s. " +
		"The container ends 137 Error, not OOMKilled."
	if e.Reason != ReasonUserspace || e.Note != want || e.Regarding.UID != "uid-1" || !e.EventTime.Time.Equal(at) {
		t.Errorf("Event %s %q on %+v", e.Reason, e.Note, e.Regarding)
	}
	time.Sleep(20 * time.Millisecond)
	if n := len(api.events()); n != 1 {
		t.Errorf("%d Events, want 1 (none for no pod)", n)
	}
}

// TestRecorderWritesTheWarning: a started episode of a pod's cgroup is a
// ContainerMemoryPressure Event, its action MemoryPressure (the admission
// policy allows no other with that reason); an ongoing or ended one, or
// one of no pod, is none.
func TestRecorderWritesTheWarning(t *testing.T) {
	api := &fakeAPI{}
	r := New(api, "node-a")
	r.Start(context.Background())
	defer r.Shutdown()
	at := time.Now()
	p := event.CgroupPressure{Type: event.TypeCgroupPressure, Time: event.Time{Time: at}, State: event.PressureStarted,
		Container: &event.Container{Name: "app"}, Pod: &event.Pod{Name: "leaky", Namespace: "shop", UID: "u"}}
	r.Write(p)
	for _, state := range []string{event.PressureOngoing, event.PressureEnded} {
		q := p
		q.State = state
		r.Write(q)
	}
	q := p
	q.Pod = nil
	r.Write(q)
	waitFor(t, "the Event", func() bool { return len(api.events()) == 1 })
	time.Sleep(20 * time.Millisecond)
	e := api.events()[0]
	if n := len(api.events()); n != 1 || e.Reason != ReasonPressure || e.Action != ActionPressure || e.Note != DescribePressure(p) ||
		e.Regarding.Name != "leaky" || e.Type != corev1.EventTypeWarning {
		t.Errorf("%d Events, the first %+v", n, e)
	}
}

// TestWarningsWaitForKills: while the node's allowance is spent, a kill's
// Event that comes after a warning is written first: a warning never takes
// a kill's turn (a crash-looping namespace warns at every restart, and
// another namespace's first kill must not wait for that).
func TestWarningsWaitForKills(t *testing.T) {
	api := &fakeAPI{}
	r := New(api, "node-a")
	r.writes.Left, r.nodeEvery = 0, 100*time.Millisecond
	r.Start(context.Background())
	defer r.Shutdown()
	at := time.Now()
	r.Write(event.CgroupPressure{Type: event.TypeCgroupPressure, Time: event.Time{Time: at}, State: event.PressureStarted,
		Container: &event.Container{Name: "app"}, Pod: &event.Pod{Name: "leaky", Namespace: "crashloop", UID: "u-w"}})
	r.Write(podKill("uid-1", at))
	waitFor(t, "both Events", func() bool { return len(api.events()) == 2 })
	if got := api.events(); got[0].Reason == ReasonPressure || got[1].Reason != ReasonPressure {
		t.Errorf("written in the order %s, %s: want the kill's first", got[0].Reason, got[1].Reason)
	}
}
