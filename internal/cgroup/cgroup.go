// SPDX-License-Identifier: Apache-2.0

// Package cgroup finds the memory cgroup hierarchy as this process sees it
// mounted and reads its paths and files, v1 and v2 alike.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/oomtrace/oomtrace/internal/kernfile"
)

// ErrNoMemoryHierarchy means neither a v1 memory hierarchy nor a unified
// one with the memory controller is mounted.
var ErrNoMemoryHierarchy = errors.New("no memory cgroup hierarchy mounted")

// unlimited: v1 reports "no limit" as a page-rounded LONG_MAX.
const unlimited = 1 << 62

// Memory is the mounted memory hierarchy. Its methods take a cgroup's path
// in the hierarchy ("/kubepods/burstable"), as the kernel names it.
type Memory struct {
	Root string // mount point: /sys/fs/cgroup/memory (v1) or /sys/fs/cgroup
	V1   bool
	// NSRoot is where this process's cgroup namespace is rooted, when it
	// is not the host's: /proc/<pid>/cgroup then names cgroups relative
	// to it ("/../../burstable/pod1/c2"), and Resolve makes them whole.
	// A non-privileged container on cgroup v2 has a namespace of its own
	// (containerd and CRI-O make one), its root the container's cgroup.
	// Empty in the host's namespace, or when nsDepth > 0 and the root
	// could not be found.
	NSRoot string
	// nsDepth is how far below the hierarchy's root NSRoot is (the "/.."
	// steps of the mount's root in mountinfo); 0 in the host's namespace.
	nsDepth int
	// Files, if set, keeps the cgroup files read last open (Stat, Read,
	// ReadUint): a hot path reading the same cgroups again (every kill of a
	// crash-looping worker, every kill of one group) skips the open and
	// close that cost twice the read. nil: every read opens the file.
	Files *kernfile.OpenFiles
}

// FindMemory finds the memory hierarchy in <procfs>/self/mountinfo: the
// v1 memory controller's mount if there is one (v1 or hybrid hosts), else
// the unified hierarchy's that has the memory controller. In a container
// with the host's cgroups mounted, the mount points are the container's.
// Only a mount of the hierarchy's root will do: a container's own view of
// its cgroup namespace, mounted where the host's would be, names nothing
// outside the container.
func FindMemory(procfs string) (Memory, error) {
	data, err := os.ReadFile(filepath.Join(procfs, "self/mountinfo"))
	if err != nil {
		return Memory{}, err
	}
	m, err := findMemory(data, osProbe)
	if err != nil || m.nsDepth == 0 {
		return m, err
	}
	self, err := os.ReadFile(filepath.Join(procfs, "self/cgroup"))
	if err != nil {
		return m, nil // NSRoot unknown: Resolve refuses namespace paths
	}
	if own, v1, ok := MemoryPath(self); ok && v1 == m.V1 {
		m.NSRoot, _ = findNSRoot(m.Root, m.nsDepth, own, os.Getpid())
	}
	return m, nil
}

// mountProbe reads what findMemory needs of a mounted hierarchy.
type mountProbe struct {
	controllers func(dir string) []byte        // a unified mount's cgroup.controllers
	isRoot      func(dir string, v1 bool) bool // whether dir is its hierarchy's root cgroup
}

var osProbe = mountProbe{
	controllers: func(dir string) []byte {
		c, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		return c
	},
	// Only the root has cgroup.sane_behavior in v1; every cgroup but
	// the root has cgroup.type in v2 (4.14 and later).
	isRoot: func(dir string, v1 bool) bool {
		if v1 {
			_, err := os.Stat(filepath.Join(dir, "cgroup.sane_behavior"))
			return err == nil
		}
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
			return false
		}
		_, err := os.Stat(filepath.Join(dir, "cgroup.type"))
		return errors.Is(err, os.ErrNotExist)
	},
}

