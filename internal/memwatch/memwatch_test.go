// SPDX-License-Identifier: Apache-2.0

package memwatch

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgroup"
)

const mib = 1 << 20

// fakeCgroup is a cgroup directory of a fake hierarchy, its files written
// as the kernel prints them.
type fakeCgroup struct {
	t   *testing.T
	dir string
	v1  bool
}

func newFake(t *testing.T, root, p string, v1 bool, limit, high uint64) *fakeCgroup {
	t.Helper()
	f := &fakeCgroup{t: t, dir: filepath.Join(root, p), v1: v1}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if v1 {
		f.write("memory.limit_in_bytes", fmt.Sprint(limit))
		f.set(0, 0, 0, 0, 0, 0)
		return f
	}
	f.write("memory.max", limitText(limit))
	f.write("memory.high", limitText(high))
	f.set(0, 0, 0, 0, 0, 0)
	return f
}

func limitText(n uint64) string {
	if n == 0 {
		return "max"
	}
	return fmt.Sprint(n)
}

func (f *fakeCgroup) write(name, content string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(content+"\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// set writes the cgroup's usage, page cache, the max and high event
// counts, PSI some avg10 and its total stall (µs).
func (f *fakeCgroup) set(usage, file, maxEvents, highEvents uint64, avg10 float64, stallUS uint64) {
	anon := usage - min(file, usage)
	if f.v1 {
		f.write("memory.usage_in_bytes", fmt.Sprint(usage))
		f.write("memory.stat", fmt.Sprintf("cache %d\nrss %d\ntotal_cache %d\ntotal_rss %d\ntotal_inactive_file %d", file, anon, file, anon, file/2))
		f.write("memory.failcnt", fmt.Sprint(maxEvents))
		return
	}
	f.write("memory.current", fmt.Sprint(usage))
	f.write("memory.stat", fmt.Sprintf("anon %d\nfile %d\ninactive_file %d", anon, file, file/2))
	f.write("memory.events", fmt.Sprintf("low 0\nhigh %d\nmax %d\noom 0\noom_kill 0\noom_group_kill 0", highEvents, maxEvents))
	f.write("memory.pressure", fmt.Sprintf("some avg10=%.2f avg60=0.00 avg300=0.00 total=%d\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0", avg10, stallUS))
}

// clock is a fake clock that Poll moves by one interval.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func newWatcher(t *testing.T, root string, v1 bool, c *clock) *Watcher {
	t.Helper()
	w := New(Options{Memory: cgroup.Memory{Root: root, V1: v1}, Node: "n", Now: c.Now})
	w.scan()
	return w
}

// step moves the clock one interval and polls.
func step(w *Watcher, c *clock) []event.CgroupPressure {
	c.now = c.now.Add(time.Second)
	return w.Poll()
}

// A leak towards the limit, 1 MiB a second, with no page cache: the
// episode starts once what cannot be reclaimed passes 90% of the limit
// two seconds in a row, more than 5 s before the limit.
func TestLeakWarnsBeforeTheLimit(t *testing.T) {
	for _, v1 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v1=%t", v1), func(t *testing.T) {
			root, c := t.TempDir(), &clock{now: time.Unix(1000, 0)}
			f := newFake(t, root, "/kubepods/burstable/pod1/ctr", v1, 64*mib, 0)
			w := newWatcher(t, root, v1, c)
			var started *event.CgroupPressure
			at := uint64(0)
			for usage := uint64(30 * mib); usage <= 64*mib && started == nil; usage += mib {
				f.set(usage, 0, 0, 0, 0, 0)
				for _, ev := range step(w, c) {
					if ev.State == event.PressureStarted {
						started, at = &ev, usage
					}
				}
			}
			if started == nil {
				t.Fatal("no warning before the limit")
			}
			if left := 64*mib - at; left < 5*mib {
				t.Errorf("warned at %d MiB of 64: %d s before the limit, want at least 5", at/mib, left/mib)
			}
			if started.Memcg.Path != "/kubepods/burstable/pod1/ctr" || !slices.Contains(started.Episode.Reasons, event.PressureNearLimit) ||
				started.Memory.UsageBytes != at || started.Memory.LimitBytes == nil || *started.Memory.LimitBytes != 64*mib {
				t.Errorf("started line %+v", started)
			}
		})
	}
}

