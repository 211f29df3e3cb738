// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// waitKill reads oomtrace's output until the kill of pid.
func (d *daemon) waitKill(t *testing.T, pid int, timeout time.Duration) event.OOMKill {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-d.lines:
			if !ok {
				t.Fatalf("stdout closed; logs:\n%s", d.logs.String())
			}
			if !strings.Contains(line, `"type":"oom_kill"`) {
				continue
			}
			var ev event.OOMKill
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			if int(ev.Victim.PID) == pid {
				return ev
			}
		case <-deadline:
			t.Fatalf("no oom_kill of %d in %v; logs:\n%s", pid, timeout, d.logs.String())
		}
	}
}

// TestPostMortemAgreesWithTheKernel: the post-mortem of a kill against the
// kernel's own OOM report of it. A process that holds 16 MiB shares a
// 64 MiB cgroup with a hog that asks for ever more (oom_score_adj 500:
// lowering another's takes CAP_SYS_RESOURCE); the kernel kills the hog.
// oomtrace's list of the cgroup's tasks has the other one with the
// resident memory and oom_score_adj the kernel's
// "Tasks state" table gives it, and its breakdown of the cgroup's memory,
// read after the kill, is the kernel's "Memory cgroup stats" at the kill,
// with or without what the victim held (freed meanwhile, or not yet).
func TestPostMortemAgreesWithTheKernel(t *testing.T) {
	testenv.RequirePrivileged(t)
	d := startDaemon(t, "--cri.endpoint", "none", "--postmortem.top-tasks", "5")
	klog := memcgtest.OpenKernelLog(t)
	cg := memcgtest.New(t, nil, 64<<20)
	idle := cg.Start(t, memcgtest.HogOptions{Bytes: 16 << 20, Idle: true})
	adj := 500
	var hog *memcgtest.Hog
	var report memcgtest.OOMReport
	for attempt := 0; ; attempt++ {
		hog = cg.Start(t, memcgtest.HogOptions{Bytes: 256 << 20, OOMScoreAdj: &adj})
		hog.WaitKilled(t)
		var ok bool
		if report, ok = klog.WaitOOMReport(t, hog.PID, 10*time.Second); ok {
			break
		}
		if attempt == 1 {
			t.Fatalf("the kernel rate-limited its report of two kills 6 s apart:\n%s", report)
		}
		// The kernel prints at most 10 reports in 5 s: wait that out.
		time.Sleep(6 * time.Second)
	}
	ev := d.waitKill(t, hog.PID, 15*time.Second)
	pm := ev.PostMortem
	t.Logf("post-mortem: %s", pm)
	if pm == nil || pm.Cgroup != cg.Path || report.MemcgPath != cg.Path || pm.Memory == nil || pm.TasksSource != "procfs" {
		t.Fatalf("post-mortem of %s (kernel: %s): %s", cg.Path, report.MemcgPath, pm)
	}

	// The process that was spared, row by row.
	const page = 4096
	kt, ok := report.Tasks[uint32(idle.PID)]
	if !ok {
		t.Fatalf("the kernel's table has no row for %d:\n%s", idle.PID, report)
	}
	var ours *event.TaskMemory
	for i := range pm.TopTasks {
		if int(pm.TopTasks[i].PID) == idle.PID {
			ours = &pm.TopTasks[i]
		}
	}
	if ours == nil {
		t.Fatalf("%d is not among the top tasks %s", idle.PID, jsonOf(pm.TopTasks))
	}
	// An idle Go process's memory barely moves between the kill and the
	// read: a runtime's few pages (up to 47 text pages faulted in were
	// seen in CI), far below the 16 MiB it holds.
	const slack = 128 * page
	near := func(a, b uint64) bool { return a <= b+slack && b <= a+slack }
	pages := func(column string) uint64 { return uint64(kt.Values[column]) * page }
	var agree bool
	if _, split := kt.Values["rss_anon"]; split { // 6.x: by kind, each with its own few pages
		// (In the qemu guests the test binary runs from the initramfs,
		// tmpfs: its text pages are shmem, and fault in meanwhile too.)
		agree = near(ours.RSS.Anon, pages("rss_anon")) && near(ours.RSS.File, pages("rss_file")) && near(ours.RSS.Shmem, pages("rss_shmem"))
	} else {
		agree = near(ours.RSS.Anon+ours.RSS.File+ours.RSS.Shmem, pages("rss"))
	}
	if !agree || int64(ours.OOMScoreAdj) != kt.Values["oom_score_adj"] || !strings.HasPrefix(kt.Name, ours.Comm) || ours.RSS.Anon < 16<<20 {
		t.Errorf("spared task: ours %s, the kernel's %+v", jsonOf(ours), kt)
	}
	if pm.Tasks < 1 || pm.Tasks > 2 {
		t.Errorf("%d tasks in the cgroup, want the spared one (and the victim, if not yet gone)", pm.Tasks)
	}

	// The cgroup's memory: the kernel's at the kill less the victim's.
	anonKey, fileKey, shmemKey := "anon", "file", "shmem"
	if _, v1 := report.MemcgStats["total_rss"]; v1 {
		anonKey, fileKey, shmemKey = "total_rss", "total_cache", "total_shmem"
	}
	victim, ok := report.Tasks[uint32(hog.PID)]
	if !ok {
		t.Fatalf("the kernel's table has no row for the victim %d", hog.PID)
	}
	// Read milliseconds after the kill, the victim's anonymous memory may
	// be freed already (by it or the OOM reaper), or not yet: between the
	// two, give or take a few pages of the Go runtime.
	atKill := report.MemcgStats[anonKey]
	victimAnon := uint64(victim.Values["rss"]) * page // before 6.x the table has only the sum
	if a, split := victim.Values["rss_anon"]; split {
		victimAnon = uint64(a) * page
	}
	freed := atKill - min(atKill, victimAnon)
	const memSlack = 4 << 20
	nearMem := func(a, b uint64) bool { return a <= b+memSlack && b <= a+memSlack }
	if pm.Memory.Anon+memSlack < freed || pm.Memory.Anon > atKill+memSlack ||
		!nearMem(pm.Memory.File, report.MemcgStats[fileKey]) || !nearMem(pm.Memory.Shmem, report.MemcgStats[shmemKey]) {
		t.Errorf("memory %s; the kernel at the kill: %s %d, %s %d, %s %d; the victim held %d anon",
			pm.Memory, anonKey, atKill, fileKey, report.MemcgStats[fileKey], shmemKey, report.MemcgStats[shmemKey], victimAnon)
	}
	t.Logf("anon %d MiB: the kernel counted %d MiB at the kill, %d MiB of them the victim's", pm.Memory.Anon>>20, atKill>>20, victimAnon>>20)
}

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
