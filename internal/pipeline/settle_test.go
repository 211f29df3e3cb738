// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cri"
	"github.com/oomtrace/oomtrace/internal/enrich"
	"github.com/oomtrace/oomtrace/internal/refusalfold"
)

// locked records the events of one kind that reach a sink, from any
// goroutine.
type locked[T event.Event] struct {
	mu     sync.Mutex
	events []T
}

func (l *locked[T]) Write(ev event.Event) error {
	if e, ok := ev.(T); ok {
		l.mu.Lock()
		l.events = append(l.events, e)
		l.mu.Unlock()
	}
	return nil
}

func (l *locked[T]) get() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]T(nil), l.events...)
}

// lockedKills and lockedRefusals record kills and refusal lines.
type (
	lockedKills    = locked[event.OOMKill]
	lockedRefusals = locked[event.CommitRefusal]
)

func (l *locked[T]) wait(t *testing.T, n int) []T {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if k := l.get(); len(k) >= n {
			return k
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%d events, want %d", len(l.get()), n)
	return nil
}

// A container's kill waits for the check, then says whether the container
// survived, in the output and to the API's Events; a kill outside any
// container does not wait; a failed check leaves the field out.
func TestContainerSurvived(t *testing.T) {
	const checkDelay = 200 * time.Millisecond
	alive := map[string]bool{}
	var mu sync.Mutex
	out, kube := &lockedKills{}, &lockedKills{}
	p := New(context.Background(), Options{Out: out, KubeEvents: kube, QueueSize: 16,
		ContainerCheckDelay: checkDelay,
		ContainerAlive: func(path string) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			a, ok := alive[path]
			if !ok {
				return false, errors.New("unreadable")
			}
			return a, nil
		}})
	worker := allocatableKill(time.Now())
	ctrPath := worker.Victim.Memcg.Path
	mu.Lock()
	alive[ctrPath] = true
	mu.Unlock()
	worker.Victim.Memcg.Path = ctrPath + "/init.scope" // a sub-cgroup of the container
	host := allocatableKill(time.Now())
	host.Victim.Memcg.Path = "/system.slice/cron.service"
	start := time.Now()
	p.Write(worker)
	p.Write(host)

	first := out.wait(t, 1)[0]
	if first.Victim.Memcg.Path != "/system.slice/cron.service" || first.ContainerSurvived != nil {
		t.Fatalf("first out: %s, want the host process's kill, unchecked", first)
	}
	got := out.wait(t, 2)[1]
	if waited := time.Since(start); waited < checkDelay {
		t.Errorf("the container's kill came out after %v, before the check delay %v", waited, checkDelay)
	}
	if got.ContainerSurvived == nil || !*got.ContainerSurvived {
		t.Errorf("worker kill: container_survived %v, want true", got.ContainerSurvived)
	}
	// Only kills in pods go to the API.
	if k := kube.get(); len(k) != 1 || k[0].ContainerSurvived == nil {
		t.Errorf("API events for %v, want the worker's, settled", k)
	}

	// The container's cgroup empties: not survived. Unreadable: absent.
	mu.Lock()
	alive[ctrPath] = false
	mu.Unlock()
	p.Write(allocatableKill(time.Now()))
	if got := out.wait(t, 3)[2]; got.ContainerSurvived == nil || *got.ContainerSurvived {
		t.Errorf("init kill: container_survived %v, want false", got.ContainerSurvived)
	}
	mu.Lock()
	delete(alive, ctrPath)
	mu.Unlock()
	p.Write(allocatableKill(time.Now()))
	if got := out.wait(t, 4)[3]; got.ContainerSurvived != nil {
		t.Errorf("failed check: container_survived %v, want absent", *got.ContainerSurvived)
	}
	p.Close(time.Second)
}

// A stop does not wait out the check delay, and loses no held kill.
func TestCloseSettlesHeldKills(t *testing.T) {
	out := &lockedKills{}
	p := New(context.Background(), Options{Out: out, QueueSize: 16, ContainerCheckDelay: time.Hour,
		ContainerAlive: func(string) (bool, error) { return true, nil }})
	for range 3 {
		p.Write(allocatableKill(time.Now()))
	}
	start := time.Now()
	p.Close(time.Second)
	if n := len(out.get()); n != 3 || time.Since(start) > 10*time.Second {
		t.Fatalf("%d kills out after %v, want 3 at once", n, time.Since(start))
	}
	for _, k := range out.get() {
		if k.ContainerSurvived == nil || !*k.ContainerSurvived {
			t.Errorf("kill settled at close: %s", k)
		}
	}
}

