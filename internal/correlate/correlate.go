// SPDX-License-Identifier: Apache-2.0

// Package correlate matches the kernel's OOM kills with the kubelet's
// evictions of the same pod, both ways.
package correlate

import (
	"sync"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgpath"
)

// DefaultWindow is how close a kill and an eviction of one pod are to be
// one story.
const DefaultWindow = 5 * time.Minute

// Correlator remembers recent kills and evictions by pod uid. Whichever of
// a kill and an eviction comes second points to the first: an OOM kill
// after an eviction carries the eviction, an eviction after OOM kills lists
// them. Safe for concurrent use.
type Correlator struct {
	window time.Duration

	mu        sync.Mutex
	kills     map[string][]event.KillRef
	evictions map[string]event.Eviction
	signals   map[string][]event.SignalRef // Container holds the container id
	pruned    time.Time
}

// signalSlack: a signal this long before an eviction's stop could have
// begun still belongs to it. API times have whole seconds, kernel times
// nanoseconds; and the kubelet writes the pod's status through its status
// manager, seconds after the containers stopped on a busy node (5 s seen
// on the emulated cgroup v2 node of the cluster suite). Only signals to
// the evicted pod's own processes are taken.
const signalSlack = 10 * time.Second

// minGracePeriod is the kubelet's shortest stop (minimumGracePeriodInSeconds).
const minGracePeriod = 2 * time.Second

// stopLookback is how long before an eviction's time its stop may have
// begun: the kubelet writes the eviction in the pod's status once the
// containers have stopped, so the first signals come up to the pod's grace
// period (at least the kubelet's minimum) before it, plus the slack of the
// API's whole seconds.
func stopLookback(ev *event.Eviction) time.Duration {
	grace := minGracePeriod
	if g := ev.TerminationGracePeriodSeconds; g != nil && time.Duration(*g)*time.Second > grace {
		grace = time.Duration(*g) * time.Second
	}
	return grace + signalSlack
}

// maxKillsPerPod bounds memory in a burst: an eviction lists at most this
// many of the pod's latest kills.
const maxKillsPerPod = 64

// New returns a correlator with the given window (0: DefaultWindow).
func New(window time.Duration) *Correlator {
	if window <= 0 {
		window = DefaultWindow
	}
	return &Correlator{window: window, kills: map[string][]event.KillRef{}, evictions: map[string]event.Eviction{},
		signals: map[string][]event.SignalRef{}}
}

// OOMKill points the kill (classified already) to an eviction of its pod
// in the window before it, and remembers it for an eviction to come.
func (c *Correlator) OOMKill(ev *event.OOMKill) {
	pod := ev.Victim.Pod
	if pod == nil || pod.UID == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prune(ev.Time.Time)
	if e, ok := c.evictions[pod.UID]; ok {
		if d := ev.Time.Sub(e.Time.Time); d >= 0 && d <= c.window {
			ev.Eviction = &event.EvictionRef{Time: e.Time, SecondsBefore: event.Seconds(d), Message: e.Message}
		}
	}
	ref := event.KillRef{Time: ev.Time, PID: ev.Victim.PID, Comm: ev.Victim.Comm, Cause: ev.Cause}
	if ev.Victim.Container != nil {
		ref.Container = ev.Victim.Container.Name
	}
	ks := append(c.kills[pod.UID], ref)
	if len(ks) > maxKillsPerPod {
		ks = append(ks[:0:0], ks[len(ks)-maxKillsPerPod:]...)
	}
	c.kills[pod.UID] = ks
}

// Signal remembers a SIGTERM or SIGKILL to a process of a pod, read from
// the target's cgroup path, for the pod's eviction. Safe to call from the
// ring buffer reader: it never waits.
func (c *Correlator) Signal(ev event.TaskSignal) {
	if ev.Target.Memcg == nil {
		return
	}
	info := cgpath.Parse(ev.Target.Memcg.Path)
	if info.PodUID == "" {
		return
	}
	ref := event.SignalRef{Time: ev.Time, PID: ev.Target.PID, Comm: ev.Target.Comm, Container: info.ContainerID,
		Signal: ev.Signal, SenderPID: ev.Sender.TGID, SenderComm: ev.Sender.Comm}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prune(ev.Time.Time)
	ss := append(c.signals[info.PodUID], ref)
	if len(ss) > maxKillsPerPod {
		ss = append(ss[:0:0], ss[len(ss)-maxKillsPerPod:]...)
	}
	c.signals[info.PodUID] = ss
}

// Eviction lists the kernel OOM kills of the pod in the window before the
// eviction and since (negative seconds_before), and the signals its
// processes got from the start of its stop on (stopLookback), and
// remembers it for kills to come. Kills since: an eviction is written
// seconds after the kubelet's decision (its stop is in it), and a
// container still allocating while it is stopped can be OOM-killed
// meanwhile; and the eviction's time is the pod status's, in whole
// seconds, so a kill later in that second may even have come first (the
// kubelet's pass and the kernel's kill race at the kubepods limit).
// KernelSignals[i].Container is the container's id: the caller names it.
func (c *Correlator) Eviction(ev *event.Eviction) {
	if ev.KernelOOMKills == nil {
		ev.KernelOOMKills = []event.KillRef{}
	}
	if ev.KernelSignals == nil {
		ev.KernelSignals = []event.SignalRef{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prune(ev.Time.Time)
	for _, k := range c.kills[ev.Pod.UID] {
		if d := ev.Time.Sub(k.Time.Time); d <= c.window {
			k.SecondsBefore = event.Seconds(d)
			ev.KernelOOMKills = append(ev.KernelOOMKills, k)
		}
	}
	for _, s := range c.signals[ev.Pod.UID] {
		if d := s.Time.Sub(ev.Time.Time); d >= -stopLookback(ev) && d <= c.window {
			s.SecondsAfter = event.Seconds(d)
			ev.KernelSignals = append(ev.KernelSignals, s)
		}
	}
	c.evictions[ev.Pod.UID] = *ev
}

// prune forgets what is older than the window before now, at most once a
// second; and what is more than the window after now: a time far ahead
// (a clock that jumped, a time a tenant wrote) must neither stay forever
// nor stop the pruning. Time that goes back prunes at once.
func (c *Correlator) prune(now time.Time) {
	if d := now.Sub(c.pruned); d >= 0 && d < time.Second {
		return
	}
	c.pruned = now
	stale := func(at time.Time) bool { return now.Sub(at) > c.window || at.Sub(now) > c.window }
	for uid, ks := range c.kills {
		keep := ks[:0]
		for _, k := range ks {
			if !stale(k.Time.Time) {
				keep = append(keep, k)
			}
		}
		if len(keep) == 0 {
			delete(c.kills, uid)
		} else {
			c.kills[uid] = keep
		}
	}
	for uid, e := range c.evictions {
		if stale(e.Time.Time) {
			delete(c.evictions, uid)
		}
	}
	for uid, ss := range c.signals {
		if last := ss[len(ss)-1].Time.Time; now.Sub(last) > c.window || last.Sub(now) > c.window {
			delete(c.signals, uid)
		}
	}
}
