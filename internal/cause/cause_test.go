// SPDX-License-Identifier: Apache-2.0

package cause

import (
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
)

const (
	podPath = "/kubepods/burstable/pod0b1e7bd0-4a5e-4c4b-9f34-7d1f1c2a7e10"
	redisID = "aaaa000000000000000000000000000000000000000000000000000000000001"
)

func proc(pid uint32, path string) event.Process {
	return event.Process{PID: pid, TGID: pid, Memcg: &event.Cgroup{ID: uint64(len(path)), Path: path}}
}

func oomKill(victimPath, domainPath, scope string) event.OOMKill {
	ev := event.OOMKill{Victim: event.Victim{Process: proc(10, victimPath)}, Trigger: proc(11, victimPath), OOM: event.OOM{Scope: scope}}
	if domainPath != "" {
		ev.OOM.Domain = &event.Domain{Cgroup: &event.Cgroup{ID: 99, Path: domainPath}, LimitBytes: 1 << 26}
	}
	return ev
}

// truncatedDomain is ev with a domain path the kernel cut to path.
func truncatedDomain(ev event.OOMKill, path string) event.OOMKill {
	ev.OOM.Domain.Path, ev.OOM.Domain.PathTruncated = path, true
	return ev
}

var t0 = time.Unix(1_800_000_000, 0)

func sig(below bool) *event.MemorySignal { return &event.MemorySignal{BelowThreshold: below} }

func kill(kind string, pressure bool) event.OOMKill {
	return event.OOMKill{Type: event.TypeOOMKill, Time: event.Time{Time: t0}, OOM: event.OOM{Domain: &event.Domain{Kind: kind}},
		NodeMemory: &event.NodeMemory{MemoryAvailable: sig(false), AllocatableMemoryAvailable: sig(pressure)}}
}

func TestDomain(t *testing.T) {
	ctr := podPath + "/" + redisID
	systemdPod := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b1e7bd0_4a5e_4c4b_9f34_7d1f1c2a7e10.slice"
	cases := []struct {
		name string
		ev   event.OOMKill
		want string
	}{
		{"own container", oomKill(ctr, ctr, event.ScopeMemcg), event.DomainContainer},
		{"container, victim in a sub-cgroup", oomKill(ctr+"/init.scope", ctr, event.ScopeMemcg), event.DomainContainer},
		{"pod", oomKill(ctr, podPath, event.ScopeMemcg), event.DomainPod},
		{"pod systemd", oomKill(systemdPod+"/cri-containerd-"+redisID+".scope", systemdPod, event.ScopeMemcg), event.DomainPod},
		{"kubepods", oomKill(ctr, "/kubepods", event.ScopeMemcg), event.DomainAllocatable},
		{"qos class", oomKill(ctr, "/kubepods/burstable", event.ScopeMemcg), event.DomainAllocatable},
		{"kubepods slice", oomKill(systemdPod, "/kubepods.slice", event.ScopeMemcg), event.DomainAllocatable},
		{"global", oomKill(ctr, "", event.ScopeGlobal), event.DomainSystem},
		{"cpuset", oomKill(ctr, "", event.ScopeCpuset), event.DomainOther},
		{"service", oomKill("/system.slice/a.service/x", "/system.slice/a.service", event.ScopeMemcg), event.DomainOther},
		{"memcg without a domain", oomKill(ctr, "", event.ScopeMemcg), event.DomainOther},
		{"deeper than the kernel read: empty, truncated", truncatedDomain(oomKill(ctr, "/", event.ScopeMemcg), ""), event.DomainOther},
		{"nested below the container, truncated", truncatedDomain(oomKill(ctr, ctr, event.ScopeMemcg), ctr), event.DomainOther},
	}
	for _, c := range cases {
		if got := Domain(&c.ev); got != c.want {
			t.Errorf("%s: kind %q, want %q", c.name, got, c.want)
		}
	}
}

func TestOf(t *testing.T) {
	cases := []struct {
		kind     string
		pressure bool
		want     string
	}{
		{event.DomainContainer, false, event.CauseOOMContainer},
		{event.DomainContainer, true, event.CauseOOMContainer}, // its own limit, pressure or not
		{event.DomainPod, false, event.CauseOOMPod},
		{event.DomainPod, true, event.CauseOOMPod},
		{event.DomainAllocatable, false, event.CauseOOMAllocatable},
		{event.DomainAllocatable, true, event.CauseOOMDuringPressure},
		{event.DomainSystem, false, event.CauseOOMSystem},
		{event.DomainSystem, true, event.CauseOOMDuringPressure},
		{event.DomainOther, true, event.CauseOOMOther},
		{"", false, event.CauseOOMOther},
	}
	for _, c := range cases {
		ev := kill(c.kind, c.pressure)
		if got := Of(&ev); got != c.want {
			t.Errorf("kind %q pressure %v: %q, want %q", c.kind, c.pressure, got, c.want)
		}
	}
	// memory.available below its threshold counts too; no sample, no pressure.
	ev := kill(event.DomainSystem, false)
	ev.NodeMemory.MemoryAvailable.BelowThreshold = true
	if Of(&ev) != event.CauseOOMDuringPressure {
		t.Error("memory.available below threshold not seen as pressure")
	}
	ev.NodeMemory = nil
	if Of(&ev) != event.CauseOOMSystem {
		t.Error("no node sample must not mean pressure")
	}
}

