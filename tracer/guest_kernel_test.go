// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// requireGuest skips unless this is the throwaway test kernel booted by
// kerneltest/run.sh: the kernel command line, which no environment can
// fake, must say so. A global OOM on a real host kills whatever the kernel
// picks.
func requireGuest(t *testing.T) {
	t.Helper()
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil || !strings.Contains(" "+string(cmdline)+" ", " oomtrace.guest=1 ") || os.Getenv("OOMTRACE_GUEST") != "1" {
		t.Skip("runs only in the test guest (kerneltest/run.sh)")
	}
	testenv.RequirePrivileged(t)
}

// TestGuestGlobalOOM exhausts the guest's memory with no cgroup limit: the
// kill is reported with scope global and the hog as the victim.
func TestGuestGlobalOOM(t *testing.T) {
	testenv.RequirePrivileged(t)
	requireGuest(t)
	c := startTracer(t, Config{Node: "guest"})
	// Keep this process out of the kernel's choice.
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("-1000"), 0); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile("/proc/self/oom_score_adj", []byte("0"), 0)
	cg := memcgtest.New(t, nil, 0) // no limit: only the system's memory bounds it
	var mem syscall.Sysinfo_t
	syscall.Sysinfo(&mem)
	total := int64(mem.Totalram) * int64(mem.Unit)
	// Killable bystanders: should the kernel need a second kill before the
	// hog's memory is back, it finds one instead of panicking with "no
	// killable processes" (this process and init are not).
	for i := 0; i < 2; i++ {
		cg.Start(t, memcgtest.HogOptions{Bytes: 4 << 20, Idle: true, OOMScoreAdj: intPtr(1000)})
	}
	hog := cg.Start(t, memcgtest.HogOptions{Bytes: total + total/2, OOMScoreAdj: intPtr(1000)})
	hog.WaitKilled(t)
	evs := c.waitFor(map[int]bool{hog.PID: true}, 60*time.Second)[hog.PID]
	if len(evs) != 1 {
		t.Fatalf("events for the hog %d: %d, want 1", hog.PID, len(evs))
	}
	ev := evs[0]
	t.Logf("%s scope=%s source=%s decision=%+v", ev.Hook, ev.OOM.Scope, ev.OOM.ScopeSource, ev.OOM.Decision)
	if ev.OOM.Scope != event.ScopeGlobal || ev.OOM.Domain != nil {
		t.Errorf("scope %q domain %+v, want global and none", ev.OOM.Scope, ev.OOM.Domain)
	}
	if d := ev.OOM.Decision; d != nil {
		if d.Constraint != "none" || d.ChosenPID != uint32(hog.PID) || d.Message != "Out of memory" {
			t.Errorf("decision %+v, want constraint none, chosen %d, \"Out of memory\"", *d, hog.PID)
		}
		if pages := uint64(total) / uint64(os.Getpagesize()); d.TotalPages < pages/2 || d.TotalPages > 2*pages {
			t.Errorf("total_pages %d, want about the machine's %d", d.TotalPages, pages)
		}
	} else if ev.OOM.ScopeSource != event.SourceNoMemcgAtLimit {
		t.Errorf("scope_source %q without a decision hook", ev.OOM.ScopeSource)
	}
}

// TestGuestOOMGroup kills a whole cgroup v2 memory.oom.group: one event per
// killed task, all of one group kill (the group's cgroup, the first kill's
// seq, one chosen task), with the decision hook and without it; the
// kernel's counters agree: one oom_group_kill, and the oom_kill count the
// hooks account for, the chosen task's second count included.
func TestGuestOOMGroup(t *testing.T) {
	testenv.RequirePrivileged(t)
	requireGuest(t)
	for _, hook := range []string{HookAuto, HookNone} {
		t.Run("decision_"+hook, func(t *testing.T) { testGuestOOMGroup(t, hook, 0) })
		// Two records a decision: the third kill is folded into the
		// chosen one's.
		t.Run("decision_"+hook+"_folded", func(t *testing.T) { testGuestOOMGroup(t, hook, 2) })
	}
}