// findMemory is FindMemory on the contents of a mountinfo file.
func findMemory(mountinfo []byte, probe mountProbe) (Memory, error) {
	var unified *Memory
	var nsView string
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, pf := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(pf) < 3 {
			continue
		}
		// The mount's root is shown relative to this process's cgroup
		// namespace: "/" is the namespace's root, "/../.." two levels
		// above it; anything else is a sub-tree, which names only part
		// of the hierarchy.
		depth, whole := upLevels(f[3])
		if !whole {
			continue
		}
		dir := unescape(f[4])
		var v1 bool
		switch pf[0] {
		case "cgroup":
			if !hasWord(strings.ReplaceAll(pf[2], ",", " "), "memory") {
				continue
			}
			v1 = true
		case "cgroup2":
			if unified != nil || !hasWord(string(probe.controllers(dir)), "memory") {
				continue
			}
		default:
			continue
		}
		if !probe.isRoot(dir, v1) {
			nsView = dir
			continue
		}
		m := Memory{Root: dir, V1: v1, nsDepth: depth}
		if v1 {
			return m, nil
		}
		unified = &m
	}
	if unified != nil {
		return *unified, nil
	}
	if nsView != "" {
		return Memory{}, fmt.Errorf("%w: %s is this cgroup namespace's view, not the hierarchy's root (mount the host's /sys/fs/cgroup)", ErrNoMemoryHierarchy, nsView)
	}
	return Memory{}, ErrNoMemoryHierarchy
}

// upLevels reads a cgroup mount's root as mountinfo shows it: "/" is 0,
// "/.." 1, "/../.." 2; whole is false for any other path.
func upLevels(root string) (n int, whole bool) {
	switch root {
	case "/":
		return 0, true
	case "":
		return 0, false
	}
	for rest := root; rest != ""; n++ {
		var ok bool
		if rest, ok = strings.CutPrefix(rest, "/.."); !ok {
			return 0, false
		}
	}
	return n, true
}

// maxNSSearch bounds the search for the namespace's root: the cgroups at
// each level down to it are read, and a node has a few per container.
const maxNSSearch = 1 << 16

// findNSRoot finds this process's cgroup namespace root: the cgroup depth
// levels below the hierarchy's root (mounted at root) whose descendant
// self (this process's cgroup, relative to the namespace) holds pid.
func findNSRoot(root string, depth int, self string, pid int) (string, error) {
	level := []string{"/"}
	seen := 0
	for range depth {
		var next []string
		for _, c := range level {
			entries, err := os.ReadDir(filepath.Join(root, c))
			if err != nil {
				continue // removed meanwhile
			}
			for _, e := range entries {
				if !e.IsDir() {
					continue
				}
				if seen++; seen > maxNSSearch {
					return "", fmt.Errorf("cgroup namespace root: more than %d cgroups searched below %s", maxNSSearch, root)
				}
				next = append(next, path.Join(c, e.Name()))
			}
		}
		level = next
	}
	want := strconv.Itoa(pid)
	for _, c := range level {
		data, err := os.ReadFile(filepath.Join(root, c, self, "cgroup.procs"))
		if err != nil {
			continue
		}
		if slices.Contains(strings.Fields(string(data)), want) {
			return c, nil
		}
	}
	return "", fmt.Errorf("cgroup namespace root: no cgroup %d levels below %s holds this process (%d) at %s", depth, root, pid, self)
}

// Resolve makes a path as /proc/<pid>/cgroup names it, relative to this
// process's cgroup namespace, a path in the hierarchy; false when the
// namespace's root is not known.
func (m Memory) Resolve(nsPath string) (string, bool) {
	if m.nsDepth == 0 {
		return nsPath, true
	}
	if m.NSRoot == "" {
		return "", false
	}
	return path.Join(m.NSRoot, nsPath), true
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and
// backslash in mount points.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hasWord(list, word string) bool {
	for _, w := range strings.Fields(list) {
		if w == word {
			return true
		}
	}
	return false
}

