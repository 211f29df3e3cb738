// SPDX-License-Identifier: Apache-2.0

package userkill

import (
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
)

const podPath = "/kubepods/burstable/pod0b1e7bd0-4a5e-4c4b-9f34-7d1f1c2a7e10/aaaa000000000000000000000000000000000000000000000000000000000001"

func signal(sender string, senderPID, target uint32, info string) event.TaskSignal {
	return event.TaskSignal{Type: event.TypeTaskSignal, Signal: "SIGKILL", Info: info,
		Target: event.Process{PID: target, TGID: target, Comm: "app", Memcg: &event.Cgroup{ID: 42, Path: podPath}},
		Sender: event.Process{PID: senderPID, TGID: senderPID, Comm: sender}}
}

func TestCandidate(t *testing.T) {
	sigterm := signal("earlyoom", 10, 20, event.SiginfoFull)
	sigterm.Signal = "SIGTERM"
	shellTerm := signal("sh", 10, 20, event.SiginfoFull)
	shellTerm.Signal = "SIGTERM"
	sigint := signal("earlyoom", 10, 20, event.SiginfoFull)
	sigint.Signal = "SIGINT"
	classic := signal("earlyoom", 10, 20, event.SiginfoFull)
	classic.Target.Memcg, classic.Info = nil, ""
	for _, c := range []struct {
		name string
		ev   event.TaskSignal
		want bool
	}{
		{"earlyoom's kill(2)", signal("earlyoom", 10, 20, event.SiginfoFull), true},
		{"a cgroup.kill write", signal("talos-oom", 10, 20, event.SiginfoNone), true},
		{"the kernel's own", signal("app", 10, 20, event.SiginfoKernel), false},
		{"runc stopping a container", signal("runc", 10, 20, event.SiginfoFull), false},
		{"the shim", signal("containerd-shim", 10, 20, event.SiginfoFull), false},
		{"systemd stopping a scope", signal("systemd", 1, 20, event.SiginfoFull), false},
		{"the kubelet", signal("kubelet", 10, 20, event.SiginfoFull), false},
		{"itself", signal("app", 20, 20, event.SiginfoFull), false},
		{"earlyoom's SIGTERM (its first)", sigterm, true},
		{"anyone's SIGTERM", shellTerm, false},
		{"another signal", sigint, false},
		{"the classic tracepoint (no target cgroup, no info)", classic, false},
	} {
		if got := Candidate(c.ev); got != c.want {
			t.Errorf("%s: candidate %v, want %v", c.name, got, c.want)
		}
	}
}

// TestGatherer: one killer's SIGKILLs to one cgroup within the window are
// one kill, its victims listed up to the bound and all counted; another
// killer's are another; a cgroup.kill says so.
func TestGatherer(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	g := &Gatherer{Now: func() time.Time { return now }}
	for pid := range uint32(40) {
		g.Add(signal("talos-oom", 10, 100+pid, event.SiginfoNone))
		g.Add(signal("talos-oom", 10, 100+pid, event.SiginfoNone)) // a thread's: once
	}
	next := g.Add(signal("earlyoom", 11, 500, event.SiginfoFull))
	if want := now.Add(Window); !next.Equal(want) {
		t.Errorf("next due %v, want %v", next, want)
	}
	if due, _ := g.Due(false); len(due) != 0 {
		t.Fatalf("%d kills due before the window passed", len(due))
	}
	now = now.Add(Window)
	due, next := g.Due(false)
	if len(due) != 2 || !next.IsZero() {
		t.Fatalf("%d kills due, next %v; want 2, none", len(due), next)
	}
	byKiller := map[string]event.UserspaceKill{}
	for _, k := range due {
		byKiller[k.Killer.Comm] = k
	}
	if k := byKiller["talos-oom"]; k.Method != event.MethodCgroupKill || k.VictimCount != 40 || len(k.Victims) != event.MaxUserspaceVictims {
		t.Errorf("the cgroup.kill: method %s, %d victims listed of %d; want cgroup.kill, %d of 40", k.Method, len(k.Victims), k.VictimCount, event.MaxUserspaceVictims)
	}
	if k := byKiller["earlyoom"]; k.Method != event.MethodKill || k.VictimCount != 1 {
		t.Errorf("earlyoom's: method %s, %d victims", k.Method, k.VictimCount)
	}
}