// A cgroup full of page cache that the kernel reclaims without stalling
// hits its limit again and again and never warns.
func TestPageCacheDoesNotWarn(t *testing.T) {
	for _, v1 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v1=%t", v1), func(t *testing.T) {
			root, c := t.TempDir(), &clock{now: time.Unix(1000, 0)}
			f := newFake(t, root, "/kubepods/pod2/reader", v1, 64*mib, 0)
			w := newWatcher(t, root, v1, c)
			for i := uint64(0); i < 60; i++ {
				f.set(63*mib, 58*mib, 100*i, 0, 0.5, 1000*i)
				if got := step(w, c); len(got) > 0 {
					t.Fatalf("second %d: %+v", i, got)
				}
			}
		})
	}
}

// Over memory.high with anonymous memory, again and again: a warning with
// the high events; it ends (with its duration) once the cgroup frees
// memory and stays calm, and is kept for the kill that may follow.
func TestAboveHighStartsAndEnds(t *testing.T) {
	root, c := t.TempDir(), &clock{now: time.Unix(1000, 0)}
	f := newFake(t, root, "/kubepods.slice/app.scope", false, 128*mib, 100*mib)
	w := newWatcher(t, root, false, c)
	var lines []event.CgroupPressure
	high := uint64(0)
	for i := 0; i < 5; i++ {
		high += 40
		f.set(101*mib, mib, 0, high, 2, 0)
		lines = append(lines, step(w, c)...)
	}
	if len(lines) != 1 || lines[0].State != event.PressureStarted || !slices.Contains(lines[0].Episode.Reasons, event.PressureAboveHigh) {
		t.Fatalf("lines %+v, want one start above memory.high", lines)
	}
	if e := w.Episode("/kubepods.slice/app.scope"); e == nil || e.HighEvents == 0 {
		t.Fatalf("episode %+v while it is on", e)
	}
	f.set(20*mib, mib, 0, high, 0, 0)
	lines = nil
	for i := 0; i < 15; i++ {
		lines = append(lines, step(w, c)...)
	}
	if len(lines) != 1 || lines[0].State != event.PressureEnded {
		t.Fatalf("lines %+v, want one end", lines)
	}
	ep := lines[0].Episode
	// Started after 2 s, high events counted from the second read on,
	// ended after 10 s of calm.
	if ep.HighEvents != 160 || ep.DurationSeconds < 10 || ep.PeakUsageBytes != 101*mib {
		t.Errorf("ended episode %+v", ep)
	}
	if e := w.Episode("kubepods.slice/app.scope"); e == nil || e.HighEvents != ep.HighEvents {
		t.Errorf("Episode after the end: %+v", e)
	}
	c.now = c.now.Add(2 * time.Minute)
	w.Poll()
	if e := w.Episode("/kubepods.slice/app.scope"); e != nil {
		t.Errorf("an episode ended 2 min ago is still kept: %+v", e)
	}
}

// Stalls at the limit with reclaimable memory left: PSI says the tasks
// wait, the max events that they hit the limit.
func TestStallingWarns(t *testing.T) {
	root, c := t.TempDir(), &clock{now: time.Unix(1000, 0)}
	f := newFake(t, root, "/system.slice/db.service", false, 64*mib, 0)
	w := newWatcher(t, root, false, c)
	var started []event.CgroupPressure
	for i := uint64(1); i <= 4; i++ {
		f.set(63*mib, 30*mib, 500*i, 0, 35, 300000*i)
		started = append(started, step(w, c)...)
	}
	if len(started) != 1 || started[0].Episode.Reasons[0] != event.PressureStalling || started[0].Memory.Pressure == nil ||
		started[0].Memory.Pressure.SomeAvg10 != 35 || started[0].Episode.StallSeconds == 0 {
		t.Fatalf("lines %+v, want a start for stalling", started)
	}
}

