// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/kernfile"
)

// procfs reads what the kernel could not capture from the host's procfs.
type procfs struct {
	root string
	// memory is the memory hierarchy, for the cgroup ids of the paths
	// read; nil when none is mounted (the paths are still reported).
	memory *cgroup.Memory
}

func newProcfs(root string) procfs {
	p := procfs{root: root}
	if m, err := cgroup.FindMemory(root); err == nil {
		p.memory = &m
	}
	return p
}

// completeFromProcfs fills in the victim's memcg when the kernel could not
// capture it (the classic tracepoint fired in another task's context). The
// victim is being killed, so this can race with its exit; it is best effort
// and marked as such. start is the victim process's start time as the
// kernel captured it (0: unknown): the pid may have been reused since the
// kill, by any process (a tenant's that cycles through pids), and what is
// read of it is the victim's only if /proc gives that start time after
// the read.
func (p procfs) completeFromProcfs(ev *event.OOMKill, start uint32) {
	v := &ev.Victim
	var nsPID *uint32
	var init *bool
	var parent uint64
	var memcg *event.Cgroup
	if v.NSPID == nil {
		if data, err := kernfile.ReadFile(fmt.Sprintf("%s/%d/status", p.root, v.TGID)); err == nil {
			if n, level, ok := parseNSpid(data); ok && alive(p.root, v.TGID) {
				i := n == 1 && level > 0
				nsPID, init = &n, &i
			}
		}
	}
	if v.ParentMemcgID == 0 {
		if data, err := kernfile.ReadFile(fmt.Sprintf("%s/%d/stat", p.root, v.TGID)); err == nil {
			if ppid, ok := parsePPID(data); ok {
				if cg := p.memcgOfPID(ppid); cg != nil {
					parent = cg.ID
				}
			}
		}
	}
	if v.Memcg == nil {
		domain := ""
		if d := ev.OOM.Domain; d != nil && d.Cgroup != nil && !d.PathTruncated {
			domain = d.Path
		}
		memcg = p.victimMemcg(v.PID, v.Comm, domain)
	}
	if start != 0 && !p.startedAt(v.TGID, start) {
		return
	}
	if nsPID != nil {
		v.NSPID, v.Init = nsPID, init
	}
	if parent != 0 {
		v.ParentMemcgID = parent
	}
	if memcg != nil {
		v.Memcg = memcg
	}
}

// startedAt reports whether process pid is the one that started at start
// (/proc/<pid>/stat's starttime modulo 2^32).
func (p procfs) startedAt(pid, start uint32) bool {
	data, err := kernfile.ReadFile(fmt.Sprintf("%s/%d/stat", p.root, pid))
	if err != nil {
		return false
	}
	got, ok := parseStartTime(data)
	return ok && uint32(got) == start
}

// parseStartTime returns the starttime field of /proc/<pid>/stat: clock
// ticks since boot.
func parseStartTime(data []byte) (uint64, bool) {
	// After comm: state is the 3rd field of the line, starttime the 22nd.
	f := statFields(data)
	if len(f) < 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(f[19], 10, 64)
	return n, err == nil
}

// statFields are the fields of /proc/<pid>/stat after comm (state
// first): comm may contain ')' and spaces, so they start after the last
// ')'. nil when there is none.
func statFields(data []byte) []string {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(data[i+1:]))
}

// parsePPID returns the parent's pid from /proc/<pid>/stat.
func parsePPID(data []byte) (uint32, bool) {
	f := statFields(data)
	if len(f) < 2 {
		return 0, false
	}
	n, err := strconv.ParseUint(f[1], 10, 32)
	return uint32(n), err == nil && n > 0
}

// parseNSpid reads the NSpid line of /proc/<pid>/status: the process id in
// each pid namespace from the host's down, the innermost last. level is
// the innermost namespace's depth (0: the host's).
func parseNSpid(status []byte) (nsPID uint32, level int, ok bool) {
	for name, value := range kernfile.StatusFields(status) {
		if string(name) != "NSpid" {
			continue
		}
		f := strings.Fields(string(value))
		if len(f) == 0 {
			return 0, 0, false
		}
		n, err := strconv.ParseUint(f[len(f)-1], 10, 32)
		if err != nil || n == 0 {
			return 0, 0, false
		}
		return uint32(n), len(f) - 1, true
	}
	return 0, 0, false
}