// The held kills come out in the order they came in (the kills of one
// memory.oom.group decision: the chosen task first), however close.
func TestSettlerKeepsOrder(t *testing.T) {
	out := &lockedKills{}
	p := New(context.Background(), Options{Out: out, QueueSize: 256, ContainerCheckDelay: 20 * time.Millisecond,
		ContainerAlive: func(string) (bool, error) { return false, nil }})
	for i := range 100 {
		k := allocatableKill(time.Now())
		k.Seq = uint64(i + 1)
		p.Write(k)
	}
	got := out.wait(t, 100)
	for i, k := range got {
		if k.Seq != uint64(i+1) || k.ContainerSurvived == nil {
			t.Fatalf("kill %d out as %d (survived %v): the order changed", k.Seq, i+1, k.ContainerSurvived)
		}
	}
	p.Close(time.Second)
}

// learningResolver names the containers it has been told of, from any
// goroutine: the kubelet's pod status, which names a container only once
// the kubelet has written its id.
type learningResolver struct {
	mu    sync.Mutex
	known map[string]cri.Container
}

func (r *learningResolver) Lookup(_ context.Context, id string, _ time.Time) (cri.Container, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.known[id]
	return c, ok
}

// A container killed before any resolver knew it (its first second,
// named only by the kubelet's status) is named by the time its kill
// settles: in the output, to the API's Events and in the metrics, with
// its pod's owner.
func TestNamedWhenSettled(t *testing.T) {
	names := &learningResolver{known: map[string]cri.Container{}}
	out, kube, metrics := &lockedKills{}, &lockedKills{}, &lockedKills{}
	p := New(context.Background(), Options{Out: out, KubeEvents: kube, Metrics: metrics, QueueSize: 16,
		Enricher:            &enrich.Enricher{Resolver: names},
		ContainerCheckDelay: 100 * time.Millisecond,
		ContainerAlive: func(string) (bool, error) {
			return true, nil
		},
		Owners: func(uid string) *event.PodOwner {
			names.mu.Lock()
			defer names.mu.Unlock()
			if _, ok := names.known[ctrID]; ok && uid == podUID {
				return &event.PodOwner{Kind: "Deployment", Name: "cart"}
			}
			return nil
		}})
	p.Write(allocatableKill(time.Now()))
	time.Sleep(20 * time.Millisecond) // the kill is held, unnamed
	names.mu.Lock()
	names.known[ctrID] = cri.Container{ID: ctrID, Name: "app", PodUID: podUID, PodName: "cart-1", PodNamespace: "shop"}
	names.mu.Unlock()
	for what, sink := range map[string]*lockedKills{"output": out, "Events": kube, "metrics": metrics} {
		k := sink.wait(t, 1)[0]
		if c, pod := k.Victim.Container, k.Victim.Pod; c == nil || c.Name != "app" || pod == nil || pod.Name != "cart-1" || pod.Owner.String() != "Deployment/cart" {
			t.Errorf("%s: victim %s", what, k.Victim.Process)
		}
	}
	p.Close(time.Second)
}

// TestRefusalLinesFolded: a cgroup's refusals past its allowance of lines
// come out as one folded line at the end of its window, with their count;
// the metrics count every refusal, once; a stop hands out what waits.
func TestRefusalLinesFolded(t *testing.T) {
	out, metrics := &lockedRefusals{}, &lockedRefusals{}
	p := New(context.Background(), Options{Out: out, Metrics: metrics, QueueSize: 256,
		RefusalFolder: refusalfold.New(refusalfold.Options{Burst: 5, Every: time.Hour, Window: 50 * time.Millisecond})})
	refusal := func(pid uint32) event.CommitRefusal {
		return event.CommitRefusal{Type: event.TypeCommitRefusal, Syscall: "mmap", Reason: event.ReasonCommit, Count: 1,
			Process: event.Process{PID: pid, TGID: pid, Memcg: &event.Cgroup{ID: 7, Path: "/tenant"}}}
	}
	for pid := range 100 {
		p.Write(refusal(uint32(pid + 1)))
	}
	lines := out.wait(t, 6)
	if len(lines) != 6 || lines[5].Count != 95 || lines[5].Processes != 95 || !lines[5].Repeated {
		t.Fatalf("%d lines, the last %+v: want 5, then one folded line of 95 refusals from 95 processes", len(lines), lines[len(lines)-1])
	}
	if n := len(metrics.get()); n != 100 {
		t.Errorf("the metrics saw %d refusals, want each of the 100 once", n)
	}
	// Held at a stop: handed out.
	for pid := range 10 {
		p.Write(refusal(uint32(pid + 1000)))
	}
	p.Close(time.Second)
	lines = out.get()
	if last := lines[len(lines)-1]; last.Count != 10 || !last.Repeated {
		t.Errorf("after the stop, the last line %+v: want the 10 held, folded", last)
	}
}