// An episode that goes on is said again every RepeatEvery, no more.
func TestOngoingRepeats(t *testing.T) {
	root, c := t.TempDir(), &clock{now: time.Unix(1000, 0)}
	f := newFake(t, root, "/a", false, 64*mib, 0)
	w := newWatcher(t, root, false, c)
	f.set(62*mib, 0, 0, 0, 0, 0)
	states := map[string]int{}
	for i := 0; i < 11*60; i++ {
		for _, ev := range step(w, c) {
			states[ev.State]++
		}
	}
	if states[event.PressureStarted] != 1 || states[event.PressureOngoing] != 2 || states[event.PressureEnded] != 0 {
		t.Errorf("11 minutes under pressure: %v, want one start and two reminders", states)
	}
}

// A cgroup removed during its episode (its container ended, killed) ends
// it; one without a limit is not watched; MaxCgroups bounds the walk.
func TestGoneAndBounds(t *testing.T) {
	root, c := t.TempDir(), &clock{now: time.Unix(1000, 0)}
	f := newFake(t, root, "/k/p/c", false, 64*mib, 0)
	newFake(t, root, "/k/unlimited", false, 0, 0)
	w := newWatcher(t, root, false, c)
	if n := w.Watched(); n != 1 {
		t.Errorf("%d cgroups watched, want the one with a limit", n)
	}
	f.set(63*mib, 0, 0, 0, 0, 0)
	step(w, c)
	step(w, c)
	if err := os.RemoveAll(f.dir); err != nil {
		t.Fatal(err)
	}
	// On cgroupfs a removed cgroup's open files fail their reads (ENODEV);
	// a removed regular file's do not: read afresh here.
	w.mem.Files = nil
	got := step(w, c)
	if len(got) != 1 || got[0].State != event.PressureEnded {
		t.Fatalf("lines %+v, want the episode ended", got)
	}
	if w.Episode("/k/p/c") == nil {
		t.Error("the ended episode of a removed cgroup is not kept for its kill")
	}

	root = t.TempDir()
	for i := 0; i < 50; i++ {
		newFake(t, root, fmt.Sprintf("/t/c%d", i), false, 64*mib, 0)
	}
	w = New(Options{Memory: cgroup.Memory{Root: root}, MaxCgroups: 10, Now: c.Now})
	w.scan()
	if n := w.Watched(); n > 10 {
		t.Errorf("%d cgroups watched, want at most 10", n)
	}
}

// A pod's cgroup holds its container's: when both fill (cgroup v2: the
// pod's limit is its containers' summed), the warning is the container's
// alone. A pod whose two containers together fill its limit, neither its
// own, is warned about as the pod.
func TestWarningIsTheDeepest(t *testing.T) {
	root, c := t.TempDir(), &clock{now: time.Unix(1000, 0)}
	pod := newFake(t, root, "/kubepods/pod1", false, 64*mib, 0)
	ctr := newFake(t, root, "/kubepods/pod1/ctr", false, 64*mib, 0)
	w := newWatcher(t, root, false, c)
	var lines []event.CgroupPressure
	for i := 0; i < 4; i++ {
		pod.set(63*mib, 0, 0, 0, 0, 0)
		ctr.set(62*mib, 0, 0, 0, 0, 0)
		lines = append(lines, step(w, c)...)
	}
	if len(lines) != 1 || lines[0].Memcg.Path != "/kubepods/pod1/ctr" {
		t.Errorf("lines %+v, want the container's start only", lines)
	}

	root = t.TempDir()
	pod = newFake(t, root, "/kubepods/pod2", false, 64*mib, 0)
	a := newFake(t, root, "/kubepods/pod2/a", false, 48*mib, 0)
	b := newFake(t, root, "/kubepods/pod2/b", false, 48*mib, 0)
	w = newWatcher(t, root, false, c)
	lines = nil
	for i := 0; i < 4; i++ {
		pod.set(62*mib, 0, 0, 0, 0, 0)
		a.set(31*mib, 0, 0, 0, 0, 0)
		b.set(31*mib, 0, 0, 0, 0, 0)
		lines = append(lines, step(w, c)...)
	}
	if len(lines) != 1 || lines[0].Memcg.Path != "/kubepods/pod2" {
		t.Errorf("lines %+v, want the pod's start", lines)
	}
}