// ProcessMemcg reads a live process's memory cgroup from the host's
// procfs; nil when it is gone.
func (t *Tracer) ProcessMemcg(pid uint32) *event.Cgroup { return t.oom.procfs.memcgOfPID(pid) }

// memcgOfPID reads a live task's memory cgroup from procfs; nil when the
// task is gone (an exited task reads as being in the root cgroup).
func (p procfs) memcgOfPID(pid uint32) *event.Cgroup {
	return p.memcgOf(pid, func(string) bool { return false })
}

// victimMemcg reads a killed task's memory cgroup from procfs. The victim
// is exiting, or soon: on cgroup v1 an exiting task reads as in the root
// cgroup (proc_cgroup_show prints "/" for it), so only a task that has
// not begun to exit will do. On v2 /proc names its cgroup until it is
// reaped, and an exiting task is taken for the victim when it has the
// victim's name, or (the name unknown: the classic tracepoint before
// 6.9) when the cgroup is within the kill's OOM domain: a pid reused
// meanwhile would have to match that too.
func (p procfs) victimMemcg(pid uint32, comm, domain string) *event.Cgroup {
	return p.memcgOf(pid, func(path string) bool {
		if comm != "" {
			return named(p.root, pid, comm)
		}
		return domain != "" && (domain == "/" || path == domain || strings.HasPrefix(path, domain+"/"))
	})
}

// memcgOf reads pid's memory cgroup: a task that has not begun to exit,
// or on v2 an exiting one that isVictim says is the one meant.
func (p procfs) memcgOf(pid uint32, isVictim func(path string) bool) *event.Cgroup {
	data, err := kernfile.ReadFile(fmt.Sprintf("%s/%d/cgroup", p.root, pid))
	if err != nil {
		return nil
	}
	path, v1, ok := cgroup.MemoryPath(data)
	if !ok {
		return nil
	}
	if p.memory != nil {
		// In a cgroup namespace of our own (a non-privileged container
		// on v2), /proc names cgroups relative to its root.
		abs, ok := p.memory.Resolve(path)
		if !ok {
			return nil
		}
		path = abs
	}
	if !alive(p.root, pid) && (v1 || !isVictim(path)) {
		return nil
	}
	cg := &event.Cgroup{Path: path, Source: event.CgroupFromProcfs}
	if p.memory != nil && p.memory.V1 == v1 {
		cg.ID, _ = p.memory.ID(path)
	}
	return cg
}

// named reports whether pid's name (/proc/<pid>/comm) is comm.
func named(procRoot string, pid uint32, comm string) bool {
	data, err := kernfile.ReadFile(fmt.Sprintf("%s/%d/comm", procRoot, pid))
	return err == nil && strings.TrimSuffix(string(data), "\n") == comm
}

// alive reports whether pid is a task that has not begun to exit. An exiting
// task leaves its cgroups early in do_exit, long before it is a zombie, and
// then reads as being in the root cgroup; so this must be checked after the
// cgroup file was read.
func alive(procRoot string, pid uint32) bool {
	data, err := kernfile.ReadFile(fmt.Sprintf("%s/%d/stat", procRoot, pid))
	if err != nil {
		return false
	}
	state, flags, ok := parseStat(data)
	if !ok {
		return false
	}
	const pfExiting = 0x4 // include/linux/sched.h PF_EXITING
	switch state {
	case 'Z', 'X', 'x':
		return false
	}
	return flags&pfExiting == 0
}

// parseStat returns the state and flags fields of /proc/<pid>/stat.
func parseStat(data []byte) (state byte, flags uint64, ok bool) {
	// pid (comm) state ppid pgrp session tty_nr tpgid flags ...
	fields := statFields(data)
	if len(fields) < 7 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	flags, err := strconv.ParseUint(fields[6], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], flags, true
}
