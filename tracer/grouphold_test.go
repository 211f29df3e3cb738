// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
)

func groupKillEvent(seq, decision uint64) event.OOMKill {
	return event.OOMKill{Seq: seq, OOM: event.OOM{Group: &event.GroupKill{DecisionSeq: decision, Chosen: seq == decision}}}
}

// TestGroupHold: a group decision's kills are held until the decision
// has been quiet for groupKillMaxGap on the programs' clock (each kill
// keeps it open), then handed on, the chosen one first; a kill whose
// decision is not held passes at once; close hands on what is held.
func TestGroupHold(t *testing.T) {
	var mu sync.Mutex
	var got []event.OOMKill
	handed := make(chan struct{}, 8)
	var now atomic.Uint64
	h := newGroupHold(nil, func(ev event.OOMKill) {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		handed <- struct{}{}
	})
	h.now = now.Load
	const sec = uint64(time.Second)
	now.Store(10 * sec)

	if !h.kill(groupKillEvent(10, 10), 10*sec) {
		t.Fatal("the chosen kill was not held")
	}
	if !h.kill(groupKillEvent(11, 10), 10*sec+sec/2) {
		t.Fatal("a member's kill was not held with its decision")
	}
	if h.kill(groupKillEvent(51, 50), 10*sec) {
		t.Fatal("a kill of a decision not held (its first record lost) was held")
	}
	// A second past the chosen kill, half a second past the member's.
	now.Store(11 * sec)
	select {
	case <-handed:
		t.Fatal("handed on while the decision was open")
	case <-time.After(3 * groupHoldTick):
	}
	now.Store(11*sec + sec/2)
	for range 2 {
		select {
		case <-handed:
		case <-time.After(time.Second):
			t.Fatal("not handed on once the decision was over")
		}
	}

	// Two held at a stop: both handed on, in seq order, at once.
	h.kill(groupKillEvent(30, 30), 20*sec)
	h.kill(groupKillEvent(20, 20), 20*sec)
	h.close()
	if h.kill(groupKillEvent(40, 40), 20*sec) {
		t.Error("held a kill after close")
	}
	mu.Lock()
	defer mu.Unlock()
	var seqs []uint64
	for _, ev := range got {
		seqs = append(seqs, ev.Seq)
	}
	if !slices.Equal(seqs, []uint64{10, 11, 20, 30}) {
		t.Errorf("handed on seqs %v: want 10, 11 (the decision, its chosen kill first), then 20, 30", seqs)
	}
}
