// SPDX-License-Identifier: Apache-2.0

package cgroup_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// The namespace probe: a process that joins a cgroup, unshares its cgroup
// namespace there (as a container runtime does for a non-privileged
// container on cgroup v2), re-executes itself inside it and reports what
// FindMemory and Resolve make of the host's hierarchy.
const (
	nsProbeProcs = "OOMTRACE_NSPROBE_PROCS" // the cgroup.procs to join
	nsProbeIn    = "OOMTRACE_NSPROBE_IN"    // set once in the namespace
	nsProbeOf    = "OOMTRACE_NSPROBE_OF"    // the pid whose cgroup to resolve
)

type nsProbeResult struct {
	Root, NSRoot string
	V1           bool
	Err          string
	// Of the process named by nsProbeOf: its path as this namespace's
	// /proc names it, resolved, and the resolved cgroup's id.
	Raw, Resolved string
	Resolves      bool
	ID            uint64
}

// maybeProbeNamespace runs the probe in a process TestMain started as one.
func maybeProbeNamespace() {
	procs := os.Getenv(nsProbeProcs)
	if procs == "" {
		return
	}
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "namespace probe: "+format+"\n", a...)
		os.Exit(3)
	}
	if os.Getenv(nsProbeIn) == "" {
		// The namespace is the thread's: unshare and exec on one thread.
		runtime.LockOSThread()
		if err := os.WriteFile(procs, []byte("0"), 0); err != nil {
			fail("join cgroup: %v", err)
		}
		if err := syscall.Unshare(syscall.CLONE_NEWCGROUP); err != nil {
			fail("unshare cgroup namespace: %v", err)
		}
		exe, err := os.Executable()
		if err != nil {
			fail("%v", err)
		}
		fail("exec: %v", syscall.Exec(exe, os.Args, append(os.Environ(), nsProbeIn+"=1")))
	}
	var r nsProbeResult
	m, err := cgroup.FindMemory("/proc")
	if err != nil {
		r.Err = err.Error()
	}
	r.Root, r.NSRoot, r.V1 = m.Root, m.NSRoot, m.V1
	data, err := os.ReadFile("/proc/" + os.Getenv(nsProbeOf) + "/cgroup")
	if err != nil {
		fail("%v", err)
	}
	r.Raw, _, _ = cgroup.MemoryPath(data)
	if r.Resolved, r.Resolves = m.Resolve(r.Raw); r.Resolves {
		r.ID, _ = m.ID(r.Resolved)
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		fail("%v", err)
	}
	os.Exit(0)
}

// TestFindMemoryInCgroupNamespace: in a cgroup namespace rooted two levels
// below this test's own memory cgroup, where /proc names every other
// cgroup relative to that root, FindMemory still finds the host's
// hierarchy, finds the namespace's root, and Resolve turns this test's
// own cgroup, as the namespace sees it, back into its path on the host.
func TestFindMemoryInCgroupNamespace(t *testing.T) {
	testenv.RequirePrivileged(t)
	host, err := cgroup.FindMemory("/proc")
	if err != nil {
		t.Fatal(err)
	}
	if host.NSRoot != "" {
		t.Fatalf("this test runs in a cgroup namespace of its own (%s)", host.NSRoot)
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	self, _, _ := cgroup.MemoryPath(data)
	selfID, ok := host.ID(self)
	if !ok {
		t.Fatalf("own cgroup %s has no id", self)
	}
	ns := memcgtest.New(t, memcgtest.New(t, nil, 0), 0)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), nsProbeProcs+"="+ns.Dir+"/cgroup.procs", nsProbeOf+"="+strconv.Itoa(os.Getpid()))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("namespace probe: %v", err)
	}
	var r nsProbeResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("namespace probe said %q: %v", out, err)
	}
	t.Logf("in the namespace: %+v", r)
	// That the namespace is real: this test's cgroup is above its root.
	if !strings.HasPrefix(r.Raw, "/..") {
		t.Fatalf("the probe's /proc names this test's cgroup %q, not relative to a namespace root below it", r.Raw)
	}
	if r.Err != "" || r.Root != host.Root || r.V1 != host.V1 {
		t.Fatalf("hierarchy in the namespace: %s (v1 %v) %q; want %s (v1 %v)", r.Root, r.V1, r.Err, host.Root, host.V1)
	}
	if r.NSRoot != ns.Path {
		t.Errorf("namespace root %q, want %q", r.NSRoot, ns.Path)
	}
	if !r.Resolves || r.Resolved != self || r.ID != selfID {
		t.Errorf("this test's cgroup resolved as %q (%v, id %d), want %q (id %d)", r.Resolved, r.Resolves, r.ID, self, selfID)
	}
}
