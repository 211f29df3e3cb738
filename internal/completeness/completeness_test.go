package completeness

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUnobserved(t *testing.T) {
	kernel := uint64(3350)
	a, err := NewAccountant(func() (uint64, error) { return kernel, nil })
	if err != nil || a.Start() != 3350 {
		t.Fatal(a, err)
	}
	steps := []struct {
		kernel      uint64
		hooked      Hooked
		total, grew uint64
	}{
		{3350, Hooked{}, 0, 0},
		{3352, Hooked{Sent: 2}, 0, 0},                      // both seen
		{3353, Hooked{Sent: 3, Exiting: 1}, 1, 1},          // an exiting task was no kill: one kill missed
		{3355, Hooked{Sent: 4, Lost: 1}, 1, 0},             // a lost record was seen (and is counted as lost)
		{3355, Hooked{Sent: 6, Lost: 1}, 1, 0},             // exiting records not decoded yet: never decreases
		{3360, Hooked{Sent: 6, Lost: 1, Exiting: 1}, 4, 3}, // 10 killed, 6 seen
	}
	for i, s := range steps {
		kernel = s.kernel
		total, grew, err := a.Unobserved(func() (Hooked, error) { return s.hooked, nil })
		if err != nil || total != s.total || grew != s.grew {
			t.Errorf("step %d: %d (+%d) %v, want %d (+%d)", i, total, grew, err, s.total, s.grew)
		}
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
