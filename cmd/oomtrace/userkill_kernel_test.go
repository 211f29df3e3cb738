// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// The killer this test binary plays when run with these: it joins the
// cgroup (cgroup.procs) of killerJoinEnv, then sends SIGKILL to the pid
// of killerPIDEnv, or writes 1 to the cgroup.kill of killerCgroupEnv,
// and stays a second (a user-space OOM killer is a daemon).
const (
	killerJoinEnv   = "OOMTRACE_TEST_KILLER_JOIN"
	killerPIDEnv    = "OOMTRACE_TEST_KILLER_PID"
	killerCgroupEnv = "OOMTRACE_TEST_KILLER_CGROUP_KILL"
)

func maybeRunKiller() {
	pid, cgroupKill := os.Getenv(killerPIDEnv), os.Getenv(killerCgroupEnv)
	if pid == "" && cgroupKill == "" {
		return
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "killer:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(os.Getenv(killerJoinEnv), []byte("0"), 0); err != nil {
		fail(err)
	}
	if pid != "" {
		n, err := strconv.Atoi(pid)
		if err != nil {
			fail(err)
		}
		if err := syscall.Kill(n, syscall.SIGKILL); err != nil {
			fail(err)
		}
	} else if err := os.WriteFile(cgroupKill, []byte("1"), 0); err != nil {
		fail(err)
	}
	time.Sleep(time.Second)
	os.Exit(0)
}

// killer runs this test binary as a killer named name (comm is the
// executable's file name: a copy), in the cgroup of join, with env.
func killer(t *testing.T, name, join string, env ...string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	copy := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(copy, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copy)
	cmd.Env = append(os.Environ(), append(env, killerJoinEnv+"="+join)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", name, err, out)
	}
}

