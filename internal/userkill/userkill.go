// SPDX-License-Identifier: Apache-2.0

// Package userkill tells the SIGKILLs of user-space OOM killers (and of
// anyone's kill -9) from the kernel's and the container runtime's, and
// makes one event of each killer's SIGKILLs to one cgroup within a
// moment. The kernel's OOM killer never sees those kills: systemd-oomd,
// earlyoom, oomd, nohang and Talos decide in user space and send SIGKILL
// themselves (kill(2) per process, or a write to cgroup.kill); the
// container ends 137 Error, not OOMKilled, vmstat's oom_kill does not
// move, and the kubelet says nothing.
//
// Not user-space kills: the kernel's (its OOM killer's SIGKILL is the
// kernel's own, SEND_SIG_PRIV), the container runtime's (a pod's
// deletion, a rollout, an eviction, a liveness probe's restart, a forced
// delete: the kubelet stops containers through runc, crun, conmon or the
// shim), a process's to itself, and a pod's to its own processes (a
// supervisor's).
package userkill

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgpath"
)

// Window is how close after its first a killer's SIGKILLs to one cgroup
// are one kill (a cgroup.kill reaches every process within microseconds;
// a killer that signals each process takes a loop).
const Window = 100 * time.Millisecond

// maxPending bounds the kills being gathered (a tenant signals at will);
// past it, a new one is dropped and counted.
const maxPending = 1024

// runtimeComms are the processes through which the kubelet stops
// containers (the names the kernel has: 15 bytes).
// systemd stops units so too (a container's scope, with the systemd
// cgroup driver).
var runtimeComms = []string{"runc", "crun", "youki", "runsc", "conmon", "containerd", "containerd-shim", "crio", "cri-o", "kubelet", "dockerd", "systemd"}

// knownKillers maps the names (comm, or systemd unit without .service)
// of user-space OOM killers to the name said.
var knownKillers = map[string]string{
	"systemd-oomd": "systemd-oomd",
	"earlyoom":     "earlyoom",
	"oomd":         "oomd",
	"nohang":       "nohang",
	"oom-killer":   "oom-killer",
}

// Candidate says whether a task signal may be a user-space kill: a
// SIGKILL from user space to another process, not from the container
// runtime, or a SIGTERM from a known user-space OOM killer (earlyoom and
// nohang terminate first, and kill only what does not exit). The sender's
// cgroup, which the record does not carry, is judged when the kill is
// made (Gatherer.Due).
func Candidate(ev event.TaskSignal) bool {
	if ev.Target.Memcg == nil || ev.Target.TGID == ev.Sender.TGID {
		return false
	}
	switch {
	case ev.Signal == "SIGKILL":
	case ev.Signal == "SIGTERM" && KnownKiller(ev.Sender) != "":
	default:
		return false
	}
	if ev.Info != event.SiginfoFull && ev.Info != event.SiginfoNone {
		return false
	}
	return !isRuntime(ev.Sender.Comm)
}

func isRuntime(comm string) bool {
	return slices.Contains(runtimeComms, comm) || strings.HasPrefix(comm, "containerd-shim")
}

// KnownKiller names the user-space OOM killer that p is, by its name or
// its systemd unit; empty when it is none of them.
func KnownKiller(p event.Process) string {
	if k := knownKillers[p.Comm]; k != "" {
		return k
	}
	if k := knownKillers[strings.TrimSuffix(p.Unit, ".service")]; k != "" {
		return k
	}
	return ""
}

type key struct {
	killer uint32 // tgid
	cgroup uint64 // the victims' memory cgroup's id
}

type gathering struct {
	kill  event.UserspaceKill
	pids  map[uint32]bool
	first time.Time
}

// Gatherer makes one UserspaceKill of a killer's SIGKILLs to a cgroup
// within Window. Safe for concurrent use.
type Gatherer struct {
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// KillerMemcg, if set, reads a live process's memory cgroup: the
	// killer's, read at its first SIGKILL (a kill -9 exits right after),
	// for Own.
	KillerMemcg func(pid uint32) *event.Cgroup
	// Swap, if set, reads the victims' memory cgroup's swap use: the
	// one figure the signal's record (usage, limit, pressure from the
	// kernel) does not have.
	Swap func(memcg *event.Cgroup) *uint64

	mu      sync.Mutex
	pending map[key]*gathering
	dropped uint64
}

func (g *Gatherer) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// Add takes a Candidate signal. It reports when the first kill waiting
// is due (zero: none waits).
func (g *Gatherer) Add(ev event.TaskSignal) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending == nil {
		g.pending = map[key]*gathering{}
	}
	k := key{killer: ev.Sender.TGID, cgroup: ev.Target.Memcg.ID}
	p := g.pending[k]
	if p == nil {
		if len(g.pending) >= maxPending {
			g.dropped++
			return g.nextLocked()
		}
		method := event.MethodKill
		if ev.Info == event.SiginfoNone {
			method = event.MethodCgroupKill
		}
		p = &gathering{first: g.now(), pids: map[uint32]bool{}, kill: event.UserspaceKill{
			Type: event.TypeUserspaceKill, Time: ev.Time, Node: ev.Node, Method: method, Signal: ev.Signal, Killer: ev.Sender,
		}}
		if g.KillerMemcg != nil && p.kill.Killer.Memcg == nil {
			p.kill.Killer.Memcg = g.KillerMemcg(ev.Sender.TGID)
		}
		// The kernel's usage, limit and pressure, from before the
		// victims died, and the swap only the cgroup's files say.
		if at := ev.TargetMemory; at != nil {
			m := *at
			if g.Swap != nil {
				m.SwapBytes = g.Swap(ev.Target.Memcg)
			}
			p.kill.Memory = &m
		}
		g.pending[k] = p
	}
	if !p.pids[ev.Target.TGID] {
		p.pids[ev.Target.TGID] = true
		p.kill.VictimCount++
		if len(p.kill.Victims) < event.MaxUserspaceVictims {
			p.kill.Victims = append(p.kill.Victims, ev.Target)
		}
	}
	return g.nextLocked()
}

// Due takes the kills gathered for Window (every one with all), and when
// the next is due (zero: none waits).
func (g *Gatherer) Due(all bool) ([]event.UserspaceKill, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	var due []event.UserspaceKill
	for k, p := range g.pending {
		if all || !now.Before(p.first.Add(Window)) {
			due = append(due, p.kill)
			delete(g.pending, k)
		}
	}
	slices.SortFunc(due, func(a, b event.UserspaceKill) int { return a.Time.Compare(b.Time.Time) })
	return due, g.nextLocked()
}

func (g *Gatherer) nextLocked() time.Time {
	var next time.Time
	for _, p := range g.pending {
		if at := p.first.Add(Window); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

// Dropped is how many kills were not gathered: too many at once.
func (g *Gatherer) Dropped() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dropped
}

// Own says whether the killer is one of the victims' own: in their pod
// (a container's supervisor, a pod's process), or in their cgroup or
// one above it but the root (a service's main process and its
// children). Then it is not a user-space OOM kill. killer is the
// killer's memory cgroup path; empty when unknown.
func Own(kill event.UserspaceKill, killer string) bool {
	if killer == "" || len(kill.Victims) == 0 || kill.Victims[0].Memcg == nil {
		return false
	}
	victim := kill.Victims[0].Memcg.Path
	if k, v := cgpath.Parse(killer), cgpath.Parse(victim); v.PodUID != "" && k.PodUID == v.PodUID {
		return true
	}
	killer = strings.TrimSuffix(killer, "/")
	return killer != "" && (victim == killer || strings.HasPrefix(victim, killer+"/"))
}