func testGuestOOMGroup(t *testing.T, decisionHook string, records uint32) {
	c := startTracer(t, Config{Node: "guest", DecisionHook: decisionHook, GroupRecords: records})
	if (c.t.Hooks().Decision == "") != (decisionHook == HookNone) {
		t.Fatalf("decision hook %q with --hook.decision=%s", c.t.Hooks().Decision, decisionHook)
	}
	cg := memcgtest.New(t, nil, limit)
	if err := os.WriteFile(cg.Dir+"/memory.oom.group", []byte("1"), 0); err != nil {
		t.Fatalf("memory.oom.group: %v", err)
	}
	// memory.events counts group kills since 5.17.
	_, hasGroupKillCounter := cg.MemoryEvents(t)["oom_group_kill"]
	before := c.t.Accounting()
	idle1 := cg.Start(t, memcgtest.HogOptions{Bytes: 2 << 20, Idle: true})
	idle2 := cg.Start(t, memcgtest.HogOptions{Bytes: 2 << 20, Idle: true})
	alloc := cg.Start(t, memcgtest.HogOptions{Bytes: hogBytes})
	for _, h := range []*memcgtest.Hog{idle1, idle2, alloc} {
		h.WaitKilled(t)
	}
	// The chosen kill comes last: once the decision is over.
	c.waitUntil(func(evs []event.OOMKill) bool {
		for _, ev := range evs {
			if g := ev.OOM.Group; g != nil && g.Chosen && ev.Victim.Memcg != nil && ev.Victim.Memcg.Path == cg.Path {
				return true
			}
		}
		return false
	}, 30*time.Second)
	got := c.waitFor(map[int]bool{idle1.PID: true, idle2.PID: true, alloc.PID: true}, time.Second)
	after := c.t.Accounting()
	c.stop(t)
	var first *event.Decision
	decisions := map[uint64]bool{}
	n, chosen := 0, 0
	var folded uint64
	for _, ev := range c.events {
		if ev.Victim.Memcg == nil || ev.Victim.Memcg.Path != cg.Path {
			continue
		}
		n++
		g := ev.OOM.Group
		t.Logf("kill of %d (%s): group %+v", ev.Victim.TGID, ev.Victim.Comm, g)
		if g == nil {
			t.Errorf("event for %d has no group", ev.Victim.TGID)
			continue
		}
		if g.Cgroup.ID != ev.Victim.Memcg.ID || g.Cgroup.Path != cg.Path || g.Cgroup.PathTruncated {
			t.Errorf("group cgroup %+v, want %s (id %d)", g.Cgroup, cg.Path, ev.Victim.Memcg.ID)
		}
		decisions[g.DecisionSeq] = true
		if g.Chosen {
			chosen++
			folded += g.Folded
			if g.DecisionSeq != ev.Seq {
				t.Errorf("chosen kill: seq %d, decision_seq %d", ev.Seq, g.DecisionSeq)
			}
		}
		// The chosen task reads the group's oom_group_kill before the
		// kernel counts the decision, the rest after; a kernel before
		// 5.17 counts none (memory.events has no oom_group_kill line):
		// unknown, not 0.
		want := uint64(1)
		if g.Chosen {
			want = 0
		}
		switch {
		case !hasGroupKillCounter && g.GroupKills != nil:
			t.Errorf("kill of %d: oom_group_kill %d where memory.events has no such counter", ev.Victim.TGID, *g.GroupKills)
		case hasGroupKillCounter && (g.GroupKills == nil || *g.GroupKills != want):
			t.Errorf("kill of %d: oom_group_kill %v, want %d", ev.Victim.TGID, g.GroupKills, want)
		}
		d := ev.OOM.Decision
		if decisionHook == HookNone {
			continue
		}
		if d == nil {
			t.Errorf("event for %d/%d has no decision", ev.Victim.TGID, ev.Victim.PID)
			continue
		}
		if first == nil {
			first = d
		} else if d.ChosenPID != first.ChosenPID || d.TotalPages != first.TotalPages || d.Constraint != "memcg" {
			t.Errorf("decision %+v differs from the group's %+v", *d, *first)
		}
	}
	withEvent := 0
	for _, h := range []*memcgtest.Hog{idle1, idle2, alloc} {
		if len(got[h.PID]) > 0 {
			withEvent++
		}
	}
	// Three killed, each with an event; or with two records a decision,
	// two events and the rest folded (kernels that scan threads kill a
	// killed process's other threads again: folded too, as the kernel
	// counts them).
	if records == 0 && (withEvent != 3 || folded != 0) {
		t.Errorf("%d of the group's 3 processes have an event, %d folded: want 3, 0", withEvent, folded)
	}
	if records > 0 && (uint32(n) != records || uint64(n)+folded < 3 || len(got[alloc.PID]) == 0) {
		t.Errorf("%d events (%d processes), %d folded: want %d events, the allocating process's among them, and at least %d folded", n, withEvent, folded, records, 3-int(records))
	}
	if acc := after.Folded - before.Folded; acc != folded {
		t.Errorf("the programs folded %d kills, the chosen kill says %d", acc, folded)
	}
	if len(decisions) != 1 || chosen != 1 {
		t.Errorf("%d decisions, %d chosen; want one decision, one chosen", len(decisions), chosen)
	}
	if events := cg.MemoryEvents(t); hasGroupKillCounter && events["oom_group_kill"] != 1 {
		t.Errorf("memory.events %v: want oom_group_kill 1", events)
	}
	// The kernel counts the chosen task again when the group's scan meets
	// it (6.1: each thread of each task that still has its memory); the
	// signal hook counts those kills, so the kernel's oom_kill is the kills
	// reported plus the further counts. Exactly so on 6.1. On 6.12 the
	// hook has been seen to miss that second kill of the chosen task (its
	// mark then reported as a second kill, or its count unobserved): an
	// open problem of #19, so only the bound is asserted here.
	kills := cg.OOMKills(t)
	recounted := after.Recounted - before.Recounted
	reported := uint64(n) + folded
	if reported+recounted > kills || reported < 3 {
		t.Errorf("%d events in the group's cgroup, %d folded and %d counted again, its oom_kill counter says %d", n, folded, recounted, kills)
	} else if reported+recounted != kills {
		t.Logf("KNOWN GAP: %d events, %d folded and %d counted again, but oom_kill says %d", n, folded, recounted, kills)
	}
	t.Logf("%d tasks reported killed as a group (%d folded), %d counted again; oom_kill counter %d", reported, folded, recounted, kills)
}

