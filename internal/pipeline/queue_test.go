// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
)

// gateWriter blocks every write until its gate is opened.
type gateWriter struct {
	gate chan struct{}
	mu   sync.Mutex
	n    int
	err  error
}

func (g *gateWriter) write() error {
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return g.err
	}
	g.n++
	return nil
}

func (g *gateWriter) Write(event.Event) error { return g.write() }

func TestQueueNeverBlocksAndCountsDrops(t *testing.T) {
	g := &gateWriter{gate: make(chan struct{})}
	q := newQueue(g, 4, nil)
	const events = 100
	done := make(chan struct{})
	go func() {
		for i := 0; i < events; i++ {
			q.Write(event.OOMKill{})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("writing to the queue blocked on a stuck writer")
	}
	close(g.gate)
	if !q.Close(5 * time.Second) {
		t.Fatal("queue did not drain once the writer moved")
	}
	if got := q.Written() + q.Dropped(); got != events {
		t.Errorf("written %d + dropped %d = %d, want %d", q.Written(), q.Dropped(), got, events)
	}
	if q.Dropped() == 0 || q.Written() > 5 {
		t.Errorf("written %d dropped %d: a 4-event queue in front of a stuck writer must drop", q.Written(), q.Dropped())
	}
}

func TestQueueCloseGivesUpOnStuckWriter(t *testing.T) {
	g := &gateWriter{gate: make(chan struct{})}
	defer close(g.gate)
	q := newQueue(g, 8, nil)
	for i := 0; i < 5; i++ {
		q.Write(event.CommitRefusal{})
	}
	start := time.Now()
	if q.Close(200 * time.Millisecond) {
		t.Fatal("Close reported success with a stuck writer")
	}
	if time.Since(start) > 2*time.Second {
		t.Error("Close waited far beyond its timeout")
	}
	// One event is in the stuck write, four still queued: all five lost.
	if q.Dropped() != 5 {
		t.Errorf("dropped %d, want the 4 still queued and the one stuck", q.Dropped())
	}
}

func TestQueueWriteErrorDropsTheRest(t *testing.T) {
	g := &gateWriter{gate: make(chan struct{}), err: errors.New("broken pipe")}
	close(g.gate)
	var reported []error
	q := newQueue(g, 16, func(err error) { reported = append(reported, err) })
	for i := 0; i < 10; i++ {
		q.Write(event.OOMKill{})
	}
	q.Close(5 * time.Second)
	if q.Err() == nil || len(reported) != 1 {
		t.Errorf("err %v, reported %d times, want once", q.Err(), len(reported))
	}
	if q.Dropped() != 10 || q.Written() != 0 {
		t.Errorf("written %d dropped %d, want 0 and 10", q.Written(), q.Dropped())
	}
}

// kindWriter records which method each event arrived at.
type kindWriter struct {
	mu    sync.Mutex
	kinds []string
}

func (k *kindWriter) add(s string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kinds = append(k.kinds, s)
	return nil
}
func (k *kindWriter) Write(ev event.Event) error {
	kinds := map[string]string{"event.OOMKill": "oom_kill", "event.CommitRefusal": "commit_refusal",
		"event.MemoryPressure": "memory_pressure", "event.Eviction": "eviction", "event.NodeCondition": "node_condition"}
	return k.add(kinds[fmt.Sprintf("%T", ev)])
}

func TestQueueRoutesEveryKindInOrder(t *testing.T) {
	k := &kindWriter{}
	q := newQueue(k, 16, nil)
	q.Write(event.Eviction{})
	q.Write(event.OOMKill{})
	q.Write(event.NodeCondition{})
	q.Write(event.CommitRefusal{})
	q.Write(event.MemoryPressure{})
	if !q.Close(5 * time.Second) {
		t.Fatal("close timed out")
	}
	want := "eviction oom_kill node_condition commit_refusal memory_pressure"
	if got := strings.Join(k.kinds, " "); got != want {
		t.Errorf("routed %q, want %q", got, want)
	}
}

func TestQueueWriteAfterClose(t *testing.T) {
	k := &kindWriter{}
	q := newQueue(k, 4, nil)
	q.Write(event.OOMKill{})
	q.Close(time.Second)
	// A timer's event arriving after shutdown: dropped and counted, no panic.
	q.Write(event.Eviction{})
	q.Close(time.Second)
	if q.Written() != 1 || q.Dropped() != 1 {
		t.Errorf("written %d dropped %d, want 1 and 1", q.Written(), q.Dropped())
	}
}
