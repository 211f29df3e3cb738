package tracer

import (
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
			r.t.decodeError("commit_refusal", err)
			continue
		}
		host, err := readHostMemory(r.procfs)
		if err != nil {
			r.t.log.Warn("read commit accounting settings", "err", err)
		}
		ev, err := r.decoder.event(&raw, host)
		if err != nil {
			r.t.decodeError("commit_refusal", err)
			continue
		}
		key := refusalRefusalKey{Tgid: raw.Process.Tgid, Syscall: raw.Syscall, Class: raw.Class}
		st := r.pending[key]
		if st == nil {
			st = &refusalState{}
			r.pending[key] = st
		}
		ev.Count = delta(raw.Total, st.printed)
		st.printed = raw.Total
		st.last = ev
		st.seen = time.Now()
		st.deadline = st.seen.Add(r.window)
		handle(ev)
	}
}

// delta is how many refusals a total stands for beyond what was written.
// A total below it means the kernel's entry was evicted and started anew.
func delta(total, printed uint64) uint64 {
	if total < printed {
		return total
	}
	return total - printed
}

// nextDeadline is when the reader must wake up for the next due flush.
func (r *refusalTracer) nextDeadline() time.Time {
	var next time.Time
	for _, st := range r.pending {
		if !st.deadline.IsZero() && (next.IsZero() || st.deadline.Before(next)) {
			next = st.deadline
		}
	}
	if next.IsZero() {
		// Nothing due: wake up now and then to prune idle keys.
		next = time.Now().Add(time.Minute)
	}
	return next
}

// flushDue writes the repeats of every key whose window has closed.
func (r *refusalTracer) flushDue(handle func(event.CommitRefusal), now time.Time) {
	for _, key := range r.sortedKeys() {
		st := r.pending[key]
		if !st.deadline.IsZero() && !now.Before(st.deadline) {
			r.flush(handle, key, st, now)
		}
		if st.deadline.IsZero() && now.Sub(st.seen) > idleKeyTTL {
			r.prune(key, st)
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

// prune forgets an idle key here and in the kernel, unless it moved again.
func (r *refusalTracer) prune(key refusalRefusalKey, st *refusalState) {
	var cnt refusalRefusalCount
	if err := r.maps.RefusalCounts.Lookup(&key, &cnt); err == nil && cnt.Total != st.printed {
		return
	}
	r.maps.RefusalCounts.Delete(&key)
	delete(r.pending, key)
}