// TestUserspaceKills runs the binary and kills processes from user space
// as the OOM killers that live there do: a process named earlyoom sends
// SIGKILL with kill(2); a process named talos-oom writes 1 to a cgroup's
// cgroup.kill (cgroup v2: the host's unified hierarchy), as Talos's OOM
// controller does. Each is one userspace_kill line naming the killer,
// the method and the victims. Not user-space kills: a process of the
// victim's own cgroup killing it (a supervisor), and a process named
// runc (the container runtime's stop): no line for those.
func TestUserspaceKills(t *testing.T) {
	testenv.RequirePrivileged(t)
	unified := "/sys/fs/cgroup/unified"
	if _, err := os.Stat(filepath.Join(unified, "cgroup.procs")); err != nil {
		unified = "/sys/fs/cgroup"
	}
	d := startDaemon(t, "--cri.endpoint", "none", "--kubeconfig", "none", "--refusals=false")

	// The killers run in a cgroup of their own, as a service does (one
	// above the victims' would be theirs: this test's own is).
	killers := filepath.Join(memcgtest.New(t, nil, 0).Dir, "cgroup.procs")

	// kill(2) from earlyoom, of a process holding 8 MiB in a 64 MiB cgroup.
	cg := memcgtest.New(t, nil, 64<<20)
	first := cg.Start(t, memcgtest.HogOptions{Bytes: 8 << 20, Idle: true})
	killer(t, "earlyoom", killers, killerPIDEnv+"="+strconv.Itoa(first.PID))
	first.Cmd.Wait()

	// The runtime's stop, and a supervisor's kill of its own child: no line.
	stopped := cg.Start(t, memcgtest.HogOptions{Bytes: 1 << 20, Idle: true})
	killer(t, "runc", killers, killerPIDEnv+"="+strconv.Itoa(stopped.PID))
	stopped.Cmd.Wait()
	supervisor := exec.Command("/bin/sh", "-c", fmt.Sprintf("echo $$ > %s; sleep 600 & kill -9 $!; sleep 2", filepath.Join(cg.Dir, "cgroup.procs")))
	if out, err := supervisor.CombinedOutput(); err != nil {
		t.Fatalf("supervisor: %v: %s", err, out)
	}

	// cgroup.kill from talos-oom, of two processes at once: on a hybrid
	// host the unified hierarchy's cgroup of theirs is another than
	// their memory cgroup; on cgroup v2 it is one.
	v2, victims := filepath.Join(unified, fmt.Sprintf("oomtrace-test-%d", os.Getpid())), cg
	if !cg.H.V1 {
		victims = memcgtest.New(t, nil, 0)
		v2 = victims.Dir
	} else {
		if err := os.Mkdir(v2, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(v2) })
	}
	// cgroup.kill is 5.14's.
	hasKill := true
	if _, err := os.Stat(filepath.Join(v2, "cgroup.kill")); err != nil {
		hasKill = false
		t.Logf("no cgroup.kill on this kernel (before 5.14): kill(2) only")
	}
	var group []*memcgtest.Hog
	for range 2 {
		if !hasKill {
			break
		}
		h := victims.Start(t, memcgtest.HogOptions{Bytes: 1 << 20, Idle: true})
		if err := os.WriteFile(filepath.Join(v2, "cgroup.procs"), []byte(strconv.Itoa(h.PID)), 0); err != nil {
			t.Fatal(err)
		}
		group = append(group, h)
	}
	if hasKill {
		killer(t, "talos-oom", killers, killerCgroupEnv+"="+filepath.Join(v2, "cgroup.kill"))
	}
	for _, h := range group {
		h.Cmd.Wait()
	}
	want := 1
	if hasKill {
		want = 2
	}

	var kills []event.UserspaceKill
	timeout := time.After(5 * time.Second)
	for len(kills) < want {
		select {
		case line := <-d.lines:
			if k, ok := userspaceKillIn(line, cg.Path, victims.Path); ok {
				kills = append(kills, k)
			}
		case <-timeout:
			t.Fatalf("%d userspace_kill lines, want %d: %+v\nlogs:\n%s", len(kills), want, kills, d.logs.String())
		}
	}
	// And no more: the runtime's and the supervisor's are not.
	for more := time.After(time.Second); ; {
		select {
		case line := <-d.lines:
			if _, ok := userspaceKillIn(line, cg.Path, victims.Path); ok {
				t.Errorf("a kill past the two: %s", line)
			}
			continue
		case <-more:
		}
		break
	}
	if v := scrapeCounter(t, d.base+"/metrics", `oomtrace_userspace_kills_total{container="",killer="earlyoom",namespace="",owner="",pod=""}`); v != 1 {
		t.Errorf("userspace_kills_total{killer=earlyoom} = %v, want 1", v)
	}
	d.stop(t)

	byKiller := map[string]event.UserspaceKill{}
	for _, k := range kills {
		byKiller[k.Killer.Comm] = k
	}
	if k := byKiller["earlyoom"]; k.Method != event.MethodKill || k.KnownKiller != "earlyoom" || k.VictimCount != 1 ||
		len(k.Victims) != 1 || int(k.Victims[0].TGID) != first.PID || k.Victims[0].Memcg == nil || k.Victims[0].Memcg.Path != cg.Path {
		t.Errorf("earlyoom's kill: %+v", k)
	}
	// Its cgroup as the kill found it: the 8 MiB held, the limit, and on
	// cgroup v2 its memory pressure.
	if m := byKiller["earlyoom"].Memory; m == nil || m.UsageBytes < 8<<20 || m.UsageBytes > 32<<20 ||
		m.LimitBytes == nil || *m.LimitBytes != 64<<20 || (!cg.H.V1 && m.Pressure == nil) {
		t.Errorf("earlyoom's kill's cgroup memory: %s", jsonOf(m))
	}
	if k := byKiller["talos-oom"]; hasKill && (k.Method != event.MethodCgroupKill || k.VictimCount != 2 || len(k.Victims) != 2) {
		t.Errorf("the cgroup.kill: %+v", k)
	}
}

// userspaceKillIn is line as a user-space kill of processes in a memory
// cgroup at one of paths.
func userspaceKillIn(line string, paths ...string) (event.UserspaceKill, bool) {
	var k event.UserspaceKill
	if json.Unmarshal([]byte(line), &k) != nil || k.Type != event.TypeUserspaceKill || len(k.Victims) == 0 ||
		k.Victims[0].Memcg == nil || !slices.Contains(paths, k.Victims[0].Memcg.Path) {
		return k, false
	}
	return k, true
}
