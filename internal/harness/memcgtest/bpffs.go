// SPDX-License-Identifier: Apache-2.0

package memcgtest

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// BPFFS mounts a BPF filesystem of the test's own (every bpffs mount is a
// separate instance: nothing of the host's /sys/fs/bpf is seen or
// touched) and returns where. The mount goes at the end of the test, and
// with it every pin in it: hooks pinned there detach once no process
// holds them.
func BPFFS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount a bpffs: %v", err)
	}
	t.Cleanup(func() {
		// Lazily: a process killed at the end of the test may still hold
		// the pin path open for a moment.
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// PinPath is a pin path for oomtrace in a BPFFS of the test's own.
func PinPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(BPFFS(t), "oomtrace")
}
