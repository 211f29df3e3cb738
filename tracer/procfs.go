package tracer

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/oomtrace/oomtrace/event"
)

// Roots of the cgroup hierarchies whose directory inodes are memcg ids.
var (
	memcgV1Root   = "/sys/fs/cgroup/memory"
	cgroupV2Roots = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}
)

// completeFromProcfs fills in the victim's memcg when the kernel could not
// capture it (the classic tracepoint fired in another task's context). The
// victim is being killed, so this can race with its exit; it is best effort
// and marked as such.
func completeFromProcfs(ev *event.OOMKill, procRoot string) {
	if ev.Victim.Memcg != nil {
		return
	}
	ev.Victim.Memcg = memcgOfPID(procRoot, ev.Victim.PID)
}

// memcgOfPID reads a live task's memory cgroup from procfs; nil when the
// task is gone (an exited task reads as being in the root cgroup).
func memcgOfPID(procRoot string, pid uint32) *event.Cgroup {
	data, err := os.ReadFile(fmt.Sprintf("%s/%d/cgroup", procRoot, pid))
	if err != nil {
		return nil
	}
	path, v1, ok := MemcgFromProcCgroup(data)
	if !ok || !alive(procRoot, pid) {
		return nil
	}
	roots := []string{memcgV1Root}
	if !v1 {
		roots = cgroupV2Roots
	}
	for _, r := range roots {
		var st syscall.Stat_t
		if err := syscall.Stat(r+path, &st); err == nil {
			return &event.Cgroup{ID: st.Ino, Path: path, Source: event.CgroupFromProcfs}
		}
	}
	return &event.Cgroup{Path: path, Source: event.CgroupFromProcfs}
}

// MemcgFromProcCgroup returns the memory cgroup path from the contents of a
// /proc/<pid>/cgroup file: the v1 memory controller's line if there is one
// (v1 or hybrid hosts), else the unified hierarchy's "0::" line. v1 reports
// whether the path belongs to the v1 memory hierarchy.
func MemcgFromProcCgroup(data []byte) (path string, v1 bool, ok bool) {
	var unified string
	var haveUnified bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path; the path may contain ':'.
		id, rest, found := strings.Cut(sc.Text(), ":")
		if !found {
			continue
		}
		controllers, p, found := strings.Cut(rest, ":")
		if !found || !strings.HasPrefix(p, "/") {
			continue
		}
		if id == "0" && controllers == "" {
			unified, haveUnified = p, true
			continue
		}
		for _, c := range strings.Split(controllers, ",") {
			if c == "memory" {
				return p, true, true
			}
		}
	}
	if haveUnified {
		return unified, false, true
	}
	return "", false, false
}

// alive reports whether pid is a task that has not begun to exit. An exiting
// task leaves its cgroups early in do_exit, long before it is a zombie, and
// then reads as being in the root cgroup; so this must be checked after the
// cgroup file was read.
func alive(procRoot string, pid uint32) bool {
	data, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procRoot, pid))
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
	// pid (comm) state ppid pgrp session tty_nr tpgid flags ...; comm may
	// contain ')' and spaces, so split after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 7 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	flags, err := strconv.ParseUint(fields[6], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], flags, true
}
