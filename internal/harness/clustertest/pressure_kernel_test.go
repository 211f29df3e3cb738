// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter/kubeevents"
)

// warningsOf are the cgroup_memory_pressure lines of a pod's cgroups (its
// containers' and its own).
func warningsOf(ev Events, pod string) []event.CgroupPressure {
	var out []event.CgroupPressure
	for _, w := range ev.Warnings {
		if w.Pod != nil && w.Pod.Name == pod {
			out = append(out, w)
		}
	}
	return out
}

// testLeakWarning: a container that leaks 1 MiB a second towards its
// 64 MiB limit is warned about, by name, at least 5 s before its kill;
// the kill carries the episode, and the pod has a ContainerMemoryPressure
// Event.
func testLeakWarning(t *testing.T, c *Cluster, o *Oomtrace) {
	begin := time.Now()
	c.createPod(t, podSpec("shop", "leaky", corev1.RestartPolicyNever, 2, container{name: "app", args: []string{"leak", "256", "1"}, limit: 64 * mi}))
	defer c.deletePod(t, "shop", "leaky")
	ev := o.WaitEvents(t, "the leak's kill", Patience(3*time.Minute), func(ev Events) bool { return len(killsInPod(ev.Since(begin), "leaky")) > 0 })
	k := killsInPod(ev.Since(begin), "leaky")[0]
	warnings := warningsOf(ev.Since(begin), "leaky")
	var first *event.CgroupPressure
	for i := range warnings {
		if warnings[i].State == event.PressureStarted {
			first = &warnings[i]
			break
		}
	}
	if first == nil {
		t.Fatalf("no warning before the kill %s; lines %s", jsonOf(k), jsonOf(warnings))
	}
	t.Logf("warning: %s", jsonOf(first))
	t.Logf("kill: %s", jsonOf(k))
	before := k.Time.Sub(first.Time.Time)
	t.Logf("warned %.1f s before the kill", before.Seconds())
	if before < 5*time.Second {
		t.Errorf("warned %v before the kill, want at least 5 s", before)
	}
	if first.Container == nil && first.Pod == nil || !slices.Contains(first.Episode.Reasons, event.PressureNearLimit) {
		t.Errorf("the warning names %s, reasons %v: want the pod (its container, or its cgroup) and near_limit", jsonOf(first.Pod), first.Episode.Reasons)
	}
	if p := k.Pressure; p == nil || p.DurationSeconds < 4 {
		t.Errorf("the kill's pressure %s: want the episode, 4 s or more", jsonOf(p))
	}
	e := c.waitKubeEvent(t, o, "shop", "leaky", kubeevents.ReasonPressure)
	t.Logf("Event: %s", e.Note)
	if !strings.Contains(e.Note, "running short of memory") {
		t.Errorf("Event note %q", e.Note)
	}
	e = c.waitKubeEvent(t, o, "shop", "leaky", kubeevents.ReasonContainer)
	t.Logf("the kill's Event: %s", e.Note)
	if !strings.Contains(e.Note, "under memory pressure for") {
		t.Errorf("the kill's Event note %q does not say the pressure before it", e.Note)
	}
}

// testPageCacheQuiet: a container that reads a file four times its limit
// over and over fills the limit with page cache and runs on; no warning.
// On the v1 node only: the systemd node's root is a tmpfs, whose pages are
// no page cache the kernel can reclaim.
func testPageCacheQuiet(t *testing.T, c *Cluster, o *Oomtrace) {
	begin := time.Now()
	c.createPod(t, podSpec("shop", "reader", corev1.RestartPolicyNever, 2, container{name: "app", args: []string{"pagecache", "256", "40"}, limit: 64 * mi}))
	defer c.deletePod(t, "shop", "reader")
	p := c.waitPod(t, "shop", "reader", "running", time.Minute, running)
	dir := containerCgroup(t, c, containerID(p.Status.ContainerStatuses[0].ContainerID))
	var peak uint64
	for end := time.Now().Add(Patience(45 * time.Second)); time.Now().Before(end); time.Sleep(time.Second) {
		peak = max(peak, readUint(t, dir, c.Runtime.Memcg.V1))
	}
	p = c.waitPod(t, "shop", "reader", "still running", 5*time.Second, func(*corev1.Pod) bool { return true })
	t.Logf("the reader's cgroup: up to %d MiB of 64", peak>>20)
	if peak < uint64(48*mi) {
		t.Errorf("the reader held %d MiB at most: its page cache did not fill the limit", peak>>20)
	}
	if s := p.Status.ContainerStatuses; len(s) != 1 || s[0].State.Running == nil {
		t.Errorf("the reader did not run on: %+v", s)
	}
	ev := o.Events(t).Since(begin)
	if w := warningsOf(ev, "reader"); len(w) > 0 {
		t.Errorf("page cache warned: %s", jsonOf(w))
	}
	if k := killsInPod(ev, "reader"); len(k) > 0 {
		t.Errorf("the reader was killed: %s", jsonOf(k))
	}
}

// testHighWarning (the systemd node's phase with memoryThrottlingFactor):
// a Burstable container that goes past its memory.high with anonymous
// memory is warned about with high events; the warning ends once it frees
// the memory.
func testHighWarning(t *testing.T, c *Cluster, o *Oomtrace) {
	begin := time.Now()
	c.createPod(t, podSpec("shop", "throttled", corev1.RestartPolicyNever, 2,
		container{name: "app", args: []string{"wave", "126", "20"}, request: 64 * mi, limit: 128 * mi}))
	defer c.deletePod(t, "shop", "throttled")
	ev := o.WaitEvents(t, "the warning's end", Patience(2*time.Minute), func(ev Events) bool {
		for _, w := range warningsOf(ev.Since(begin), "throttled") {
			if w.State == event.PressureEnded {
				return true
			}
		}
		return false
	})
	warnings := warningsOf(ev.Since(begin), "throttled")
	t.Logf("lines: %s", jsonOf(warnings))
	var started, ended *event.CgroupPressure
	for i := range warnings {
		switch warnings[i].State {
		case event.PressureStarted:
			started = &warnings[i]
		case event.PressureEnded:
			ended = &warnings[i]
		}
	}
	// The start says what its first intervals showed (126 MiB in 128 is
	// near the limit too); the episode gathers the high events after.
	if started == nil || started.Memory.HighBytes == nil {
		t.Errorf("start %s: want its memory.high", jsonOf(started))
	}
	if ended == nil || !slices.Contains(ended.Episode.Reasons, event.PressureAboveHigh) || ended.Episode.HighEvents == 0 || ended.Episode.DurationSeconds < 10 {
		t.Errorf("end %s: want above_high, its high events and the episode's duration", jsonOf(ended))
	}
	if k := killsInPod(ev.Since(begin), "throttled"); len(k) > 0 {
		t.Errorf("the throttled container was killed: %s", jsonOf(k))
	}
}
