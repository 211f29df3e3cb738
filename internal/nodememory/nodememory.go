package nodememory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/kernfile"
)

// Where a signal's capacity came from.
const (
	CapacityMemTotal      = "mem_total"      // MemTotal of /proc/meminfo
	CapacityKubepodsLimit = "kubepods_limit" // the kubepods cgroup's memory limit
)

// unlimited: v1 reports "no limit" as a page-rounded LONG_MAX.
const unlimited = 1 << 62

// Source is where the signals are read: the memory cgroup hierarchy and
// /proc/meminfo.
type Source struct {
	Meminfo string // path of meminfo
	Root    string // mount point of the memory hierarchy
	V1      bool
	// Kubepods is the kubepods cgroup's directory; empty when there is
	// none (allocatableMemory.available is then null).
	Kubepods string
}

// Detect finds the memory hierarchy in mountinfo and the kubepods cgroup:
// kubepods, if not empty, is its path in the hierarchy; otherwise
// /kubepods.slice and /kubepods are tried.
func Detect(procfs, kubepods string) (Source, error) {
	s := Source{Meminfo: filepath.Join(procfs, "meminfo")}
	root, v1, err := memoryHierarchy(filepath.Join(procfs, "self/mountinfo"))
	if err != nil {
		return s, err
	}
	s.Root, s.V1 = root, v1
	candidates := []string{"kubepods.slice", "kubepods"}
	if kubepods != "" {
		candidates = []string{kubepods}
	}
	for _, c := range candidates {
		dir := filepath.Join(root, c)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			s.Kubepods = dir
			break
		}
	}
	if kubepods != "" && s.Kubepods == "" {
		return s, fmt.Errorf("kubepods cgroup %s not found below %s", kubepods, root)
	}
	return s, nil
}

// memoryHierarchy finds the v1 memory hierarchy, else the unified one with
// the memory controller.
func memoryHierarchy(mountinfo string) (root string, v1 bool, err error) {
	data, err := os.ReadFile(mountinfo)
	if err != nil {
		return "", false, err
	}
	var unified string
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, pf := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(pf) < 3 || f[3] != "/" {
			continue
		}
		switch pf[0] {
		case "cgroup":
			for _, o := range strings.Split(pf[2], ",") {
				if o == "memory" {
					return f[4], true, nil
				}
			}
		case "cgroup2":
			c, _ := os.ReadFile(filepath.Join(f[4], "cgroup.controllers"))
			if unified == "" && strings.Contains(" "+strings.TrimSpace(string(c))+" ", " memory ") {
				unified = f[4]
			}
		}
	}
	if unified == "" {
		return "", false, errors.New("no memory cgroup hierarchy mounted")
	}
	return unified, false, nil
}

// Read samples both signals.
func (s Source) Read(th Thresholds, now time.Time) (event.NodeMemory, error) {
	nm := event.NodeMemory{Time: event.Time{Time: now}}
	memTotal, err := readMemTotal(s.Meminfo)
	if err != nil {
		return nm, err
	}
	ws, err := s.workingSet(s.Root, true)
	if err != nil {
		return nm, fmt.Errorf("root memory cgroup: %w", err)
	}
	nm.MemoryAvailable = memorySignal(th, MemoryAvailable, memTotal, CapacityMemTotal, ws)
	if s.Kubepods == "" {
		return nm, nil
	}
	// The kubelet's allocatableMemory.available is the kubepods cgroup's
	// limit minus its working set (cAdvisor's available bytes of the pods
	// cgroup). The Node's status.allocatable is that limit minus the hard
	// threshold: using it would see pressure a whole threshold early.
	// Without a limit cAdvisor reports no available bytes and the kubelet
	// has no such signal.
	limit, ok := s.limit(s.Kubepods)
	if !ok {
		return nm, nil
	}
	ws, err = s.workingSet(s.Kubepods, false)
	if err != nil {
		return nm, fmt.Errorf("kubepods cgroup: %w", err)
	}
	nm.AllocatableMemoryAvailable = memorySignal(th, AllocatableMemoryAvailable, limit, CapacityKubepodsLimit, ws)
	return nm, nil
}

func memorySignal(th Thresholds, name string, capacity uint64, source string, workingSet uint64) *event.MemorySignal {
	sig := &event.MemorySignal{
		AvailableBytes:  int64(capacity) - int64(workingSet),
		CapacityBytes:   capacity,
		CapacitySource:  source,
		WorkingSetBytes: workingSet,
	}
	if t, ok := th[name]; ok {
		b := t.Of(capacity)
		sig.ThresholdBytes = &b
		sig.BelowThreshold = sig.AvailableBytes < int64(b)
	}
	return sig
}

// workingSet is usage minus inactive file pages, floored at 0, as the
// kubelet computes it. The v2 root has no memory.current: anon + file.
func (s Source) workingSet(dir string, root bool) (uint64, error) {
	stat, err := readStat(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return 0, err
	}
	var usage, inactive uint64
	switch {
	case s.V1:
		if usage, err = kernfile.ReadUint(filepath.Join(dir, "memory.usage_in_bytes")); err != nil {
			return 0, err
		}
		inactive, err = stat.get("total_inactive_file")
	case root:
		var anon, file uint64
		if anon, err = stat.get("anon"); err != nil {
			return 0, err
		}
		if file, err = stat.get("file"); err != nil {
			return 0, err
		}
		usage = anon + file
		inactive, err = stat.get("inactive_file")
	default:
		if usage, err = kernfile.ReadUint(filepath.Join(dir, "memory.current")); err != nil {
			return 0, err
		}
		inactive, err = stat.get("inactive_file")
	}
	if err != nil {
		return 0, err
	}
	if inactive > usage {
		return 0, nil
	}
	return usage - inactive, nil
}

// limit is the cgroup's memory limit, false when it has none.
func (s Source) limit(dir string) (uint64, bool) {
	name := "memory.max"
	if s.V1 {
		name = "memory.limit_in_bytes"
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
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

type memoryStat map[string]uint64

func (m memoryStat) get(key string) (uint64, error) {
	v, ok := m[key]
	if !ok {
		return 0, fmt.Errorf("memory.stat has no %s", key)
	}
	return v, nil
}

func readStat(path string) (memoryStat, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return kernfile.ParseKeyValues(data), nil
}

// readMemTotal reads MemTotal from meminfo, in bytes.
func readMemTotal(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	mi, err := kernfile.ParseMeminfo(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	v, ok := mi["MemTotal"]
	if !ok {
		return 0, fmt.Errorf("%s: no MemTotal", path)
	}
	return v, nil
}
