package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// named is a copy of the program at path under name, so that the kernel
// names its process so (comm is the executable's file name).
func named(t *testing.T, path, name string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copy := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(copy, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return copy
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
	killers := memcgtest.New(t, nil, 0)
	inKillers := func(name string, args ...string) *exec.Cmd {
		return exec.Command("/bin/sh", append([]string{"-c", `echo $$ > "$0"; exec "$@"`, filepath.Join(killers.Dir, "cgroup.procs"), name}, args...)...)
	}

	// kill(2) from earlyoom.
	cg := memcgtest.New(t, nil, 0)
	first := cg.Start(t, memcgtest.HogOptions{Bytes: 1 << 20, Idle: true})
	if out, err := inKillers(named(t, "/bin/kill", "earlyoom"), "-9", strconv.Itoa(first.PID)).CombinedOutput(); err != nil {
		t.Fatalf("earlyoom: %v: %s", err, out)
	}
	first.Cmd.Wait()

	// The runtime's stop, and a supervisor's kill of its own child: no line.
	stopped := cg.Start(t, memcgtest.HogOptions{Bytes: 1 << 20, Idle: true})
	if out, err := inKillers(named(t, "/bin/kill", "runc"), "-9", strconv.Itoa(stopped.PID)).CombinedOutput(); err != nil {
		t.Fatalf("runc: %v: %s", err, out)
	}
	stopped.Cmd.Wait()
	supervisor := exec.Command("/bin/sh", "-c", fmt.Sprintf("echo $$ > %s; sleep 600 & kill -9 $!; sleep 2", filepath.Join(cg.Dir, "cgroup.procs")))
	if out, err := supervisor.CombinedOutput(); err != nil {
		t.Fatalf("supervisor: %v: %s", err, out)
	}

	// cgroup.kill from talos-oom, of two processes at once.
	v2 := filepath.Join(unified, fmt.Sprintf("oomtrace-test-%d", os.Getpid()))
	if err := os.Mkdir(v2, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(v2) })
	var group []*memcgtest.Hog
	for range 2 {
		h := cg.Start(t, memcgtest.HogOptions{Bytes: 1 << 20, Idle: true})
		if err := os.WriteFile(filepath.Join(v2, "cgroup.procs"), []byte(strconv.Itoa(h.PID)), 0); err != nil {
			t.Fatal(err)
		}
		group = append(group, h)
	}
	writer := exec.Command(named(t, "/bin/sh", "talos-oom"), "-c", `echo $$ > "$0"; echo 1 > "$1"; sleep 1`,
		filepath.Join(killers.Dir, "cgroup.procs"), filepath.Join(v2, "cgroup.kill"))
	if out, err := writer.CombinedOutput(); err != nil {
		t.Fatalf("cgroup.kill: %v: %s", err, out)
	}
	for _, h := range group {
		h.Cmd.Wait()
	}

	var kills []event.UserspaceKill
	timeout := time.After(5 * time.Second)
	for len(kills) < 2 {
		select {
		case line := <-d.lines:
			if k, ok := userspaceKillIn(line, cg.Path); ok {
				kills = append(kills, k)
			}
		case <-timeout:
			t.Fatalf("%d userspace_kill lines, want 2: %+v\nlogs:\n%s", len(kills), kills, d.logs.String())
		}
	}
	// And no more: the runtime's and the supervisor's are not.
	for more := time.After(time.Second); ; {
		select {
		case line := <-d.lines:
			if _, ok := userspaceKillIn(line, cg.Path); ok {
				t.Errorf("a kill past the two: %s", line)
			}
			continue
		case <-more:
		}
		break
	}
	if v := scrapeCounter(t, d.base+"/metrics", `oomtrace_userspace_kills_total{container="",killer="earlyoom",namespace="",pod=""}`); v != 1 {
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
	if k := byKiller["talos-oom"]; k.Method != event.MethodCgroupKill || k.VictimCount != 2 || len(k.Victims) != 2 {
		t.Errorf("the cgroup.kill: %+v", k)
	}
}

// userspaceKillIn is line as a user-space kill of processes in the memory
// cgroup at path.
func userspaceKillIn(line, path string) (event.UserspaceKill, bool) {
	var k event.UserspaceKill
	if json.Unmarshal([]byte(line), &k) != nil || k.Type != event.TypeUserspaceKill || len(k.Victims) == 0 ||
		k.Victims[0].Memcg == nil || k.Victims[0].Memcg.Path != path {
		return k, false
	}
	return k, true
}
