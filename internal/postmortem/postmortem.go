// SPDX-License-Identifier: Apache-2.0

// Package postmortem reads, right after an OOM kill, what its domain held:
// the domain cgroup's memory by kind (memory.stat) and its processes with
// the most memory (procfs), the structured twin of the kernel's OOM report,
// which the kernel rate-limits away in bursts.
package postmortem

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/kernfile"
)

// DefaultTopTasks is how many of a domain's processes are listed.
const DefaultTopTasks = 10

// Reader reads post-mortems. The zero TopTasks lists none; MemoryStat
// false reads no breakdown.
type Reader struct {
	Memory     cgroup.Memory
	Procfs     string
	MemoryStat bool
	TopTasks   int
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// The last group kill's post-mortem: every kill of one decision
	// shares it (Read is called from one goroutine).
	lastDecision uint64
	lastGroup    *event.PostMortem
}

// openCgroupFiles is how many cgroup files a reader keeps open: the four
// of a domain without children (memory.stat, cgroup.procs, and on v1
// memory.kmem.usage_in_bytes and memory.kmem.tcp.usage_in_bytes) for the
// last 16 domains, or a larger domain's files.
const openCgroupFiles = 64

// Open returns a reader of the memory hierarchy found below procfs. It
// keeps the cgroup files it read last open (cgroup.Memory.Files): kills
// come again and again in the same domains (a crash-looping worker, a
// group), and their files are then read with one syscall each.
func Open(procfs string, memoryStat bool, topTasks int) (*Reader, error) {
	m, err := cgroup.FindMemory(procfs)
	if err != nil {
		return nil, err
	}
	m.Files = kernfile.NewOpenFiles(openCgroupFiles)
	return &Reader{Memory: m, Procfs: procfs, MemoryStat: memoryStat, TopTasks: topTasks}, nil
}

// Enabled says whether the reader reads anything.
func (r *Reader) Enabled() bool { return r != nil && (r.MemoryStat || r.TopTasks > 0) }

