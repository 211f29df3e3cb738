// SPDX-License-Identifier: Apache-2.0

// Package memcgtest creates memory cgroups below the test's own and runs
// processes in them that the kernel OOM-kills, for privileged tests.
//
// Every cgroup is created below the cgroup the test process is in, gets its
// limit before any process joins it, and is removed by t.Cleanup: tests never
// touch cgroups they did not create and never risk a global OOM.
package memcgtest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/kernfile"
	"github.com/oomtrace/oomtrace/internal/memhog"

	"github.com/oomtrace/oomtrace/internal/cgroup"
)

// Hierarchy is the memory cgroup hierarchy of this host.
type Hierarchy struct {
	Root string // mount point, e.g. /sys/fs/cgroup/memory or /sys/fs/cgroup
	V1   bool
	Self string // the test process's own memcg, relative to Root
}

// Detect finds the memory hierarchy and this process's place in it.
func Detect() (Hierarchy, error) {
	m, err := cgroup.FindMemory("/proc")
	if err != nil {
		return Hierarchy{}, err
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return Hierarchy{}, err
	}
	self, v1, ok := cgroup.MemoryPath(data)
	if ok && v1 == m.V1 {
		self, ok = m.Resolve(self)
	}
	if !ok || v1 != m.V1 {
		return Hierarchy{}, fmt.Errorf("/proc/self/cgroup names no cgroup in the memory hierarchy at %s", m.Root)
	}
	return Hierarchy{Root: m.Root, V1: m.V1, Self: self}, nil
}

// Cgroup is a memory cgroup created by a test.
type Cgroup struct {
	H    Hierarchy
	Path string // relative to H.Root
	Dir  string // absolute directory
}

var seq atomic.Int64

// New creates a memory cgroup below parent (nil: below the test's own
// cgroup) with the given limit in bytes (0: no limit of its own) and
// removes it when the test ends.
func New(t testing.TB, parent *Cgroup, limit int64) *Cgroup {
	t.Helper()
	return create(t, parent, fmt.Sprintf("oomtrace-test-%d-%d", os.Getpid(), seq.Add(1)), limit)
}

// NewNamed is New with the cgroup's name chosen; with a nil parent it is
// made below a New cgroup of its own (a name of the caller's choosing
// directly below the test's own cgroup could collide with another test
// process's).
func NewNamed(t testing.TB, parent *Cgroup, name string, limit int64) *Cgroup {
	t.Helper()
	if parent == nil {
		parent = New(t, nil, 0)
	}
	return create(t, parent, name, limit)
}

func create(t testing.TB, parent *Cgroup, name string, limit int64) *Cgroup {
	t.Helper()
	var base Cgroup
	if parent != nil {
		base = *parent
	} else {
		h, err := Detect()
		if err != nil {
			t.Fatalf("detect memory cgroup hierarchy: %v", err)
		}
		base = Cgroup{H: h, Path: h.Self, Dir: filepath.Join(h.Root, h.Self)}
	}
	cg := &Cgroup{H: base.H, Path: filepath.Join(base.Path, name), Dir: filepath.Join(base.Dir, name)}
	if err := cg.memory().Create(cg.Path, limit); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cg.remove(t) })
	return cg
}

// SetLimit sets the memory limit in bytes.
func (c *Cgroup) SetLimit(t testing.TB, limit int64) {
	t.Helper()
	if err := c.memory().SetLimit(c.Path, limit); err != nil {
		t.Fatal(err)
	}
}

// memory is the hierarchy the cgroup is in.
func (c *Cgroup) memory() cgroup.Memory { return cgroup.Memory{Root: c.H.Root, V1: c.H.V1} }

// ID is the cgroup id: the inode of its directory.
func (c *Cgroup) ID(t testing.TB) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(c.Dir, &st); err != nil {
		t.Fatalf("stat cgroup: %v", err)
	}
	return st.Ino
}

// Usage is the cgroup's memory usage in bytes.
func (c *Cgroup) Usage(t testing.TB) uint64 {
	t.Helper()
	n, err := c.memory().Usage(c.Path)
	if err != nil {
		t.Fatalf("usage of %s: %v", c.Path, err)
	}
	return n
}

