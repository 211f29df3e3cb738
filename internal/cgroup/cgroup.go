// Package cgroup finds the memory cgroup hierarchy as this process sees it
// mounted and reads its paths and files, v1 and v2 alike.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/oomtrace/oomtrace/internal/kernfile"
)

// ErrNoMemoryHierarchy: neither a v1 memory hierarchy nor a unified one
// with the memory controller is mounted.
var ErrNoMemoryHierarchy = errors.New("no memory cgroup hierarchy mounted")

// unlimited: v1 reports "no limit" as a page-rounded LONG_MAX.
const unlimited = 1 << 62

// Memory is the mounted memory hierarchy. Its methods take a cgroup's path
// in the hierarchy ("/kubepods/burstable"), as the kernel and
// /proc/<pid>/cgroup name it.
type Memory struct {
	Root string // mount point: /sys/fs/cgroup/memory (v1) or /sys/fs/cgroup
	V1   bool
}

// FindMemory finds the memory hierarchy in <procfs>/self/mountinfo: the
// v1 memory controller's mount if there is one (v1 or hybrid hosts), else
// the unified hierarchy's that has the memory controller. In a container
// with the host's cgroups mounted, the mount points are the container's.
func FindMemory(procfs string) (Memory, error) {
	data, err := os.ReadFile(filepath.Join(procfs, "self/mountinfo"))
	if err != nil {
		return Memory{}, err
	}
	return findMemory(data, func(root string) []byte {
		c, _ := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		return c
	})
}

// findMemory is FindMemory on the contents of a mountinfo file;
// controllers reads a unified mount's cgroup.controllers.
func findMemory(mountinfo []byte, controllers func(root string) []byte) (Memory, error) {
	var unified string
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, pf := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(pf) < 3 || f[3] != "/" {
			continue
		}
		switch pf[0] {
		case "cgroup":
			if hasWord(strings.ReplaceAll(pf[2], ",", " "), "memory") {
				return Memory{Root: unescape(f[4]), V1: true}, nil
			}
		case "cgroup2":
			if root := unescape(f[4]); unified == "" && hasWord(string(controllers(root)), "memory") {
				unified = root
			}
		}
	}
	if unified == "" {
		return Memory{}, ErrNoMemoryHierarchy
	}
	return Memory{Root: unified}, nil
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
// which hierarchy the path belongs to.
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

// Stat reads the cgroup's memory.stat.
func (m Memory) Stat(path string) (Stat, error) {
	data, err := os.ReadFile(filepath.Join(m.Dir(path), "memory.stat"))
	if err != nil {
		return nil, err
	}
	return kernfile.ParseKeyValues(data), nil
}

// Usage reads the cgroup's memory usage in bytes (memory.usage_in_bytes,
// memory.current). The v2 root has none.
func (m Memory) Usage(path string) (uint64, error) {
	name := "memory.current"
	if m.V1 {
		name = "memory.usage_in_bytes"
	}
	return kernfile.ReadUint(filepath.Join(m.Dir(path), name))
}

// Limit is the cgroup's memory limit in bytes, false when it has none
// (or it cannot be read).
func (m Memory) Limit(path string) (uint64, bool) {
	name := "memory.max"
	if m.V1 {
		name = "memory.limit_in_bytes"
	}
	b, err := os.ReadFile(filepath.Join(m.Dir(path), name))
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
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
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
// cgroup's own first.
func (m Memory) Procs(path string, max int) ([]uint32, error) {
	seen := map[uint32]bool{}
	var pids []uint32
	walked := 0
	err := filepath.WalkDir(m.Dir(path), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if walked++; walked > MaxCgroupsWalked || (max > 0 && len(pids) >= max) {
			return filepath.SkipAll
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		for _, f := range strings.Fields(string(data)) {
			n, err := strconv.ParseUint(f, 10, 32)
			if err == nil && !seen[uint32(n)] && (max <= 0 || len(pids) < max) {
				seen[uint32(n)] = true
				pids = append(pids, uint32(n))
			}
		}
		return nil
	})
	return pids, err
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
