// SPDX-License-Identifier: Apache-2.0

package refusalfold

import (
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func refusal(cg uint64, pid uint32) event.CommitRefusal {
	return event.CommitRefusal{Type: event.TypeCommitRefusal, Syscall: "mmap", Reason: event.ReasonCommit, Count: 1,
		Process: event.Process{PID: pid, TGID: pid, Memcg: &event.Cgroup{ID: cg}}}
}

// TestFoldsAForkingPod: a cgroup whose 5,000 processes are each refused
// once a second writes its burst, then one line a second, and one folded
// line a second with the count of the rest and how many processes they
// came from: the lines bounded, the count exact. Another cgroup's first
// lines go out meanwhile.
func TestFoldsAForkingPod(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	f := New(Options{Now: c.now})
	lines, total, accounted := 0, uint64(0), uint64(0)
	take := func(due []event.CommitRefusal) {
		for _, l := range due {
			lines++
			accounted += l.Count
			if !l.Repeated || l.Processes == 0 || l.Processes > l.Count {
				t.Errorf("folded line: count %d, processes %d, repeated %v", l.Count, l.Processes, l.Repeated)
			}
		}
	}
	for sec := range 60 {
		for pid := range 5000 {
			c.add(200 * time.Microsecond) // 5,000 a second
			total++
			if f.Pass(refusal(7, uint32(100+pid))) {
				lines++
				accounted++
			}
		}
		if sec == 30 && !f.Pass(refusal(8, 1)) {
			t.Error("another cgroup's first line was held")
		}
		due, _ := f.Due(false)
		take(due)
	}
	due, next := f.Due(true)
	take(due)
	if !next.IsZero() {
		t.Errorf("after a flush, a line is still due at %v", next)
	}
	if accounted != total {
		t.Errorf("%d refusals in the lines, want all %d", accounted, total)
	}
	// The burst, then one a second and one folded a second.
	if lines > DefaultBurst+2*60+2 {
		t.Errorf("%d lines for a minute of one cgroup's 300,000 refusals, want about two a second", lines)
	}
	t.Logf("%d lines for %d refusals", lines, total)
}

// TestFoldedCountIsExact: every refusal held comes out in exactly one
// folded line, with its count, at the end of its window.
func TestFoldedCountIsExact(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	f := New(Options{Burst: 2, Every: time.Hour, Window: time.Second, Now: c.now})
	passed := 0
	for pid := range 10 {
		ev := refusal(7, uint32(pid%4))
		ev.Count = 3
		if f.Pass(ev) {
			passed++
		}
	}
	if passed != 2 {
		t.Fatalf("%d lines passed, want the burst of 2", passed)
	}
	if due, next := f.Due(false); len(due) != 0 || next != c.t.Add(time.Second) {
		t.Fatalf("due before the window: %v, next %v", due, next)
	}
	c.add(time.Second)
	due, _ := f.Due(false)
	if len(due) != 1 || due[0].Count != 8*3 || due[0].Processes != 4 || !due[0].Repeated || due[0].Process.TGID != 9%4 {
		t.Fatalf("folded %+v, want one line of 24 refusals from 4 processes, the latest's details", due)
	}
	if due, _ := f.Due(true); len(due) != 0 {
		t.Errorf("handed out twice: %v", due)
	}
}

// TestBounded: a tenant making cgroups at will cannot grow the folder:
// the allowances remembered and the folded lines waiting are bounded, the
// rest folded into the node's line, still counted.
func TestBounded(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	f := New(Options{Burst: 1, Every: time.Hour, MaxCgroups: 16, Now: c.now})
	total := uint64(0)
	for cg := range uint64(1000) {
		for range 3 {
			f.Pass(refusal(cg+1, 1))
			total++
		}
	}
	if len(f.allow) > 16 || len(f.pending) > 17 {
		t.Errorf("%d allowances, %d folded lines: want at most 16 and 17", len(f.allow), len(f.pending))
	}
	due, _ := f.Due(true)
	folded := uint64(0)
	for _, l := range due {
		folded += l.Count
	}
	if folded+1000 != total { // one line each passed
		t.Errorf("%d folded + 1000 written, want %d", folded, total)
	}
}
