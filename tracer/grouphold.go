// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/event"
)

// DefaultGroupRecords is how many kills of one memory.oom.group decision
// get a record of their own; the programs count the rest in group_folds.
const DefaultGroupRecords = 8

// groupKillMaxGap is GROUP_KILL_MAX_GAP_NS: the programs join a kill to
// its trigger's group decision only this close after the decision's
// latest kill. A decision quiet this long is over.
const groupKillMaxGap = time.Second

// groupHoldTick is how often held decisions are looked at.
const groupHoldTick = 100 * time.Millisecond

// groupHold holds the kills of each memory.oom.group decision until the
// decision is over, then hands them on, the first one with the kills the
// programs folded into it (past DefaultGroupRecords records): one line
// that says how many the decision killed, whatever the size of the group.
type groupHold struct {
	folds  *ebpf.Map // group_folds
	handle func(event.OOMKill)
	now    func() uint64 // CLOCK_BOOTTIME in ns

	mu     sync.Mutex
	held   map[uint64]*heldDecision // by decision seq
	timer  *time.Timer
	closed bool
	ticks  sync.WaitGroup
}

type heldDecision struct {
	ev      event.OOMKill   // the chosen kill
	members []event.OOMKill // the decision's other kills with a record, in seq order
	lastNs  uint64          // the latest kill of the decision seen
}

func newGroupHold(folds *ebpf.Map, handle func(event.OOMKill)) *groupHold {
	return &groupHold{folds: folds, handle: handle, now: bootNow, held: map[uint64]*heldDecision{}}
}

// kill takes a kill of a group decision: the decision's first kill is
// held, and the others with it (true): they are handed on together once
// the decision is over, the first one first, so that whatever counts the
// decision (the pod's Event) has it whole at once, however long the
// kernel takes over it. A kill whose decision is not held (its first
// record lost) is the caller's to pass on (false).
func (h *groupHold) kill(ev event.OOMKill, tsBoot uint64) bool {
	g := ev.OOM.Group
	h.mu.Lock()
	if d := h.held[g.DecisionSeq]; d != nil && !g.Chosen {
		d.lastNs = max(d.lastNs, tsBoot)
		d.members = append(d.members, ev)
		h.mu.Unlock()
		return true
	}
	if !g.Chosen || h.closed {
		h.mu.Unlock()
		return false
	}
	h.held[g.DecisionSeq] = &heldDecision{ev: ev, lastNs: tsBoot}
	if h.timer == nil {
		h.ticks.Add(1)
		h.timer = time.AfterFunc(groupHoldTick, h.tick)
	}
	h.mu.Unlock()
	return true
}

// tick hands on the decisions that are over, and comes back while some
// are held.
func (h *groupHold) tick() {
	defer h.ticks.Done()
	now := h.now()
	h.mu.Lock()
	// now is 0 when the clock cannot be read: then nothing waits.
	ready := h.takeOver(func(lastNs uint64) bool {
		return now == 0 || now >= lastNs && time.Duration(now-lastNs) >= groupKillMaxGap
	})
	h.timer = nil
	if len(h.held) > 0 && !h.closed {
		h.ticks.Add(1)
		h.timer = time.AfterFunc(groupHoldTick, h.tick)
	}
	h.mu.Unlock()
	h.handOn(ready)
}

// handOn hands on the decisions in the order the kernel made them, each
// chosen kill, then the others.
func (h *groupHold) handOn(decisions []*heldDecision) {
	slices.SortFunc(decisions, func(a, b *heldDecision) int { return cmp.Compare(a.ev.Seq, b.ev.Seq) })
	for _, d := range decisions {
		h.handle(d.ev)
		for _, ev := range d.members {
			h.handle(ev)
		}
	}
}

// takeOver takes the held decisions whose latest kill (of a record or
// folded) over says they are over, each finished. Call with mu held.
func (h *groupHold) takeOver(over func(lastNs uint64) bool) []*heldDecision {
	var ready []*heldDecision
	for seq, d := range h.held {
		fold, found := h.fold(seq)
		if !over(max(d.lastNs, fold.LastNs)) {
			continue
		}
		h.finish(d, fold, found)
		ready = append(ready, d)
		delete(h.held, seq)
	}
	return ready
}

// fold is what the programs folded into decision seq so far.
func (h *groupHold) fold(seq uint64) (oomtraceGroupFold, bool) {
	var f oomtraceGroupFold
	if h.folds == nil {
		return f, false
	}
	err := h.folds.Lookup(seq, &f)
	return f, err == nil
}

// finish adds the folded kills to the decision's first kill and forgets
// them in the kernel: over, the decision folds no more.
func (h *groupHold) finish(d *heldDecision, fold oomtraceGroupFold, found bool) {
	if !found {
		return
	}
	g := *d.ev.OOM.Group
	g.Folded = fold.Folded
	d.ev.OOM.Group = &g
	// An LRU map: an entry left by a failed delete goes by itself.
	_ = h.folds.Delete(g.DecisionSeq)
}

// close hands on every held kill at once, with what was folded so far
// (a stop: best effort), and holds no more.
func (h *groupHold) close() {
	h.mu.Lock()
	h.closed = true
	if h.timer != nil && h.timer.Stop() {
		h.ticks.Done() // its tick will not run
	}
	h.timer = nil
	ready := h.takeOver(func(uint64) bool { return true })
	h.mu.Unlock()
	h.ticks.Wait()
	h.handOn(ready)
}

// bootNow is CLOCK_BOOTTIME, the programs' clock, in ns.
func bootNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}
