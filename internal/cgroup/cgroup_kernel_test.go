// SPDX-License-Identifier: Apache-2.0

package cgroup_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
	"github.com/oomtrace/oomtrace/internal/kernfile"
)

// TestPopulatedThisHost: a real memory cgroup with a process in a child of
// it is populated; once the process is killed, it is not.
func TestPopulatedThisHost(t *testing.T) {
	testenv.RequirePrivileged(t)
	m, err := cgroup.FindMemory("/proc")
	if err != nil {
		t.Fatal(err)
	}
	parent := memcgtest.New(t, nil, 64<<20)
	child := memcgtest.New(t, parent, 0)
	if got, err := m.Populated(parent.Path); got || err != nil {
		t.Fatalf("empty cgroup %s: populated %v, %v", parent.Path, got, err)
	}
	hog := child.Start(t, memcgtest.HogOptions{Bytes: 1 << 20, Idle: true})
	if got, err := m.Populated(parent.Path); !got || err != nil {
		t.Errorf("with %d in %s: populated %v, %v", hog.PID, child.Path, got, err)
	}
	hog.Cmd.Process.Kill()
	hog.Cmd.Wait()
	if got, err := m.Populated(parent.Path); got || err != nil {
		t.Errorf("after the kill: populated %v, %v", got, err)
	}
}

// TestOpenFilesReadFresh: a cgroup file kept open (cgroup.Memory.Files)
// reads what the kernel says now, not what it said when opened, and one
// whose cgroup was removed and made again under the same path reads the
// new cgroup's, never the old one's.
func TestOpenFilesReadFresh(t *testing.T) {
	testenv.RequirePrivileged(t)
	m, err := cgroup.FindMemory("/proc")
	if err != nil {
		t.Fatal(err)
	}
	m.Files = kernfile.NewOpenFiles(8)
	t.Cleanup(m.Files.Close)
	limitFile := "memory.max"
	if m.V1 {
		limitFile = "memory.limit_in_bytes"
	}
	parent := memcgtest.New(t, nil, 64<<20)
	child := memcgtest.NewNamed(t, parent, "again", 32<<20)

	limit := func(want uint64) {
		t.Helper()
		got, err := m.ReadUint(child.Path, limitFile)
		if err != nil || got != want {
			t.Fatalf("%s/%s = %d, %v; want %d", child.Path, limitFile, got, err, want)
		}
	}
	limit(32 << 20)
	if m.Files.Len() != 1 {
		t.Fatalf("%d files open after one read, want 1", m.Files.Len())
	}
	child.SetLimit(t, 16<<20)
	limit(16 << 20) // the same open file, printed afresh

	// memory.stat moves with what the cgroup's processes hold.
	anon := func() uint64 {
		t.Helper()
		st, err := m.Stat(child.Path)
		if err != nil {
			t.Fatal(err)
		}
		if m.V1 {
			return st["total_rss"]
		}
		return st["anon"]
	}
	plainAnon := func() uint64 {
		t.Helper()
		data, err := kernfile.ReadFile(filepath.Join(child.Dir, "memory.stat"))
		if err != nil {
			t.Fatal(err)
		}
		st := cgroup.Stat(kernfile.ParseKeyValues(data))
		if m.V1 {
			return st["total_rss"]
		}
		return st["anon"]
	}
	before := anon()
	hog := child.Start(t, memcgtest.HogOptions{Bytes: 8 << 20, Idle: true})
	// Wait until a file opened afresh sees the hog's memory.
	for deadline := time.Now().Add(10 * time.Second); plainAnon() < before+8<<20; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the hog's 8 MiB never showed in memory.stat (before it: %d)", before)
		}
	}
	if after := anon(); after < before+8<<20 {
		t.Errorf("memory.stat anon %d through the kept file, the hog holding 8 MiB (before it: %d): a stale read", after, before)
	}
	procs, err := m.Procs(child.Path, 0)
	if err != nil || len(procs) != 1 || int(procs[0]) != hog.PID {
		t.Errorf("procs %v, %v; want [%d]", procs, err, hog.PID)
	}
	open := m.Files.Len()
	hog.Cmd.Process.Kill()
	hog.Cmd.Wait()
	if procs, err := m.Procs(child.Path, 0); err != nil || len(procs) != 0 {
		t.Errorf("procs after the hog's end %v, %v; want none", procs, err)
	}
	if m.Files.Len() != open {
		t.Errorf("%d files open after reading the same ones again, want %d", m.Files.Len(), open)
	}

	// Removed, then made again with another limit: the kept file fails
	// (its kernfs node is gone) and the path is opened afresh.
	child.Remove(t)
	if _, err := m.ReadUint(child.Path, limitFile); err == nil {
		t.Fatal("a removed cgroup's limit read")
	}
	again := memcgtest.NewNamed(t, parent, "again", 8<<20)
	if again.Path != child.Path {
		t.Fatalf("made again at %s, not %s", again.Path, child.Path)
	}
	limit(8 << 20)
}
