// SPDX-License-Identifier: Apache-2.0

package postmortem

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/kernfile"
)

func statFile(t *testing.T, name string) cgroup.Stat {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return kernfile.ParseKeyValues(data)
}

// TestBreakdown reads a v2 memory.stat written by 6.18 and this host's v1
// root memory.stat: v1 counts the children in total_ counters, and its
// kernel memory is in memory.kmem.*.
func TestBreakdown(t *testing.T) {
	b := breakdownOf(statFile(t, "v2-memory.stat"), false, nil)
	if b.Anon != 66584576 || b.File != 1482752 || b.Shmem != 1048576 || b.Kernel == nil || *b.Kernel != 1232896 ||
		b.Slab == nil || *b.Slab != 950272 || b.Sock == nil || *b.Sock != 4096 || b.Source != "memory.stat" {
		t.Errorf("v2: %s", b)
	}
	st := statFile(t, "v2-memory.stat")
	delete(st, "kernel") // before 5.18: the parts
	if b := breakdownOf(st, false, nil); b.Kernel == nil || *b.Kernel != 81920+200704+950272 {
		t.Errorf("v2 without kernel: %s", b)
	}
	kmem := map[string]uint64{"memory.kmem.usage_in_bytes": 123 << 12}
	b = breakdownOf(statFile(t, "v1-memory.stat"), true, func(name string) (uint64, bool) { v, ok := kmem[name]; return v, ok })
	st = statFile(t, "v1-memory.stat")
	if b.Anon != st["total_rss"] || b.File != st["total_cache"] || b.Shmem != st["total_shmem"] || b.Anon == st["rss"] ||
		b.Kernel == nil || *b.Kernel != 123<<12 || b.Sock != nil || b.Slab != nil || b.Source != "memory.stat (total_*), memory.kmem.usage_in_bytes" {
		t.Errorf("v1: %s", b)
	}
}

const statusFixture = `Name:	gunicorn
Umask:	0022
State:	S (sleeping)
Tgid:	4242
VmRSS:	   63000 kB
RssAnon:	   61000 kB
RssFile:	    1900 kB
RssShmem:	     100 kB
VmSwap:	      12 kB
Threads:	1
`

func TestParseStatus(t *testing.T) {
	tm, ok := parseStatus([]byte(statusFixture))
	if !ok || tm.Comm != "gunicorn" || tm.RSS.Anon != 61000<<10 || tm.RSS.File != 1900<<10 || tm.RSS.Shmem != 100<<10 || tm.RSS.Swap == nil || *tm.RSS.Swap != 12<<10 {
		t.Errorf("%s %v", tm, ok)
	}
	// A kernel thread has no memory lines.
	if _, ok := parseStatus([]byte("Name:\tkworker/0:1\nState:\tI (idle)\n")); ok {
		t.Error("a kernel thread has memory")
	}
	if _, ok := parseStatus([]byte("Name:\tx\nRssAnon:\tlots kB\nRssFile:\t1 kB\nRssShmem:\t1 kB\nVmSwap:\t1 kB\n")); ok {
		t.Error("garbage read")
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(statusFixture))
	f.Fuzz(func(t *testing.T, data []byte) {
		if tm, ok := parseStatus(data); ok && tm.RSS.Swap == nil {
			t.Fatal("ok without swap")
		}
	})
}