// Read returns the post-mortem of a kill, or nil when there is nothing to
// read (no domain cgroup for a memcg OOM, or a cpuset or memory policy
// constraint, which names no cgroup).
func (r *Reader) Read(k *event.OOMKill) *event.PostMortem {
	if !r.Enabled() {
		return nil
	}
	var path string
	switch {
	case k.OOM.Scope == event.ScopeGlobal:
		path = "/"
	case k.OOM.Domain != nil && k.OOM.Domain.Cgroup != nil && k.OOM.Domain.Path != "":
		path = k.OOM.Domain.Path
	default:
		return nil
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	// The kills of one memory.oom.group decision come one after another
	// and their domain is the same: one read serves them all.
	g := k.OOM.Group
	if g != nil && r.lastGroup != nil && g.DecisionSeq == r.lastDecision && r.lastGroup.Cgroup == path {
		shared := *r.lastGroup
		return &shared
	}
	pm := &event.PostMortem{Time: event.Time{Time: now()}, Cgroup: path, TopTasks: []event.TaskMemory{}}
	if r.MemoryStat {
		pm.Memory, _ = r.breakdown(path)
	}
	if r.TopTasks > 0 {
		pm.TopTasks, pm.Tasks, pm.TasksTruncated = r.topTasks(path, r.dying(k), now)
		pm.TasksSource = "procfs"
	}
	if g != nil {
		r.lastDecision, r.lastGroup = g.DecisionSeq, pm
	}
	return pm
}

// dying are the tasks the kill's decision is killing: the victim, and
// with memory.oom.group every task of the group's cgroup. Their memory is
// on its way out, and reading /proc of a task in the middle of its exit
// costs far more than of any other.
func (r *Reader) dying(k *event.OOMKill) func(pid uint32) bool {
	victim := k.Victim.TGID
	g := k.OOM.Group
	if g == nil || g.Cgroup.Path == "" || g.Cgroup.PathTruncated {
		// Most kills: the victim alone, no set to build.
		return func(pid uint32) bool { return pid == victim }
	}
	pids, _ := r.Memory.Procs(g.Cgroup.Path, maxTasksRead)
	group := make(map[uint32]bool, len(pids))
	for _, pid := range pids {
		group[pid] = true
	}
	return func(pid uint32) bool { return pid == victim || group[pid] }
}

// breakdown reads the cgroup's memory by kind.
func (r *Reader) breakdown(path string) (*event.MemoryBreakdown, error) {
	data, err := r.Memory.Read(path, "memory.stat")
	if err != nil {
		return nil, err
	}
	return breakdownOf(breakdownStat(data), r.Memory.V1, func(name string) (uint64, bool) {
		v, err := r.Memory.ReadUint(path, name)
		return v, err == nil
	}), nil
}

// breakdownKeys are the memory.stat counters a breakdown reads, of v1
// (total_*) and v2.
var breakdownKeys = map[string]bool{
	"total_rss": true, "total_cache": true, "total_shmem": true,
	"anon": true, "file": true, "shmem": true, "kernel": true, "kernel_stack": true,
	"pagetables": true, "percpu": true, "slab": true, "sock": true,
}

// breakdownStat parses the counters of a memory.stat a breakdown reads,
// and only those: the file has 40 (v2) to 70 (v1) of them, and a map of
// all was a fifth of a post-mortem's CPU.
func breakdownStat(data []byte) cgroup.Stat {
	st := make(cgroup.Stat, 12)
	for k, v := range kernfile.KeyValues(data) {
		if breakdownKeys[string(k)] { // no allocation: the compiler's map lookup by []byte
			st[string(k)] = v
		}
	}
	return st
}

// breakdownOf turns a memory.stat into a breakdown. v1's counters of the
// cgroup and its children are the total_ ones, and its kernel memory is
// in other files (memory.kmem.*), which extra reads.
func breakdownOf(st cgroup.Stat, v1 bool, extra func(name string) (uint64, bool)) *event.MemoryBreakdown {
	ptr := func(v uint64, ok bool) *uint64 {
		if !ok {
			return nil
		}
		return &v
	}
	if v1 {
		b := &event.MemoryBreakdown{Anon: st["total_rss"], File: st["total_cache"], Shmem: st["total_shmem"], Source: "memory.stat (total_*)"}
		if extra != nil {
			b.Kernel = ptr(extra("memory.kmem.usage_in_bytes"))
			b.Sock = ptr(extra("memory.kmem.tcp.usage_in_bytes"))
			if b.Kernel != nil {
				b.Source += ", memory.kmem.usage_in_bytes"
			}
			if b.Sock != nil {
				b.Source += ", memory.kmem.tcp.usage_in_bytes"
			}
		}
		return b
	}
	b := &event.MemoryBreakdown{Anon: st["anon"], File: st["file"], Shmem: st["shmem"], Source: "memory.stat"}
	if v, ok := st["kernel"]; ok { // 5.18+
		b.Kernel = &v
	} else if stack, ok := st["kernel_stack"]; ok {
		k := stack + st["pagetables"] + st["percpu"] + st["slab"]
		b.Kernel = &k
	}
	if v, ok := st["slab"]; ok {
		b.Slab = &v
	}
	if v, ok := st["sock"]; ok {
		b.Sock = &v
	}
	return b
}

// maxTasksRead bounds what one kill reads of its domain's processes: each
// is a few files of /proc, on the pipeline's one goroutine.
const maxTasksRead = 4096

// readBudget bounds the time one post-mortem reads tasks: it runs on the
// stage's goroutine, ahead of every event behind it, and a system-wide
// OOM lists every process of the host (tens of thousands on a busy node,
// two files each). The clock is looked at every budgetEvery tasks.
const (
	readBudget  = 250 * time.Millisecond
	budgetEvery = 64
)

// topTasks lists the cgroup's processes with the most memory (resident and
// swapped), and counts them (at most maxTasksRead, from at most
// cgroup.MaxCgroupsWalked cgroups), those dying left out. "/" is every
// process of the host. It stops at maxTasksRead tasks or readBudget, and
// says so (truncated): the top tasks are then those of the tasks read.
func (r *Reader) topTasks(path string, dying func(pid uint32) bool, now func() time.Time) ([]event.TaskMemory, int, bool) {
	var pids []uint32
	if path == "/" {
		pids = allPIDs(r.Procfs)
	} else {
		pids, _ = r.Memory.Procs(path, maxTasksRead)
	}
	tasks := make([]event.TaskMemory, 0, min(len(pids), maxTasksRead))
	start, read, truncated := now(), 0, false
	for _, pid := range pids {
		if dying(pid) {
			continue
		}
		if read == maxTasksRead || read%budgetEvery == 0 && now().Sub(start) > readBudget {
			truncated = true
			break
		}
		read++
		status, err := kernfile.ReadFile(fmt.Sprintf("%s/%d/status", r.Procfs, pid))
		if err != nil {
			continue // exited meanwhile
		}
		tm, ok := parseStatus(status)
		if !ok {
			continue // a kernel thread, or a zombie: no memory
		}
		tm.PID = pid
		if adj, err := kernfile.ReadFile(fmt.Sprintf("%s/%d/oom_score_adj", r.Procfs, pid)); err == nil {
			if v, err := strconv.ParseInt(strings.TrimSpace(string(adj)), 10, 32); err == nil {
				tm.OOMScoreAdj = int32(v)
			}
		}
		tasks = append(tasks, tm)
	}
	n := len(tasks)
	sort.SliceStable(tasks, func(i, j int) bool {
		a, b := footprint(tasks[i].RSS), footprint(tasks[j].RSS)
		if a != b {
			return a > b
		}
		return tasks[i].PID < tasks[j].PID
	})
	if len(tasks) > r.TopTasks {
		tasks = tasks[:r.TopTasks]
	}
	return tasks, n, truncated
}

// footprint is what the OOM killer's badness counts of a task's memory
// (besides its page tables): resident pages and swap entries.
func footprint(r event.RSS) uint64 {
	f := r.Anon + r.File + r.Shmem
	if r.Swap != nil {
		f += *r.Swap
	}
	return f
}

func allPIDs(procfs string) []uint32 {
	entries, err := os.ReadDir(procfs)
	if err != nil {
		return nil
	}
	var pids []uint32
	for _, e := range entries {
		if n, err := strconv.ParseUint(e.Name(), 10, 32); err == nil {
			pids = append(pids, uint32(n))
		}
	}
	return pids
}

// parseStatus reads a process's name and memory from /proc/<pid>/status:
// RssAnon, RssFile, RssShmem and VmSwap (kB). ok is false without them
// (kernel threads and zombies have none).
func parseStatus(status []byte) (tm event.TaskMemory, ok bool) {
	var swap uint64
	var found uint8 // one bit a line: each of the four, once
	for name, value := range kernfile.StatusFields(status) {
		var bit uint8
		switch string(name) {
		case "Name":
			// The name is escaped the way the kernel prints it (\n, \\).
			tm.Comm = string(value)
			continue
		case "RssAnon":
			bit = 1
		case "RssFile":
			bit = 2
		case "RssShmem":
			bit = 4
		case "VmSwap":
			bit = 8
		default:
			continue
		}
		n, ok := kernfile.StatusBytes(value)
		if !ok {
			return event.TaskMemory{}, false
		}
		switch bit {
		case 1:
			tm.RSS.Anon = n
		case 2:
			tm.RSS.File = n
		case 4:
			tm.RSS.Shmem = n
		case 8:
			swap = n
			tm.RSS.Swap = &swap
		}
		found |= bit
	}
	return tm, found == 15
}