// TestOfAtTheKubepodsLimit: the sample comes after the victim's memory
// was freed (seen in a real cluster: 435 MiB available, above 300Mi), but
// the kernel's domain usage at the kill says the allocatable signal was
// at the limit, below any threshold.
func TestOfAtTheKubepodsLimit(t *testing.T) {
	th := uint64(300 << 20)
	ev := kill(event.DomainAllocatable, false)
	ev.NodeMemory.AllocatableMemoryAvailable = &event.MemorySignal{AvailableBytes: 435 << 20, ThresholdBytes: &th}
	ev.OOM.Domain.LimitBytes, ev.OOM.Domain.UsageBytes = 1<<30, 1<<30-4096
	if got := Of(&ev); got != event.CauseOOMDuringPressure {
		t.Errorf("kill at the kubepods limit with a 300Mi threshold: %s", got)
	}
	// Usage past the limit (charges overshoot it by a batch at the kill):
	// still at the limit, not a wrapped-around amount free.
	ev.OOM.Domain.UsageBytes = 1<<30 + 64<<10
	if got := Of(&ev); got != event.CauseOOMDuringPressure {
		t.Errorf("kill with usage 64 KiB past the kubepods limit: %s", got)
	}
	// No allocatable threshold (enforceNodeAllocatable none): not pressure.
	ev.NodeMemory.AllocatableMemoryAvailable.ThresholdBytes = nil
	if got := Of(&ev); got != event.CauseOOMAllocatable {
		t.Errorf("without a threshold: %s", got)
	}
	// A domain far from its limit (usage unknown): the sample decides.
	ev.NodeMemory.AllocatableMemoryAvailable.ThresholdBytes = &th
	ev.OOM.Domain.UsageBytes = 512 << 20
	if got := Of(&ev); got != event.CauseOOMAllocatable {
		t.Errorf("usage half the limit: %s", got)
	}
}

// Classify sets both the domain's kind and the cause; a global OOM gains a
// domain that says so, and nothing else.
func TestClassify(t *testing.T) {
	ev := oomKill(podPath+"/"+redisID, podPath, event.ScopeMemcg)
	Classify(&ev)
	if ev.OOM.Domain.Kind != event.DomainPod || ev.Cause != event.CauseOOMPod {
		t.Errorf("pod limit: kind %q cause %q", ev.OOM.Domain.Kind, ev.Cause)
	}
	ev = oomKill(podPath+"/"+redisID, "", event.ScopeGlobal)
	Classify(&ev)
	if d := ev.OOM.Domain; d == nil || *d != (event.Domain{Kind: event.DomainSystem, LimitSource: event.LimitFromSystem}) || ev.Cause != event.CauseOOMSystem {
		t.Errorf("global: domain %+v cause %q", d, ev.Cause)
	}
}

// TestLimitSource: a pod cgroup's limit is the pod spec's pod-level limit
// when there is one, else the containers' sum the kubelet set there; not
// known without the spec. The other kinds name their limit themselves.
func TestLimitSource(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	for _, tc := range []struct {
		name      string
		domain    string
		pod       *event.Pod
		want      string
		wantCause string
	}{
		{"one container's limit", podPath, &event.Pod{ContainersMemoryLimitBytes: u(64 << 20)}, event.LimitFromContainers, event.CauseOOMPod},
		{"pod-level limit", podPath, &event.Pod{MemoryLimitBytes: u(64 << 20)}, event.LimitFromPodSpec, event.CauseOOMPod},
		{"both: the pod-level one wins", podPath, &event.Pod{MemoryLimitBytes: u(64 << 20), ContainersMemoryLimitBytes: u(96 << 20)}, event.LimitFromPodSpec, event.CauseOOMPod},
		{"no spec", podPath, &event.Pod{}, "", event.CauseOOMPod},
		{"no pod", podPath, nil, "", event.CauseOOMPod},
		{"container", podPath + "/" + redisID, &event.Pod{}, event.LimitFromContainer, event.CauseOOMContainer},
		{"container of its own limit", podPath + "/" + redisID, &event.Pod{MemoryLimitBytes: u(64 << 20)}, event.LimitFromContainer, event.CauseOOMContainer},
		{"container with the pod-level limit", podPath + "/" + redisID, &event.Pod{MemoryLimitBytes: u(64 << 20)}, event.LimitFromPodSpec, event.CauseOOMContainer},
	} {
		ev := oomKill(podPath+"/"+redisID, tc.domain, event.ScopeMemcg)
		ev.Victim.Pod = tc.pod
		ev.Victim.Container = &event.Container{ID: redisID}
		if tc.name == "container of its own limit" {
			ev.Victim.Container.MemoryLimitBytes = u(32 << 20)
		}
		Classify(&ev)
		if ev.OOM.Domain.LimitSource != tc.want || ev.Cause != tc.wantCause {
			t.Errorf("%s: limit_source %q cause %q, want %q %q", tc.name, ev.OOM.Domain.LimitSource, ev.Cause, tc.want, tc.wantCause)
		}
	}
}
