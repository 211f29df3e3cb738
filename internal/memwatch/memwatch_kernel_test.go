// SPDX-License-Identifier: Apache-2.0

package memwatch

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// watch runs a watcher on this host's memory hierarchy and gathers the
// lines of the cgroups at paths.
type watch struct {
	w      *Watcher
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	lines  []event.CgroupPressure
	at     []time.Time
}

func startWatch(t *testing.T, h memcgtest.Hierarchy, paths ...string) *watch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wt := &watch{w: New(Options{Memory: cgroup.Memory{Root: h.Root, V1: h.V1}}), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(wt.done)
		wt.w.Run(ctx, func(ev event.CgroupPressure) {
			for _, p := range paths {
				if ev.Memcg.Path == p {
					wt.mu.Lock()
					wt.lines, wt.at = append(wt.lines, ev), append(wt.at, time.Now())
					wt.mu.Unlock()
				}
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-wt.done })
	return wt
}

func (wt *watch) got() ([]event.CgroupPressure, []time.Time) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	return append([]event.CgroupPressure(nil), wt.lines...), append([]time.Time(nil), wt.at...)
}

// TestLeakWarnsBeforeItsKill: a process that leaks 1 MiB a second in a
// memory cgroup of 64 MiB (no swap) is warned about, naming its cgroup,
// at least 5 s before the kernel kills it; the episode is there for the
// kill afterwards.
func TestLeakWarnsBeforeItsKill(t *testing.T) {
	testenv.RequirePrivileged(t)
	cg := memcgtest.New(t, nil, 64<<20)
	wt := startWatch(t, cg.H, cg.Path)
	hog := cg.Start(t, memcgtest.HogOptions{Bytes: 256 << 20, MiBPerSecond: 1})
	hog.WaitKilled(t)
	killed := time.Now()
	lines, at := wt.got()
	if len(lines) == 0 || lines[0].State != event.PressureStarted {
		t.Fatalf("no warning before the kill: %+v", lines)
	}
	before := killed.Sub(at[0])
	t.Logf("warned %.1f s before the kill: %s", before.Seconds(), lines[0].String())
	if before < 5*time.Second {
		t.Errorf("warned %v before the kill, want at least 5 s", before)
	}
	if l := lines[0]; l.Memcg.ID == 0 || l.Memory.LimitBytes == nil || *l.Memory.LimitBytes != 64<<20 || l.Memory.AnonBytes == 0 {
		t.Errorf("the warning's cgroup and memory: %+v %+v", l.Memcg, l.Memory)
	}
	if ep := wt.w.Episode(cg.Path); ep == nil || ep.DurationSeconds < 4 {
		t.Errorf("the kill's episode: %+v", ep)
	}
}

// TestPageCacheFillsWithoutWarning: a process that reads a file four times its
// cgroup's limit, over and over, fills the limit with page cache the
// kernel reclaims; it keeps running, and no warning comes.
func TestPageCacheFillsWithoutWarning(t *testing.T) {
	testenv.RequirePrivileged(t)
	cg := memcgtest.New(t, nil, 64<<20)
	// A file on disk (not tmpfs: shmem is no reclaimable cache), written
	// here and dropped from the cache, so that the reader's reads charge
	// its cgroup.
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC {
		t.Skipf("%s is in memory: its pages are no reclaimable cache", dir)
	}
	file := filepath.Join(dir, "big")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := 0; i < 256; i++ {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	f.Close()
	wt := startWatch(t, cg.H, cg.Path)
	reader := exec.Command("sh", "-c", `echo $$ > "$1"; end=$(($(date +%s) + 20)); while [ "$(date +%s)" -lt "$end" ]; do cat "$2" > /dev/null; done`,
		"sh", filepath.Join(cg.Dir, "cgroup.procs"), file)
	if err := reader.Run(); err != nil {
		t.Fatalf("the reader did not keep running: %v", err)
	}
	usage := cg.Usage(t)
	lines, _ := wt.got()
	t.Logf("the reader's cgroup after 20 s of reads: %d MiB used of 64", usage>>20)
	if usage < 48<<20 {
		t.Errorf("the cgroup holds %d MiB: the reads did not fill it with page cache", usage>>20)
	}
	if len(lines) > 0 {
		t.Errorf("page cache warned: %+v", lines)
	}
}
