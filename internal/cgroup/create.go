// SPDX-License-Identifier: Apache-2.0

package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Create makes the memory cgroup at path below an existing parent, with
// limit bytes of memory (0: none of its own) and, where the kernel has
// the knob, no swap: an allocation past the limit is then an OOM kill, not
// a slow swap-out. On v2 the parent's subtree gets the memory controller.
// For oomtrace's demo and tests, which make cgroups of their own.
func (m Memory) Create(path string, limit int64) error {
	dir := m.Dir(path)
	if !m.V1 {
		ctl := filepath.Join(filepath.Dir(dir), "cgroup.subtree_control")
		if data, err := os.ReadFile(ctl); err != nil || !slices.Contains(strings.Fields(string(data)), "memory") {
			if err := os.WriteFile(ctl, []byte("+memory"), 0); err != nil {
				return fmt.Errorf("enable the memory controller below %s: %w", filepath.Dir(dir), err)
			}
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("create cgroup %s: %w", path, err)
	}
	if limit > 0 {
		if err := m.SetLimit(path, limit); err != nil {
			_ = m.Remove(path) // the setting's error is the one to report
			return err
		}
	}
	// Without swap accounting the v2 file is absent; v1's swappiness
	// keeps anonymous memory in.
	knob, value := "memory.swap.max", "0"
	if m.V1 {
		knob = "memory.swappiness"
	}
	if err := os.WriteFile(filepath.Join(dir, knob), []byte(value), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = m.Remove(path)
		return fmt.Errorf("turn swap off in %s: %w", path, err)
	}
	return nil
}

// SetLimit sets the cgroup's memory limit in bytes.
func (m Memory) SetLimit(path string, limit int64) error {
	file := "memory.max"
	if m.V1 {
		file = "memory.limit_in_bytes"
	}
	if err := os.WriteFile(filepath.Join(m.Dir(path), file), []byte(strconv.FormatInt(limit, 10)), 0); err != nil {
		return fmt.Errorf("limit %s to %d bytes: %w", path, limit, err)
	}
	return nil
}

// Remove removes a cgroup of the caller's own making: what still runs in
// it (a failed test, a hog) is killed first, and the cgroup waited for
// until the killed have left (1 s at most). Gone already is no error.
func (m Memory) Remove(path string) error {
	dir := m.Dir(path)
	for range 50 {
		data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, p := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL) // gone already: fine
			}
		}
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("remove cgroup %s: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: still busy", path)
}