// fakeHost writes a memory hierarchy and a procfs: the domain /pod with
// processes 10 (in a child cgroup), 11 and 12 (exited), and 20 outside it.
func fakeHost(t *testing.T, v1 bool) Reader {
	root, procfs := t.TempDir(), t.TempDir()
	write := func(dir, name, data string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stat := "anon 100\nfile 200\nshmem 50\nkernel 7\nslab 3\nsock 1\n"
	if v1 {
		stat = "rss 1\ncache 2\ntotal_rss 100\ntotal_cache 200\ntotal_shmem 50\n"
	}
	write(filepath.Join(root, "pod"), "memory.stat", stat)
	write(filepath.Join(root, "pod"), "cgroup.procs", "11\n12\n")
	write(filepath.Join(root, "pod", "ctr"), "cgroup.procs", "10\n")
	write(filepath.Join(root, "other"), "cgroup.procs", "20\n")
	for pid, kb := range map[int]int{10: 500, 11: 900, 20: 5000} {
		dir := filepath.Join(procfs, fmt.Sprint(pid))
		write(dir, "status", fmt.Sprintf("Name:\tp%d\nRssAnon:\t%d kB\nRssFile:\t0 kB\nRssShmem:\t0 kB\nVmSwap:\t0 kB\n", pid, kb))
		write(dir, "oom_score_adj", fmt.Sprintf("%d\n", pid))
	}
	return Reader{Memory: cgroup.Memory{Root: root, V1: v1}, Procfs: procfs, MemoryStat: true, TopTasks: 10,
		Now: func() time.Time { return time.Unix(1_800_000_000, 0) }}
}

func TestRead(t *testing.T) {
	for _, v1 := range []bool{false, true} {
		r := fakeHost(t, v1)
		k := event.OOMKill{OOM: event.OOM{Scope: event.ScopeMemcg, Domain: &event.Domain{Cgroup: &event.Cgroup{Path: "/pod"}}}}
		pm := r.Read(&k)
		if pm == nil || pm.Cgroup != "/pod" || pm.Memory == nil || pm.Memory.Anon != 100 || pm.Memory.File != 200 || pm.Memory.Shmem != 50 {
			t.Fatalf("v1=%v: %s", v1, pm)
		}
		// 12 has exited: two tasks, largest first; 20 is outside.
		if pm.Tasks != 2 || len(pm.TopTasks) != 2 || pm.TopTasks[0].PID != 11 || pm.TopTasks[0].RSS.Anon != 900<<10 ||
			pm.TopTasks[0].OOMScoreAdj != 11 || pm.TopTasks[0].Comm != "p11" || pm.TopTasks[1].PID != 10 || pm.TasksSource != "procfs" {
			t.Errorf("v1=%v: tasks %s", v1, pm)
		}
		r.TopTasks = 1
		if pm := r.Read(&k); len(pm.TopTasks) != 1 || pm.Tasks != 2 {
			t.Errorf("v1=%v: top 1: %s", v1, pm)
		}
	}
	// A system-wide OOM: every process; a cpuset OOM: nothing to read.
	r := fakeHost(t, false)
	if pm := r.Read(&event.OOMKill{OOM: event.OOM{Scope: event.ScopeGlobal}}); pm == nil || pm.Cgroup != "/" || pm.Tasks != 3 || pm.TopTasks[0].PID != 20 {
		t.Errorf("global: %s", pm)
	}
	if pm := r.Read(&event.OOMKill{OOM: event.OOM{Scope: event.ScopeCpuset}}); pm != nil {
		t.Errorf("cpuset: %s", pm)
	}
	r.MemoryStat, r.TopTasks = false, 0
	if pm := r.Read(&event.OOMKill{OOM: event.OOM{Scope: event.ScopeGlobal}}); pm != nil {
		t.Errorf("off: %s", pm)
	}
}

// TestReadLeavesOutTheDying: the victim is not among the tasks, and a
// memory.oom.group kill leaves out its whole group; the kills of one
// decision share the first one's read.
func TestReadLeavesOutTheDying(t *testing.T) {
	r := fakeHost(t, false)
	domain := &event.Domain{Cgroup: &event.Cgroup{Path: "/pod"}}
	k := event.OOMKill{Victim: event.Victim{Process: event.Process{TGID: 11}}, OOM: event.OOM{Scope: event.ScopeMemcg, Domain: domain}}
	if pm := r.Read(&k); pm.Tasks != 1 || len(pm.TopTasks) != 1 || pm.TopTasks[0].PID != 10 {
		t.Errorf("victim 11: tasks %s, want 10 only", pm)
	}
	// The group /pod/ctr (process 10) is killed whole for one decision.
	group := &event.GroupKill{Cgroup: event.Cgroup{Path: "/pod/ctr"}, DecisionSeq: 7, Chosen: true}
	k = event.OOMKill{Victim: event.Victim{Process: event.Process{TGID: 10}}, OOM: event.OOM{Scope: event.ScopeMemcg, Domain: domain, Group: group}}
	first := r.Read(&k)
	if first.Tasks != 1 || first.TopTasks[0].PID != 11 {
		t.Errorf("group kill: tasks %s, want 11 only", first)
	}
	// The next kill of the decision: the same post-mortem, not read again
	// (the domain's memory.stat changed meanwhile).
	if err := os.WriteFile(filepath.Join(r.Memory.Root, "pod", "memory.stat"), []byte("anon 1\nfile 1\nshmem 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	member := *group
	member.Chosen = false
	k.OOM.Group, k.Victim.TGID = &member, 12
	if again := r.Read(&k); again.Memory.Anon != first.Memory.Anon || again.Tasks != first.Tasks || again == first {
		t.Errorf("member of the decision: %s, want a copy of %s", again, first)
	}
	// Another decision reads again.
	other := member
	other.DecisionSeq = 9
	k.OOM.Group = &other
	if pm := r.Read(&k); pm.Memory.Anon != 1 {
		t.Errorf("another decision: %s, want a new read", pm)
	}
}

// TestBreakdownStatKeepsWhatBreakdownReads: the counters breakdownStat
// keeps make the same breakdown as the whole file's, on v1 and v2.
func TestBreakdownStatKeepsWhatBreakdownReads(t *testing.T) {
	for _, c := range []struct {
		file string
		v1   bool
	}{{"v1-memory.stat", true}, {"v2-memory.stat", false}} {
		data, err := os.ReadFile(filepath.Join("testdata", c.file))
		if err != nil {
			t.Fatal(err)
		}
		whole, kept := breakdownOf(statFile(t, c.file), c.v1, nil), breakdownOf(breakdownStat(data), c.v1, nil)
		if !reflect.DeepEqual(whole, kept) {
			t.Errorf("%s: from the counters kept %+v, from all %+v", c.file, kept, whole)
		}
		if len(breakdownStat(data)) >= len(statFile(t, c.file)) {
			t.Errorf("%s: kept every counter", c.file)
		}
	}
}

// TestReadBounded: a system-wide OOM on a host of thousands of processes
// reads them on the stage's goroutine: the read stops at 4,096 tasks, or
// when it has taken 250 ms, and says so; what it read is counted and
// ranked.
func TestReadBounded(t *testing.T) {
	procfs := t.TempDir()
	for pid := 1; pid <= maxTasksRead+100; pid++ {
		dir := filepath.Join(procfs, fmt.Sprint(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		status := fmt.Sprintf("Name:\tp%d\nRssAnon:\t%d kB\nRssFile:\t0 kB\nRssShmem:\t0 kB\nVmSwap:\t0 kB\n", pid, pid)
		if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	global := &event.OOMKill{OOM: event.OOM{Scope: event.ScopeGlobal}}
	r := Reader{Procfs: procfs, TopTasks: 3, Now: func() time.Time { return time.Unix(1_800_000_000, 0) }}
	pm := r.Read(global)
	if pm == nil || pm.Tasks != maxTasksRead || !pm.TasksTruncated || len(pm.TopTasks) != 3 {
		t.Fatalf("%d tasks, truncated %v, top %d: want %d, truncated", pm.Tasks, pm.TasksTruncated, len(pm.TopTasks), maxTasksRead)
	}
	// A slow read: 100 ms a look at the clock; the budget is spent after
	// the third look (at 128 tasks).
	at := time.Unix(1_800_000_000, 0)
	r.Now = func() time.Time { at = at.Add(100 * time.Millisecond); return at }
	pm = r.Read(global)
	if pm.Tasks != 2*budgetEvery || !pm.TasksTruncated {
		t.Errorf("slow read: %d tasks, truncated %v; want %d, truncated", pm.Tasks, pm.TasksTruncated, 2*budgetEvery)
	}
	// A read within both bounds is whole.
	small := fakeHost(t, false)
	if pm := small.Read(global); pm.TasksTruncated || pm.Tasks != 3 {
		t.Errorf("small host: %d tasks, truncated %v", pm.Tasks, pm.TasksTruncated)
	}
}