// TestGuestExactAgreesWithFallback runs each refusal once with the exact
// hook and once with the fallback classifier and compares the reasons, so
// the fallback's accuracy is measured on real refusals.
func TestGuestExactAgreesWithFallback(t *testing.T) {
	testenv.RequirePrivileged(t)
	requireGuest(t)
	type result struct{ reason, by string }
	nothing := func() {}
	// simple refuses with a refuser mode whose one line is "ENOMEM".
	simple := func(mode string, arg uint64) func(t *testing.T) (int, func()) {
		return func(t *testing.T) (int, func()) {
			cmd, out, _ := refuser(t, mode, arg)
			if got := readLine(t, out); got != "ENOMEM" {
				t.Fatalf("refuser %s: %s", mode, got)
			}
			return cmd.Process.Pid, nothing
		}
	}
	// Every reason the README lists, each made for real.
	cases := []struct {
		name string
		// run makes the refusal and returns the process, and what undoes
		// the setting it needed, once the refusal is classified.
		run func(t *testing.T) (int, func())
	}{
		{"mode0 huge mmap", func(t *testing.T) (int, func()) {
			if _, err := syscall.Mmap(-1, 0, 1<<45, mmapProtRW, mmapPrivAnon); err != syscall.ENOMEM {
				t.Fatalf("mmap: %v", err)
			}
			return os.Getpid(), nothing
		}},
		{"rlimit_as", simple("rlimit_as", 256<<20)},
		{"rlimit_data", simple("rlimit_data", 256<<20)},
		{"map_count", func(t *testing.T) (int, func()) {
			cmd, out, _ := refuser(t, "map_count", 0)
			if got := readLine(t, out); !strings.HasSuffix(got, " ENOMEM") {
				t.Fatalf("refuser map_count: %s", got)
			}
			return cmd.Process.Pid, nothing
		}},
		{"mode2 commit", func(t *testing.T) (int, func()) {
			// The mode stays 2 until the refusals are classified (the
			// fallback reads it when it classifies).
			m := startMode2Refusals(t)
			if !strings.HasPrefix(m.result, "ENOMEM") {
				m.restore()
				t.Fatalf("refuser in mode 2: %q, want the mmap refused first", m.result)
			}
			return m.pid, m.restore
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var results []result
			for _, hook := range []string{HookAuto, HookNone} {
				c := startTracer(t, Config{Refusals: true, RefusalHook: hook, Node: "guest"})
				if hook == HookAuto && c.t.Hooks().RefusalExact == "" {
					t.Fatal("no exact refusal hook attached in the guest")
				}
				pid, done := tc.run(t)
				got := c.waitRefusals(pid, 1, 10*time.Second)
				done()
				c.stop(t)
				// One refusal, but in mode 2: the mmap's, a brk's, a fork's.
				if len(got) == 0 || len(got) != 1 && tc.name != "mode2 commit" {
					t.Fatalf("%s: %d refusals: %+v", hook, len(got), got)
				}
				results = append(results, result{got[0].Reason, got[0].ClassifiedBy})
			}
			t.Logf("exact: %s by %s; fallback: %s by %s", results[0].reason, results[0].by, results[1].reason, results[1].by)
			if results[0].reason != results[1].reason {
				t.Errorf("the fallback says %s, the exact hook %s", results[1].reason, results[0].reason)
			}
		})
	}
}
