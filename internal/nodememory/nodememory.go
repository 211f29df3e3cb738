// SPDX-License-Identifier: Apache-2.0

package nodememory

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/kernfile"
)

// Where a signal's capacity came from.
const (
	CapacityMemTotal      = "mem_total"      // MemTotal of /proc/meminfo
	CapacityKubepodsLimit = "kubepods_limit" // the kubepods cgroup's memory limit
)

// Source is where the signals are read: the memory cgroup hierarchy and
// /proc/meminfo.
type Source struct {
	Meminfo string // path of meminfo
	cgroup.Memory
	// Kubepods is the kubepods cgroup's path in the hierarchy; empty when
	// there is none (allocatableMemory.available is then null).
	Kubepods string
}

// Detect finds the memory hierarchy in mountinfo and the kubepods cgroup:
// kubepods, if not empty, is its path in the hierarchy; otherwise
// /kubepods.slice and /kubepods are tried.
func Detect(procfs, kubepods string) (Source, error) {
	s := Source{Meminfo: filepath.Join(procfs, "meminfo")}
	m, err := cgroup.FindMemory(procfs)
	if err != nil {
		return s, err
	}
	s.Memory = m
	candidates := []string{"/kubepods.slice", "/kubepods"}
	if kubepods != "" {
		candidates = []string{kubepods}
	}
	for _, c := range candidates {
		if fi, err := os.Stat(m.Dir(c)); err == nil && fi.IsDir() {
			s.Kubepods = c
			break
		}
	}
	if kubepods != "" && s.Kubepods == "" {
		return s, fmt.Errorf("kubepods cgroup %s not found below %s", kubepods, m.Root)
	}
	return s, nil
}

// Read samples both signals.
func (s Source) Read(th Thresholds, now time.Time) (event.NodeMemory, error) {
	nm := event.NodeMemory{Time: event.Time{Time: now}}
	memTotal, swapTotal, swapFree, err := readMeminfo(s.Meminfo)
	if err != nil {
		return nm, err
	}
	if swapTotal > 0 {
		nm.SwapTotalBytes, nm.SwapFreeBytes = &swapTotal, &swapFree
	}
	ws, err := s.workingSet("/", true)
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
	limit, ok := s.Limit(s.Kubepods)
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
func (s Source) workingSet(path string, root bool) (uint64, error) {
	stat, err := s.Stat(path)
	if err != nil {
		return 0, err
	}
	var usage, inactive uint64
	switch {
	case s.V1:
		if usage, err = s.Usage(path); err != nil {
			return 0, err
		}
		inactive, err = stat.Get("total_inactive_file")
	case root:
		var anon, file uint64
		if anon, err = stat.Get("anon"); err != nil {
			return 0, err
		}
		if file, err = stat.Get("file"); err != nil {
			return 0, err
		}
		usage = anon + file
		inactive, err = stat.Get("inactive_file")
	default:
		if usage, err = s.Usage(path); err != nil {
			return 0, err
		}
		inactive, err = stat.Get("inactive_file")
	}
	if err != nil {
		return 0, err
	}
	if inactive > usage {
		return 0, nil
	}
	return usage - inactive, nil
}

// readMeminfo reads MemTotal, SwapTotal and SwapFree from meminfo, in
// bytes (no swap: 0).
func readMeminfo(path string) (memTotal, swapTotal, swapFree uint64, err error) {
	data, err := kernfile.ReadFile(path)
	if err != nil {
		return 0, 0, 0, err
	}
	mi, err := kernfile.ParseMeminfo(data)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	v, ok := mi["MemTotal"]
	if !ok {
		return 0, 0, 0, fmt.Errorf("%s: no MemTotal", path)
	}
	return v, mi["SwapTotal"], mi["SwapFree"], nil
}
