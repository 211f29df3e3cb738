// SPDX-License-Identifier: Apache-2.0

package completeness

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUnobserved(t *testing.T) {
	kernel := uint64(3350)
	a := NewAccountant(func() (uint64, error) { return kernel, nil }, 3350)
	steps := []struct {
		kernel      uint64
		hooked      uint64
		total, grew uint64
	}{
		{3350, 0, 0, 0},
		{3352, 2, 0, 0}, // both seen
		{3353, 2, 1, 1}, // one missed
		{3355, 4, 1, 0}, // the two since seen
		{3355, 6, 1, 0}, // a kill the hooks count before the kernel does: never decreases
		{3360, 6, 4, 3}, // 10 killed, 6 seen
	}
	for i, s := range steps {
		kernel = s.kernel
		total, grew, err := a.Unobserved(func() (uint64, error) { return s.hooked, nil })
		if err != nil || total != s.total || grew != s.grew {
			t.Errorf("step %d: %d (+%d) %v, want %d (+%d)", i, total, grew, err, s.total, s.grew)
		}
	}
	if a.Start() != 3350 {
		t.Errorf("start %d", a.Start())
	}
}

func TestReadKernelKills(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "vmstat"), []byte("nr_free_pages 1\noom_kill 42\n"), 0o644)
	if n, err := ReadKernelKills(dir); err != nil || n != 42 {
		t.Errorf("%d %v", n, err)
	}
	os.WriteFile(filepath.Join(dir, "vmstat"), []byte("nr_free_pages 1\n"), 0o644)
	if _, err := ReadKernelKills(dir); err == nil {
		t.Error("no oom_kill, no error")
	}
	if n, err := ReadKernelKills("/proc"); err != nil {
		t.Errorf("this host: %d %v", n, err)
	}
}
