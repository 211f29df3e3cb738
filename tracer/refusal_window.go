// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"container/list"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/oomtrace/oomtrace/event"
)

// The window fold: the kernel sends the first refusal of each process,
// syscall and reason per window and counts the rest in refusal_counts;
// the reader writes that first one at once and one line with the count of
// the repeats when the window closes.

// refusalState is what has been written for one aggregation key.
type refusalState struct {
	printed  uint64              // refusals written so far (sum of counts)
	last     event.CommitRefusal // the latest recorded refusal
	deadline time.Time           // when to write the repeats; zero when none are due
	seen     time.Time           // last activity, for pruning
	lru      *list.Element       // in refusalWindow.bySeen
}

// maxRefusalKeys bounds the aggregator: as many keys as the kernel's
// refusal_counts holds. Each process has keys of its own, and a tenant can
// start processes without end: past the bound the key seen longest ago
// has its repeats written and is forgotten, here and in the kernel.
const maxRefusalKeys = 16384

// refusalWindow is the aggregator's state: only the reader goroutine
// touches it. Every record costs O(1): keys in the order they were last
// seen, and the windows to close in the order they close (every window
// is as long, so they close in the order they opened).
type refusalWindow struct {
	pending map[refusalRefusalKey]*refusalState
	bySeen  *list.List // of refusalRefusalKey, least recently seen first
	due     []dueWindow
	maxKeys int
}

// dueWindow is a window to close; stale when its key got another since.
type dueWindow struct {
	key      refusalRefusalKey
	deadline time.Time
}

func newRefusalWindow() refusalWindow {
	return refusalWindow{pending: map[refusalRefusalKey]*refusalState{}, bySeen: list.New(), maxKeys: maxRefusalKeys}
}

// run reads refusal records and writes repeats when their window closes,
// until the ring buffer is flushed or closed; then it writes every pending
// repeat count.
func (r *refusalTracer) run(handle func(event.CommitRefusal)) error {
	var buf []byte
	defer r.flushAll(handle)
	for {
		r.reader.SetDeadline(r.nextDeadline())
		rec, end, err := r.reader.Read(buf)
		switch {
		case isEndOfStream(err):
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			r.flushDue(handle, time.Now())
			continue
		case err != nil:
			return fmt.Errorf("read refusal ring buffer: %w", err)
		}
		buf = rec
		// Refusals are folded in memory: nothing to keep in the ring.
		r.reader.Commit(end)
		raw, err := r.decoder.decodeRaw(rec)
		if err != nil {
			r.diag.decodeError("commit_refusal", err)
			continue
		}
		host, err := readHostMemory(r.procfs)
		if err != nil {
			r.diag.log.Warn("read commit accounting settings", "err", err)
		}
		ev, err := r.decoder.event(&raw, host)
		if err != nil {
			r.diag.decodeError("commit_refusal", err)
			continue
		}
		r.fold(handle, refusalRefusalKey{Tgid: raw.Process.Tgid, Syscall: raw.Syscall, Class: raw.Class}, raw.Total, ev, time.Now())
	}
}

// fold writes a window's first refusal of key, whose kernel total was
// total when it was sent, and opens the window.
func (r *refusalTracer) fold(handle func(event.CommitRefusal), key refusalRefusalKey, total uint64, ev event.CommitRefusal, now time.Time) {
	st := r.pending[key]
	if st == nil {
		if len(r.pending) >= r.maxKeys {
			oldest := r.bySeen.Front().Value.(refusalRefusalKey)
			r.flush(handle, oldest, r.pending[oldest], now)
			r.forget(oldest)
		}
		st = &refusalState{}
		st.lru = r.bySeen.PushBack(key)
		r.pending[key] = st
	} else {
		r.bySeen.MoveToBack(st.lru)
	}
	ev.Count = r.recordDelta(key, total, st.printed)
	st.last = ev
	st.seen = now
	st.deadline = now.Add(r.window)
	r.due = append(r.due, dueWindow{key, st.deadline})
	if ev.Count == 0 {
		return // late: a repeated line counted it
	}
	st.printed = total
	handle(ev)
}

