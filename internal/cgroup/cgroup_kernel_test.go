package cgroup_test

import (
	"testing"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
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
