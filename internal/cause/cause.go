// SPDX-License-Identifier: Apache-2.0

// Package cause classifies a kernel OOM kill in one place: which limit
// it hit (the kind of its OOM domain, from cgroup paths) and what that
// makes of the death (its cause, with the node's memory signals at the
// kill).
package cause

import (
	"strings"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgpath"
)

// Classify sets the kill's domain kind and its cause; the kill's names
// and the node's memory signals must be in already.
func Classify(ev *event.OOMKill) {
	kind := Domain(ev)
	if ev.OOM.Domain == nil {
		ev.OOM.Domain = &event.Domain{}
	}
	ev.OOM.Domain.Kind = kind
	ev.OOM.Domain.LimitSource = LimitSource(ev)
	ev.Cause = Of(ev)
}

// LimitSource says whose limit the domain's is, from its kind and the
// victim's pod spec: on a pod cgroup a pod-level limit
// (spec.resources.limits.memory) or, without one, the sum of the
// containers' limits, which the kubelet sets there when every container
// has one. A one-container pod's cgroup holds the container and its
// sandbox under the container's limit, so it is full first: its kills
// are the container's limit's, enforced on the pod cgroup. Empty when
// the spec is not known.
func LimitSource(ev *event.OOMKill) string {
	p, c := ev.Victim.Pod, ev.Victim.Container
	switch ev.OOM.Domain.Kind {
	case event.DomainContainer:
		// A container without a limit of its own has the pod-level one
		// as its memory.max.
		if c != nil && c.MemoryLimitBytes == nil && p != nil && p.MemoryLimitBytes != nil {
			return event.LimitFromPodSpec
		}
		return event.LimitFromContainer
	case event.DomainAllocatable:
		return event.LimitFromNode
	case event.DomainSystem:
		return event.LimitFromSystem
	case event.DomainPod:
		switch {
		case p == nil:
		case p.MemoryLimitBytes != nil:
			return event.LimitFromPodSpec
		case p.ContainersMemoryLimitBytes != nil:
			return event.LimitFromContainers
		}
	}
	return ""
}

// Domain says which limit an OOM kill hit, from the OOM domain's cgroup
// path against the victim's: its container's, its pod's, the node's
// allocatable (kubepods or a QoS class), the whole system's, or another.
func Domain(ev *event.OOMKill) string {
	switch ev.OOM.Scope {
	case event.ScopeGlobal:
		return event.DomainSystem
	case event.ScopeMemcg:
	default:
		return event.DomainOther
	}
	d := ev.OOM.Domain
	if d == nil || d.Cgroup == nil {
		return event.DomainOther
	}
	// A truncated path is the root-most part of a deeper cgroup's (a
	// tenant's nesting below its container): whatever it shows, the
	// domain is below it, and an empty one is not the root.
	if d.PathTruncated {
		return event.DomainOther
	}
	switch cgpath.Parse(d.Path).Level {
	case cgpath.LevelContainer:
		return event.DomainContainer
	case cgpath.LevelPod:
		return event.DomainPod
	case cgpath.LevelQoS, cgpath.LevelKubepods:
		return event.DomainAllocatable
	}
	if strings.Trim(d.Path, "/") == "" {
		return event.DomainSystem
	}
	return event.DomainOther
}

// Of classifies a kernel OOM kill from its domain's kind and whether
// the node was below a kubelet eviction threshold when it happened: a
// node-level kill then came before the kubelet's next eviction pass.
func Of(ev *event.OOMKill) string {
	kind := ""
	if ev.OOM.Domain != nil {
		kind = ev.OOM.Domain.Kind
	}
	switch kind {
	case event.DomainContainer:
		return event.CauseOOMContainer
	case event.DomainPod:
		return event.CauseOOMPod
	case event.DomainAllocatable, event.DomainSystem:
		if pressureAtKill(ev) {
			return event.CauseOOMDuringPressure
		}
		if kind == event.DomainSystem {
			return event.CauseOOMSystem
		}
		return event.CauseOOMAllocatable
	}
	return event.CauseOOMOther
}

// pressureAtKill says whether a kubelet signal was below its threshold at
// the kill. The sample is taken when the event is handled, after the
// victim's memory is gone: for a kill at the kubepods limit the domain's
// usage, captured in the kernel at the kill, says it better. The kubelet's
// allocatable signal was then the limit minus that usage (the kernel had
// failed to reclaim before it killed, so no inactive file pages were left
// to discount).
func pressureAtKill(ev *event.OOMKill) bool {
	nm := ev.NodeMemory
	if nm == nil {
		return false
	}
	if nm.AnyBelow() {
		return true
	}
	d, a := ev.OOM.Domain, nm.AllocatableMemoryAvailable
	if d == nil || d.Kind != event.DomainAllocatable || d.LimitBytes == 0 || a == nil || a.ThresholdBytes == nil {
		return false
	}
	return int64(d.LimitBytes)-int64(d.UsageBytes) < int64(*a.ThresholdBytes)
}
