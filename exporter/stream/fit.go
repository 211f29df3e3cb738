// SPDX-License-Identifier: Apache-2.0

package stream

import (
	"github.com/oomtrace/oomtrace/event"
)

// MaxLineBytes bounds a JSON line, newline included: containerd splits a
// container's log line longer than 16 KiB (its max_container_log_line_size)
// into partial lines, which log pipelines without a CRI parser configured
// for them (Fluent Bit, Promtail) take as separate, broken records.
const MaxLineBytes = 16 << 10

// Each cut gives up more of what tenants make long, until a line fits:
// pods' labels (8 KiB of bytes, up to six times that escaped), the
// kubelet's messages, the lists of an eviction or a post-mortem, cgroup
// paths. What is cut says so: labels_truncated, path_truncated, and the
// event's truncated.
var cuts = []struct {
	labelBytes, textBytes, listLen, pathBytes int
}{
	{labelBytes: 2 << 10, textBytes: -1, listLen: -1, pathBytes: -1},
	{labelBytes: 0, textBytes: 1 << 10, listLen: 16, pathBytes: -1},
	{labelBytes: 0, textBytes: 256, listLen: 4, pathBytes: 512},
	{labelBytes: 0, textBytes: 64, listLen: 0, pathBytes: 128},
}

// cut returns a copy of ev with the limits of cuts[i] applied (-1: not
// that one); events of other kinds are returned as they are. Shared maps
// and slices are replaced, never modified.
func cut(ev event.Event, i int) event.Event {
	c := cuts[i]
	switch ev := ev.(type) {
	case event.OOMKill:
		ev.Truncated = true
		cutProcess(&ev.Victim.Process, c.labelBytes, c.pathBytes)
		cutProcess(&ev.Trigger, c.labelBytes, c.pathBytes)
		if d := ev.OOM.Domain; d != nil && d.Cgroup != nil {
			dc := *d
			dc.Cgroup = cutCgroup(d.Cgroup, c.pathBytes)
			ev.OOM.Domain = &dc
		}
		if g := ev.OOM.Group; g != nil {
			gc := *g
			gc.Cgroup = *cutCgroup(&g.Cgroup, c.pathBytes)
			ev.OOM.Group = &gc
		}
		if d := ev.OOM.Decision; d != nil && c.textBytes >= 0 {
			dc := *d
			dc.Message = event.BoundText(d.Message, c.textBytes)
			ev.OOM.Decision = &dc
		}
		if pm := ev.PostMortem; pm != nil {
			pc := *pm
			if c.listLen >= 0 && len(pc.TopTasks) > c.listLen {
				pc.TopTasks = pc.TopTasks[:c.listLen:c.listLen]
			}
			if c.pathBytes >= 0 {
				pc.Cgroup = event.BoundText(pc.Cgroup, c.pathBytes)
			}
			ev.PostMortem = &pc
		}
		return ev
	case event.CommitRefusal:
		ev.Truncated = true
		cutProcess(&ev.Process, c.labelBytes, c.pathBytes)
		return ev
	case event.Eviction:
		ev.Truncated = true
		ev.Pod = *cutPod(&ev.Pod, c.labelBytes)
		if c.textBytes >= 0 {
			ev.Message = event.BoundText(ev.Message, c.textBytes)
		}
		if c.listLen >= 0 {
			ev.OffendingContainers = first(ev.OffendingContainers, c.listLen)
			ev.KernelOOMKills = first(ev.KernelOOMKills, c.listLen)
			ev.ContainerExits = first(ev.ContainerExits, c.listLen)
			ev.KernelSignals = first(ev.KernelSignals, c.listLen)
		}
		return ev
	case event.UserspaceKill:
		ev.Truncated = true
		cutProcess(&ev.Killer, c.labelBytes, c.pathBytes)
		victims := ev.Victims
		if c.listLen >= 0 {
			victims = first(victims, max(c.listLen, 1))
		}
		ev.Victims = make([]event.Process, len(victims))
		for i, v := range victims {
			cutProcess(&v, c.labelBytes, c.pathBytes)
			ev.Victims[i] = v
		}
		return ev
	case event.CgroupPressure:
		ev.Truncated = true
		ev.Pod = cutPod(ev.Pod, c.labelBytes)
		ev.Memcg = *cutCgroup(&ev.Memcg, c.pathBytes)
		return ev
	}
	return ev
}

func first[T any](s []T, n int) []T {
	if len(s) <= n {
		return s
	}
	return s[:n:n]
}

func cutProcess(p *event.Process, labelBytes, pathBytes int) {
	p.Pod = cutPod(p.Pod, labelBytes)
	p.Memcg = cutCgroup(p.Memcg, pathBytes)
}

func cutPod(pod *event.Pod, labelBytes int) *event.Pod {
	if pod == nil || labelBytes < 0 {
		return pod
	}
	pc := *pod
	if bounded, truncated := event.BoundLabelsTo(pod.Labels, event.MaxLabels, labelBytes); truncated {
		pc.Labels, pc.LabelsTruncated = bounded, true
	}
	return &pc
}

func cutCgroup(cg *event.Cgroup, pathBytes int) *event.Cgroup {
	if cg == nil || pathBytes < 0 || len(cg.Path) <= pathBytes {
		return cg
	}
	cc := *cg
	cc.Path, cc.PathTruncated = event.BoundText(cg.Path, pathBytes), true
	return &cc
}

// inVictimCgroup writes a kill's trigger that ran in the victim's own
// memory cgroup (most kills: the victim asked for the memory) without
// repeating the victim's container, pod and unit: in_victim_cgroup says
// they are the victim's.
func inVictimCgroup(ev event.Event) event.Event {
	k, ok := ev.(event.OOMKill)
	if !ok {
		return ev
	}
	v, tr := k.Victim.Memcg, k.Trigger.Memcg
	if v == nil || tr == nil || v.ID != tr.ID || v.Path != tr.Path {
		return ev
	}
	k.Trigger.Container, k.Trigger.Pod, k.Trigger.Unit = nil, nil, ""
	k.Trigger.InVictimCgroup = true
	return k
}
