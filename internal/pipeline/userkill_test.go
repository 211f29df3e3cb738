// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/userkill"
)

// A user-space killer's SIGKILLs to a pod's processes are one kill, with
// the victims' cgroup as the first SIGKILL found it (it may be gone when
// the kill is named), in the output and to the API's Events;
// a pod's own kill of its process and the runtime's stop are neither.
func TestUserspaceKill(t *testing.T) {
	out, kube := &locked[event.UserspaceKill]{}, &locked[event.UserspaceKill]{}
	podPath := "/kubepods/burstable/pod0b1e5c6a-1111-2222-3333-444455556666"
	ctrPath := podPath + "/3f1e0c9a"
	limit := uint64(64 << 20)
	var (
		mu   sync.Mutex
		read []string
		gone bool // the container's cgroup, once its last process is killed
	)
	p := New(context.Background(), Options{Out: out, KubeEvents: kube, QueueSize: 16,
		KillerMemcg: func(pid uint32) *event.Cgroup {
			if pid == 50 { // the pod's own supervisor
				return &event.Cgroup{ID: 9, Path: ctrPath}
			}
			return &event.Cgroup{ID: 2, Path: "/system.slice/earlyoom.service"}
		},
		CgroupSwap: func(memcg *event.Cgroup) *uint64 {
			mu.Lock()
			defer mu.Unlock()
			read = append(read, memcg.Path)
			if gone {
				return nil
			}
			swap := uint64(4096)
			return &swap
		},
	})
	victim := func(pid uint32) event.Process {
		return event.Process{PID: pid, TGID: pid, Comm: "worker", Memcg: &event.Cgroup{ID: 9, Path: ctrPath},
			Pod: &event.Pod{Namespace: "shop", Name: "cart", UID: "0b1e5c6a-1111-2222-3333-444455556666"}}
	}
	signal := func(sender event.Process, target uint32) {
		// The kernel's figures, as the signal's record has them.
		p.Signal(event.TaskSignal{Type: event.TypeTaskSignal, Time: event.Time{Time: time.Now()}, Signal: "SIGKILL",
			Info: event.SiginfoFull, Target: victim(target), Sender: sender,
			TargetMemory: &event.CgroupMemory{UsageBytes: 63 << 20, LimitBytes: &limit, Pressure: &event.Pressure{FullAvg10: 42}}})
	}
	earlyoom := event.Process{PID: 7, TGID: 7, Comm: "earlyoom"}
	signal(earlyoom, 100)
	signal(earlyoom, 101)
	signal(event.Process{PID: 50, TGID: 50, Comm: "tini"}, 102)
	signal(event.Process{PID: 60, TGID: 60, Comm: "containerd-shim"}, 103)
	mu.Lock()
	gone = true
	mu.Unlock()

	out.wait(t, 1)
	time.Sleep(2 * userkill.Window)
	kills := out.get()
	if len(kills) != 1 {
		t.Fatalf("%d kills, want earlyoom's only: %+v", len(kills), kills)
	}
	k := kills[0]
	if k.Killer.Comm != "earlyoom" || k.KnownKiller != "earlyoom" || k.VictimCount != 2 || k.Memory == nil || k.Memory.Pressure == nil || k.Memory.Pressure.FullAvg10 != 42 ||
		k.Memory.SwapBytes == nil || *k.Memory.SwapBytes != 4096 {
		t.Errorf("kill %+v", k)
	}
	mu.Lock()
	if len(read) == 0 || read[0] != ctrPath {
		t.Errorf("cgroups read %q, want the victims' %s", read, ctrPath)
	}
	mu.Unlock()
	if ev := kube.wait(t, 1); len(ev) != 1 || ev[0].Victims[0].Pod == nil || ev[0].Victims[0].Pod.UID != "0b1e5c6a-1111-2222-3333-444455556666" {
		t.Errorf("to the Events: %+v", ev)
	}
	p.Close(time.Second)
}