// TestGathererBounded: a tenant that signals at will gathers at most
// maxPending kills at once; the rest are counted as dropped.
func TestGathererBounded(t *testing.T) {
	g := &Gatherer{}
	for i := range maxPending + 10 {
		ev := signal("x", uint32(1000+i), 20, event.SiginfoFull)
		g.Add(ev)
	}
	if due, _ := g.Due(true); len(due) != maxPending || g.Dropped() != 10 {
		t.Errorf("%d gathered, %d dropped; want %d, 10", len(due), g.Dropped(), maxPending)
	}
}

func TestOwn(t *testing.T) {
	kill := func(victim string) event.UserspaceKill {
		return event.UserspaceKill{Victims: []event.Process{{Memcg: &event.Cgroup{Path: victim}}}}
	}
	otherContainer := "/kubepods/burstable/pod0b1e7bd0-4a5e-4c4b-9f34-7d1f1c2a7e10/bbbb000000000000000000000000000000000000000000000000000000000002"
	for _, c := range []struct {
		victim, killer string
		want           bool
	}{
		{podPath, otherContainer, true},                                // another container of the pod
		{podPath, podPath, true},                                       // its own container
		{podPath, "/system.slice/earlyoom.service", false},             // earlyoom
		{podPath, "/", false},                                          // a killer in the root cgroup
		{podPath, "", false},                                           // unknown: gone already
		{"/system.slice/a.service/x", "/system.slice/a.service", true}, // a service's main process
		{"/system.slice/a.service", "/system.slice/b.service", false},
	} {
		if got := Own(kill(c.victim), c.killer); got != c.want {
			t.Errorf("victim %s, killer %q: own %v, want %v", c.victim, c.killer, got, c.want)
		}
	}
}

func TestKnownKiller(t *testing.T) {
	for _, c := range []struct {
		p    event.Process
		want string
	}{
		{event.Process{Comm: "earlyoom"}, "earlyoom"},
		{event.Process{Comm: "systemd-oomd"}, "systemd-oomd"},
		{event.Process{Comm: "sd-oomd-worker", Unit: "systemd-oomd.service"}, "systemd-oomd"},
		{event.Process{Comm: "bash"}, ""},
	} {
		if got := KnownKiller(c.p); got != c.want {
			t.Errorf("%s (%s): %q, want %q", c.p.Comm, c.p.Unit, got, c.want)
		}
	}
}

// The kill's memory is the kernel's usage, limit and pressure from the
// first signal's record (before the victims died and uncharged), with the
// swap only the cgroup's files say.
func TestGathererKeepsTheKernelsFigures(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	limit, swap := uint64(64<<20), uint64(4096)
	g := &Gatherer{Now: func() time.Time { return now }, Swap: func(*event.Cgroup) *uint64 { return &swap }}
	ev := signal("earlyoom", 10, 20, event.SiginfoFull)
	ev.TargetMemory = &event.CgroupMemory{UsageBytes: 60 << 20, LimitBytes: &limit, Pressure: &event.Pressure{FullAvg10: 50}}
	g.Add(ev)
	now = now.Add(Window)
	kills, _ := g.Due(false)
	if len(kills) != 1 || kills[0].Signal != "SIGKILL" {
		t.Fatalf("kills %+v", kills)
	}
	m := kills[0].Memory
	if m == nil || m.UsageBytes != 60<<20 || m.LimitBytes == nil || *m.LimitBytes != limit || m.SwapBytes == nil || *m.SwapBytes != swap || m.Pressure == nil || m.Pressure.FullAvg10 != 50 {
		t.Errorf("memory %+v", m)
	}
}
