// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// containerCgroup makes a cgroup tree the way the kubelet and containerd
// lay one out (cgroupfs driver), below the test's own cgroup: oomtrace
// reads the pod and the container from the path.
func containerCgroup(t *testing.T, id string, limit int64) *memcgtest.Cgroup {
	kubepods := memcgtest.NewNamed(t, nil, "kubepods", 0)
	qos := memcgtest.NewNamed(t, kubepods, "burstable", 0)
	pod := memcgtest.NewNamed(t, qos, "pod0b1e7bd0-4a5e-4c4b-9f34-7d1f1c2a7e10", 0)
	return memcgtest.NewNamed(t, pod, id, limit)
}

// TestContainerSurvived: whether a container outlives the kill of one of
// its processes, for each way a container's process dies. A worker
// killed below the container's init: the container runs on. The init
// killed: it ends. With memory.oom.group (cgroup v2; what the kubelet
// sets on v2 unless singleProcessOOMKill), the kernel kills every process
// of the cgroup for one decision, the init among them: one event each,
// and the container ends.
func TestContainerSurvived(t *testing.T) {
	testenv.RequirePrivileged(t)
	d := startDaemon(t, "--cri.endpoint", "none", "--container.check-delay", "500ms")
	worst := 1000
	cases := []struct {
		name     string
		ns       int
		group    bool
		survived bool
	}{
		{"worker", memcgtest.HogUnderInit, false, true},
		{"init", memcgtest.HogIsInit, false, false},
		{"group", memcgtest.HogUnderInit, true, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.Repeat(fmt.Sprintf("%x", 10+i), 64) // a container id: 64 hex digits
			cg := containerCgroup(t, id, 64<<20)
			if tc.group {
				if cg.H.V1 {
					t.Skip("memory.oom.group is cgroup v2's (the qemu guests run this)")
				}
				if err := os.WriteFile(filepath.Join(cg.Dir, "memory.oom.group"), []byte("1"), 0); err != nil {
					t.Fatal(err)
				}
			}
			hog := cg.Start(t, memcgtest.HogOptions{Bytes: 256 << 20, PIDNamespace: tc.ns, OOMScoreAdj: &worst})
			k := d.waitKill(t, hog.PID, 15*time.Second)
			if k.Victim.Container == nil || k.Victim.Container.ID != id || k.Victim.Pod == nil {
				t.Fatalf("victim %s: want container %s of the pod", jsonOf(k.Victim), id)
			}
			if k.ContainerSurvived == nil || *k.ContainerSurvived != tc.survived || k.Victim.Init == nil || *k.Victim.Init != (tc.ns == memcgtest.HogIsInit) {
				t.Errorf("container_survived %s init %s; want %v", jsonOf(k.ContainerSurvived), jsonOf(k.Victim.Init), tc.survived)
			}
			if tc.group {
				// The init, killed for the same decision.
				init := d.waitKill(t, hog.Cmd.Process.Pid, 15*time.Second)
				if init.Victim.Init == nil || !*init.Victim.Init || init.ContainerSurvived == nil || *init.ContainerSurvived {
					t.Errorf("the group's init: init %s container_survived %s", jsonOf(init.Victim.Init), jsonOf(init.ContainerSurvived))
				}
			}
		})
	}
}