// MemoryPath is the memory cgroup's path in the contents of a
// /proc/<pid>/cgroup file: the v1 memory controller's line if there is one
// (v1 or hybrid hosts), else the unified hierarchy's "0::" line. v1 says
// which hierarchy the path belongs to. The path is relative to the
// reader's cgroup namespace: Memory.Resolve makes it a path in the
// hierarchy.
func MemoryPath(procCgroup []byte) (path string, v1 bool, ok bool) {
	var unified string
	var haveUnified bool
	sc := bufio.NewScanner(bytes.NewReader(procCgroup))
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

// Dir is the directory of the cgroup at path.
func (m Memory) Dir(path string) string { return filepath.Join(m.Root, path) }

// ID is the cgroup's id, its directory's inode number (what the kernel's
// cgroup_id() and the BPF programs report); false when it is gone.
func (m Memory) ID(path string) (uint64, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(m.Dir(path), &st); err != nil {
		return 0, false
	}
	return st.Ino, true
}

// Read reads the file name of the cgroup at path (through Files).
func (m Memory) Read(path, name string) ([]byte, error) {
	return m.Files.ReadFile(filepath.Join(m.Dir(path), name))
}

// ReadUint reads the file name of the cgroup at path that holds one
// number (through Files).
func (m Memory) ReadUint(path, name string) (uint64, error) {
	return m.Files.ReadUint(filepath.Join(m.Dir(path), name))
}

// Stat reads the cgroup's memory.stat.
func (m Memory) Stat(path string) (Stat, error) {
	data, err := m.Read(path, "memory.stat")
	if err != nil {
		return nil, err
	}
	return kernfile.ParseKeyValues(data), nil
}

// Usage reads the cgroup's memory usage in bytes (memory.usage_in_bytes,
// memory.current; through Files). The v2 root has none.
func (m Memory) Usage(path string) (uint64, error) {
	name := "memory.current"
	if m.V1 {
		name = "memory.usage_in_bytes"
	}
	return m.ReadUint(path, name)
}

// Swap reads the cgroup's swap use in bytes (cgroup v2
// memory.swap.current); false on v1 or where the kernel has no swap
// accounting.
func (m Memory) Swap(path string) (uint64, bool) {
	if m.V1 {
		return 0, false
	}
	n, err := kernfile.ReadUint(filepath.Join(m.Dir(path), "memory.swap.current"))
	return n, err == nil
}

// Limit is the cgroup's memory limit in bytes, false when it has none
// (or it cannot be read).
func (m Memory) Limit(path string) (uint64, bool) {
	name := "memory.max"
	if m.V1 {
		name = "memory.limit_in_bytes"
	}
	return m.bound(path, name)
}

// High is the cgroup's memory.high in bytes (cgroup v2), false for
// "max", on v1, or when it cannot be read.
func (m Memory) High(path string) (uint64, bool) {
	if m.V1 {
		return 0, false
	}
	return m.bound(path, "memory.high")
}

// bound reads a file of a memory bound: bytes, or "max" (false).
func (m Memory) bound(path, name string) (uint64, bool) {
	b, err := kernfile.ReadFile(filepath.Join(m.Dir(path), name))
	if err != nil {
		return 0, false
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n >= unlimited {
		return 0, false
	}
	return n, true
}

// Populated says whether a process is in the cgroup or below it; a
// cgroup that is gone is not. v2 says so in cgroup.events; v1 has only
// each cgroup's own cgroup.procs, read down the tree.
func (m Memory) Populated(path string) (bool, error) {
	dir := m.Dir(path)
	if !m.V1 {
		data, err := kernfile.ReadFile(filepath.Join(dir, "cgroup.events"))
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		v, ok := kernfile.ParseKeyValues(data)["populated"]
		if !ok {
			return false, fmt.Errorf("%s/cgroup.events has no populated", dir)
		}
		return v != 0, nil
	}
	pids, err := m.Procs(path, 1)
	return len(pids) > 0, err
}

// MaxCgroupsWalked bounds the walk of a cgroup's subtree: a tenant that may
// create cgroups below its container can make thousands, and each OOM kill
// in it would walk them all.
const MaxCgroupsWalked = 4096

// Procs lists the processes in the cgroup and below it, each once, at most
// max of them (max <= 0: all) from at most MaxCgroupsWalked cgroups, the
// cgroup's own first, then its descendants depth first in directory order.
// A cgroup removed meanwhile is skipped.
func (m Memory) Procs(path string, max int) ([]uint32, error) {
	seen := map[uint32]bool{}
	var pids []uint32
	stack := []string{m.Dir(path)}
	for walked := 0; len(stack) > 0; walked++ {
		if walked >= MaxCgroupsWalked || (max > 0 && len(pids) >= max) {
			break
		}
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		// Not through Files: cgroup.procs pages through a task iterator
		// that a read from offset 0 does not restart (a kept file reads
		// one step behind).
		data, err := kernfile.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return pids, err
		}
		for f := range strings.FieldsSeq(string(data)) {
			n, err := strconv.ParseUint(f, 10, 32)
			if err == nil && !seen[uint32(n)] && (max <= 0 || len(pids) < max) {
				seen[uint32(n)] = true
				pids = append(pids, uint32(n))
			}
		}
		children, err := kernfile.Subdirs(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return pids, err
		}
		for i := len(children) - 1; i >= 0; i-- {
			stack = append(stack, filepath.Join(dir, children[i]))
		}
	}
	return pids, nil
}

// Stat is a memory.stat file: counter name to value.
type Stat map[string]uint64

// Get is one counter, an error naming it when the kernel has none.
func (s Stat) Get(key string) (uint64, error) {
	v, ok := s[key]
	if !ok {
		return 0, fmt.Errorf("memory.stat has no %s", key)
	}
	return v, nil
}
