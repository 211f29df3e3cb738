// SPDX-License-Identifier: Apache-2.0

package pipeline

import "github.com/oomtrace/oomtrace/event"

// Filter keeps events of the given namespaces and pods; empty keeps all.
type Filter struct {
	Namespaces map[string]bool
	// Pods holds "name" (any namespace) or "namespace/name".
	Pods map[string]bool
}

// NewFilter builds a Filter from flag values.
func NewFilter(namespaces, pods []string) Filter {
	f := Filter{}
	for _, n := range namespaces {
		if f.Namespaces == nil {
			f.Namespaces = map[string]bool{}
		}
		f.Namespaces[n] = true
	}
	for _, p := range pods {
		if f.Pods == nil {
			f.Pods = map[string]bool{}
		}
		f.Pods[p] = true
	}
	return f
}

// Empty is true when the filter keeps everything.
func (f Filter) Empty() bool { return len(f.Namespaces) == 0 && len(f.Pods) == 0 }

// Process reports whether p passes: its pod is in one of the namespaces
// (when any are given) and is one of the pods (when any are given).
func (f Filter) Process(p event.Process) bool {
	if f.Empty() {
		return true
	}
	if p.Pod == nil {
		return false
	}
	if len(f.Namespaces) > 0 && !f.Namespaces[p.Pod.Namespace] {
		return false
	}
	if len(f.Pods) > 0 && !f.Pods[p.Pod.Name] && !f.Pods[p.Pod.Namespace+"/"+p.Pod.Name] {
		return false
	}
	return true
}

// OOMKill keeps a kill whose victim or trigger passes.
func (f Filter) OOMKill(ev event.OOMKill) bool {
	return f.Process(ev.Victim.Process) || f.Process(ev.Trigger)
}

// CommitRefusal keeps a refusal whose process passes.
func (f Filter) CommitRefusal(ev event.CommitRefusal) bool { return f.Process(ev.Process) }