// recordDelta is how many refusals a record's total stands for beyond what
// was written.
//
// A total below what was written is either a late record or an entry the
// kernel evicted and started anew, and only the map tells which. Records
// are late in two ways: the kernel opens its window when a refusal comes
// while the reader closes its own on a timer, so a flush can read the map
// after the kernel counted on past the record it has not read yet (a
// guest under TCG counted 129,400 refusals for a storm of 100,000 that
// way); and two threads of a process refused at once can both open the
// window and reach the ring in the other order. The refusals of a late
// record are in what was written; the entry still holds at least that.
func (r *refusalTracer) recordDelta(key refusalRefusalKey, total, printed uint64) uint64 {
	if total >= printed {
		return total - printed
	}
	var cnt refusalRefusalCount
	if err := r.maps.RefusalCounts.Lookup(&key, &cnt); err == nil && cnt.Total >= printed {
		return 0 // late
	}
	return total // started anew
}

// delta is how many refusals a total read from the map stands for beyond
// what was written. The map's total never runs behind what was written
// unless the kernel's entry was evicted and started anew.
func delta(total, printed uint64) uint64 {
	if total < printed {
		return total
	}
	return total - printed
}

// nextDeadline is when the reader must wake up for the next due flush.
func (r *refusalTracer) nextDeadline() time.Time {
	for len(r.due) > 0 {
		d := r.due[0]
		if st := r.pending[d.key]; st != nil && st.deadline.Equal(d.deadline) {
			return d.deadline
		}
		r.due = r.due[1:] // stale
	}
	// Nothing due: wake up now and then to prune idle keys.
	return time.Now().Add(time.Minute)
}

// flushDue writes the repeats of every key whose window has closed, and
// forgets the keys idle for idleKeyTTL.
func (r *refusalTracer) flushDue(handle func(event.CommitRefusal), now time.Time) {
	for len(r.due) > 0 && !now.Before(r.due[0].deadline) {
		d := r.due[0]
		r.due = r.due[1:]
		if st := r.pending[d.key]; st != nil && st.deadline.Equal(d.deadline) {
			r.flush(handle, d.key, st, now)
		}
	}
	for e := r.bySeen.Front(); e != nil; {
		key := e.Value.(refusalRefusalKey)
		st := r.pending[key]
		if now.Sub(st.seen) <= idleKeyTTL {
			break
		}
		e = e.Next()
		if !st.deadline.IsZero() || !r.prune(key, st) {
			// Moved again in the kernel: idle no more.
			st.seen = now
			r.bySeen.MoveToBack(st.lru)
		}
	}
}

// idleKeyTTL is how long a key without refusals is remembered.
const idleKeyTTL = 10 * time.Minute

func (r *refusalTracer) flushAll(handle func(event.CommitRefusal)) {
	now := time.Now()
	for _, key := range r.sortedKeys() {
		r.flush(handle, key, r.pending[key], now)
	}
}

func (r *refusalTracer) sortedKeys() []refusalRefusalKey {
	keys := make([]refusalRefusalKey, 0, len(r.pending))
	for k := range r.pending {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.Tgid != b.Tgid {
			return a.Tgid < b.Tgid
		}
		if a.Syscall != b.Syscall {
			return a.Syscall < b.Syscall
		}
		return a.Class < b.Class
	})
	return keys
}

// flush writes one line for the refusals of key not written yet.
func (r *refusalTracer) flush(handle func(event.CommitRefusal), key refusalRefusalKey, st *refusalState, now time.Time) {
	st.deadline = time.Time{}
	var cnt refusalRefusalCount
	if err := r.maps.RefusalCounts.Lookup(&key, &cnt); err != nil {
		return // evicted: nothing more can be known
	}
	n := delta(cnt.Total, st.printed)
	if n == 0 {
		return
	}
	st.printed = cnt.Total
	ev := st.last
	ev.Time = event.Time{Time: now}
	ev.Count = n
	ev.Repeated = true
	if host, err := readHostMemory(r.procfs); err == nil {
		ev.Overcommit = overcommitOf(host)
	}
	handle(ev)
}

// prune forgets an idle key here and in the kernel, unless it moved
// again: then it says false.
func (r *refusalTracer) prune(key refusalRefusalKey, st *refusalState) bool {
	var cnt refusalRefusalCount
	if err := r.maps.RefusalCounts.Lookup(&key, &cnt); err == nil && cnt.Total != st.printed {
		return false
	}
	r.forget(key)
	return true
}

// forget drops key here and in the kernel.
func (r *refusalTracer) forget(key refusalRefusalKey) {
	_ = r.maps.RefusalCounts.Delete(&key)
	if st := r.pending[key]; st != nil {
		r.bySeen.Remove(st.lru)
		delete(r.pending, key)
	}
}