// WaitUsage waits up to 10 s until the cgroup's usage is at least n bytes
// (a hog that has touched what it was asked to).
func (c *Cgroup) WaitUsage(t testing.TB, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Usage(t) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s uses %d bytes after 10 s, not %d", c.Path, c.Usage(t), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// MemoryEvents is the cgroup's memory.events (cgroup v2): oom,
// oom_kill, oom_group_kill and the rest, by name.
func (c *Cgroup) MemoryEvents(t testing.TB) map[string]uint64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.Dir, "memory.events"))
	if err != nil {
		t.Fatalf("read memory.events: %v", err)
	}
	return kernfile.ParseKeyValues(data)
}

// OOMKills reads the cgroup's own oom_kill counter.
func (c *Cgroup) OOMKills(t testing.TB) uint64 {
	t.Helper()
	file := "memory.events"
	if c.H.V1 {
		file = "memory.oom_control"
	}
	data, err := os.ReadFile(filepath.Join(c.Dir, file))
	if err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == "oom_kill" {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatalf("parse %s: %v", file, err)
			}
			return n
		}
	}
	t.Fatalf("%s has no oom_kill line", file)
	return 0
}

// Remove removes the cgroup now rather than at the end of the test.
func (c *Cgroup) Remove(t testing.TB) { c.remove(t) }

func (c *Cgroup) remove(t testing.TB) {
	if err := c.memory().Remove(c.Path); err != nil {
		t.Error(err)
	}
}

// Hog environment: a test binary started with these runs Hog instead of tests.
const (
	hogEnvBytes  = "OOMTRACE_HOG_BYTES"
	hogEnvProcs  = "OOMTRACE_HOG_CGROUP_PROCS"
	hogEnvAdj    = "OOMTRACE_HOG_OOM_SCORE_ADJ"
	hogEnvIdle   = "OOMTRACE_HOG_IDLE"
	hogEnvHoldMs = "OOMTRACE_HOG_HOLD_MS"
	hogEnvRate   = "OOMTRACE_HOG_MIB_PER_S"
	// hogEnvUnderInit: this process is the init of a new pid namespace
	// that starts the hog as its child and waits for it.
	hogEnvUnderInit = "OOMTRACE_HOG_UNDER_INIT"
)

// PID namespaces a hog can run in (HogOptions.PIDNamespace).
const (
	HostPIDNamespace = iota // the test's own
	HogIsInit               // a new one, the hog its process 1, as a container's init
	HogUnderInit            // a new one whose init is another process, the hog its child
)

// MaybeRunHog must be called first in TestMain. In a process started by
// Start it joins its cgroup, sets its oom_score_adj, allocates and touches
// memory until the kernel kills it, and never returns.
func MaybeRunHog() {
	procs := os.Getenv(hogEnvProcs)
	if procs == "" {
		return
	}
	if os.Getenv(hogEnvUnderInit) == "1" {
		runInit(procs)
	}
	if err := memhog.Join(procs); err != nil {
		fmt.Fprintf(os.Stderr, "hog: %v\n", err)
		os.Exit(3)
	}
	if adj := os.Getenv(hogEnvAdj); adj != "" {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(adj), 0); err != nil {
			fmt.Fprintf(os.Stderr, "hog: oom_score_adj: %v\n", err)
			os.Exit(3)
		}
	}
	// Say we are in place, and who we are on the host (getpid names the
	// process in its own pid namespace; the host's /proc knows the host's
	// pid), then work.
	self, err := os.Readlink("/proc/self")
	if err != nil {
		fmt.Fprintf(os.Stderr, "hog: /proc/self: %v\n", err)
		os.Exit(3)
	}
	fmt.Fprintf(os.Stdout, "ready %s\n", self)
	if os.Getenv(hogEnvIdle) == "1" {
		// Hold a little memory and wait to be killed by another's OOM.
		n, _ := strconv.Atoi(os.Getenv(hogEnvBytes))
		keep := memhog.Touch(n)
		for {
			time.Sleep(time.Hour)
			_ = keep[0]
		}
	}
	n, _ := strconv.Atoi(os.Getenv(hogEnvBytes))
	if ms, _ := strconv.Atoi(os.Getenv(hogEnvHoldMs)); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	var keep []byte
	if rate, _ := strconv.Atoi(os.Getenv(hogEnvRate)); rate > 0 {
		// A leak: 1 MiB at a time, rate a second, n bytes in all.
		for i := 0; i < n>>20; i++ {
			keep = memhog.Touch(1 << 20)
			time.Sleep(time.Second / time.Duration(rate))
		}
	} else {
		keep = memhog.Touch(n)
	}
	// Still alive: the limit was not reached.
	fmt.Fprintf(os.Stderr, "hog: allocated %d bytes without being killed (%d)\n", n, keep[0])
	os.Exit(4)
}

