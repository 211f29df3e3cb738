// SPDX-License-Identifier: Apache-2.0

// Package enrich names the container, pod and systemd unit of every process
// in an event.
package enrich

import (
	"context"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgpath"
	"github.com/oomtrace/oomtrace/internal/cri"
)

// Resolver names containers; *cri.Client is one.
type Resolver interface {
	// Lookup names a container or sandbox that existed at time at.
	Lookup(ctx context.Context, id string, at time.Time) (cri.Container, bool)
}

// LimitResolver sets a named container's memory limits from its pod's
// spec (by c.PodUID and c.Name); false when it does not know the pod.
// The cluster view is one: it knows a pod from its creation, before the
// kubelet's status names its containers.
type LimitResolver interface {
	MemoryLimits(c *cri.Container) bool
}

// Resolvers ask each resolver in turn until one names the container: the
// runtime first (it knows a container from its start, and its sandbox),
// then the cluster's view of the kubelet's pod statuses.
type Resolvers []Resolver

// Lookup is the first resolver's answer that names the container, with
// the pod spec's memory limits from a later one when it has none (the
// runtime names a container, the cluster view knows its pod's spec).
func (rs Resolvers) Lookup(ctx context.Context, id string, at time.Time) (cri.Container, bool) {
	for i, r := range rs {
		c, ok := r.Lookup(ctx, id, at)
		if !ok {
			continue
		}
		if c.Sandbox || c.MemoryLimit != nil || c.PodMemoryLimit != nil || c.ContainersMemoryLimit != nil {
			return c, true
		}
		for _, later := range rs[i+1:] {
			if lr, ok := later.(LimitResolver); ok && lr.MemoryLimits(&c) {
				break
			}
		}
		return c, true
	}
	return cri.Container{}, false
}

// Enricher adds attribution to events. The zero value reads cgroup paths
// only.
type Enricher struct {
	// Resolver names containers and pods; nil leaves names empty.
	Resolver Resolver
}

// OOMKill attributes the victim and the trigger.
func (e *Enricher) OOMKill(ctx context.Context, ev *event.OOMKill) {
	e.Process(ctx, &ev.Victim.Process, ev.Time.Time)
	if v, tr := ev.Victim.Memcg, ev.Trigger.Memcg; v != nil && tr != nil && v.ID == tr.ID && v.Path == tr.Path {
		// Same cgroup (most kills: the victim asked for the memory).
		ev.Trigger.Container, ev.Trigger.Pod, ev.Trigger.Unit = ev.Victim.Container, ev.Victim.Pod, ev.Victim.Unit
	} else {
		e.Process(ctx, &ev.Trigger, ev.Time.Time)
	}
	containerInit(&ev.Victim)
}

// containerInit completes the kernel's word on the victim being its
// container's init (process 1 of its pid namespace): where the pod shares
// one pid namespace, the pause process is 1 and a container's first
// process is not; it is the one whose parent, the runtime's shim, is
// outside the container's cgroup. (Two look the same and are rare: a
// worker whose parent died, reparented to the pod's pause, and a process
// in a sub-cgroup of its container started from another.)
func containerInit(v *event.Victim) {
	if v.Container == nil || v.Memcg == nil || v.Memcg.ID == 0 || v.ParentMemcgID == 0 || (v.Init != nil && *v.Init) {
		return
	}
	init := v.ParentMemcgID != v.Memcg.ID
	v.Init = &init
}

// CommitRefusal attributes the refused process.
func (e *Enricher) CommitRefusal(ctx context.Context, ev *event.CommitRefusal) {
	e.Process(ctx, &ev.Process, ev.Time.Time)
}

// Process sets p's container, pod and unit from its memory cgroup path and,
// for a container, from the runtime as it was at time at.
func (e *Enricher) Process(ctx context.Context, p *event.Process, at time.Time) {
	if p.Memcg == nil {
		return
	}
	info := cgpath.Parse(p.Memcg.Path)
	p.Unit = info.Unit
	if info.PodUID != "" {
		p.Pod = &event.Pod{UID: info.PodUID, QoS: info.QoS}
	}
	if info.ContainerID == "" {
		return
	}
	ctr := &event.Container{ID: info.ContainerID, Runtime: info.Runtime}
	p.Container = ctr
	if e.Resolver == nil {
		return
	}
	rc, ok := e.Resolver.Lookup(ctx, info.ContainerID, at)
	if !ok {
		return
	}
	if ctr.Runtime == "" {
		ctr.Runtime = rc.Runtime
	}
	if p.Pod != nil && p.Pod.UID != rc.PodUID {
		// The path and the runtime disagree on the pod: keep what the
		// kernel saw, and name nothing after the runtime (a container id
		// in a path is a directory name, which may be a tenant's).
		return
	}
	if rc.Sandbox {
		// The pod's pause process: the pod is known, the container is its
		// sandbox, which has no name in the pod spec.
		ctr.Name = ""
	} else {
		ctr.Name = rc.Name
	}
	if rc.PodUID == "" && rc.PodName == "" {
		return
	}
	if p.Pod == nil {
		if info.Kubepods {
			// Below kubepods without a pod level: not a path the kubelet
			// makes.
			return
		}
		// A runtime whose cgroup naming does not say the pod: trust CRI.
		p.Pod = &event.Pod{UID: rc.PodUID}
	}
	p.Pod.Name, p.Pod.Namespace = rc.PodName, rc.PodNamespace
	p.Pod.Labels, p.Pod.LabelsTruncated = rc.PodLabels, rc.PodLabelsTruncated
	ctr.MemoryLimitBytes, ctr.StatusMemoryLimitBytes = rc.MemoryLimit, rc.StatusMemoryLimit
	p.Pod.MemoryLimitBytes, p.Pod.ContainersMemoryLimitBytes = rc.PodMemoryLimit, rc.ContainersMemoryLimit
	p.Pod.ResizeInProgress = rc.ResizeInProgress
}

// Container names a container id known to the runtime at time at, or
// says it is a pod's sandbox (pause) container, which has no name; empty
// and false when the runtime cannot say.
func (e *Enricher) Container(ctx context.Context, id string, at time.Time) (name string, sandbox bool) {
	if e.Resolver == nil || id == "" {
		return "", false
	}
	c, ok := e.Resolver.Lookup(ctx, id, at)
	if !ok {
		return "", false
	}
	if c.Sandbox {
		return "", true
	}
	return c.Name, false
}