// runInit is process 1 of a hog's pid namespace, as a container's init:
// in the hog's cgroup, it starts the hog as its child, and runs on after
// the hog's death, as a container's init runs on after a worker's, until
// it is killed itself.
func runInit(procs string) {
	if err := os.WriteFile(procs, []byte("0"), 0); err != nil {
		fmt.Fprintf(os.Stderr, "hog's init: join cgroup: %v\n", err)
		os.Exit(3)
	}
	exe, err := os.Executable()
	if err != nil {
		os.Exit(3)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, hogEnvUnderInit+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "hog's init: start the hog: %v\n", err)
		os.Exit(3)
	}
	// However the hog ends, the init stays.
	_ = cmd.Wait()
	for { // not select{}: the runtime would call that a deadlock and exit
		time.Sleep(time.Hour)
	}
}

// HogOptions describe one memory hog.
type HogOptions struct {
	Bytes       int64 // to allocate
	OOMScoreAdj *int  // nil: inherit
	Idle        bool  // allocate Bytes, then sleep until killed
	HoldMs      int   // wait this long before allocating
	// MiBPerSecond, if set, allocates 1 MiB at a time at this rate (a
	// leak) instead of all at once.
	MiBPerSecond int
	// PIDNamespace: HostPIDNamespace, HogIsInit or HogUnderInit.
	PIDNamespace int
}

// Hog is a running memory hog process.
type Hog struct {
	// Cmd is the hog, or with HogUnderInit its namespace's init, which
	// outlives the hog until killed.
	Cmd *exec.Cmd
	PID int // the hog's, as the host sees it
}

// Start starts the test binary as a hog in cgroup c and waits until it has
// joined it.
func (c *Cgroup) Start(t testing.TB, o HogOptions) *Hog {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("find test binary: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(),
		hogEnvProcs+"="+filepath.Join(c.Dir, "cgroup.procs"),
		hogEnvBytes+"="+strconv.FormatInt(o.Bytes, 10),
	)
	if o.OOMScoreAdj != nil {
		cmd.Env = append(cmd.Env, hogEnvAdj+"="+strconv.Itoa(*o.OOMScoreAdj))
	}
	if o.Idle {
		cmd.Env = append(cmd.Env, hogEnvIdle+"=1")
	}
	if o.HoldMs > 0 {
		cmd.Env = append(cmd.Env, hogEnvHoldMs+"="+strconv.Itoa(o.HoldMs))
	}
	if o.MiBPerSecond > 0 {
		cmd.Env = append(cmd.Env, hogEnvRate+"="+strconv.Itoa(o.MiBPerSecond))
	}
	if o.PIDNamespace != HostPIDNamespace {
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	}
	if o.PIDNamespace == HogUnderInit {
		cmd.Env = append(cmd.Env, hogEnvUnderInit+"=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start hog: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // killed by the kernel already, mostly
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "ready "))
	if err != nil || !strings.HasPrefix(line, "ready ") || perr != nil {
		t.Fatalf("hog did not start: %q %v", line, err)
	}
	return &Hog{Cmd: cmd, PID: pid}
}

// WaitKilled waits for the hog to exit and fails unless SIGKILL ended it.
func (h *Hog) WaitKilled(t testing.TB) {
	t.Helper()
	err := h.Cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("hog %d: want death by SIGKILL, got %v", h.PID, err)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("hog %d: want death by SIGKILL, got %v", h.PID, ws)
	}
}
