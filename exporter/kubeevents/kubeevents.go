// SPDX-License-Identifier: Apache-2.0

// Package kubeevents writes a Kubernetes Event (events.k8s.io/v1) on the pod
// of every kernel OOM kill, so that kubectl describe pod shows the kills the
// kubelet does not report: from a bounded queue, never waiting for the API.
// Kills of one kind in one container that repeat become one Event with a
// series (count, last observed), as the API intends, its count patched
// within 30 s and then at doubling intervals up to 10 minutes; new Events
// are at most a burst of 25 per pod and then one per 5 minutes (as the
// kubelet's own recorder limits a source), the rest dropped and counted;
// and the node's writes (creates and patches) at most a burst of 25 and
// then one per 10 s, whatever its pods do: a fleet's worst hour costs the
// API server at most 0.1 writes a second per node.
package kubeevents

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter/stream"
	"github.com/oomtrace/oomtrace/internal/allowance"
)

// Reasons of the Events.
const (
	// ReasonProcess: a process was OOM-killed and its container ran on
	// (the kubelet reports nothing).
	ReasonProcess = "OOMKillProcess"
	// ReasonContainer: the kill ended the container (the kubelet reports
	// OOMKilled when it was the container's init).
	ReasonContainer = "OOMKillContainer"
	// ReasonUnknown: whether the container survived could not be told.
	ReasonUnknown = "OOMKill"
	// ReasonUserspace: a user-space OOM killer (or anyone's kill -9)
	// SIGKILLed the container's processes (or, a known killer,
	// terminated them); the kubelet reports 137 Error, no OOM.
	ReasonUserspace = "UserspaceOOMKill"
	// ReasonPressure: a container's (or a pod's) memory cgroup runs short
	// before any kill: the warning (a cgroup_memory_pressure line that
	// started). Its action is ActionPressure, not "Killed".
	ReasonPressure = "ContainerMemoryPressure"
	// ActionPressure is the action of a ReasonPressure Event.
	ActionPressure = "MemoryPressure"
)

// Controller is the Events' reporting controller.
const Controller = "oomtrace"

// Limits of what the recorder sends.
const (
	queueSize = 256
	// perPodBurst Events of one pod at once, then one per perPodEvery.
	perPodBurst = 25
	perPodEvery = 5 * time.Minute
	// nodeBurst writes (creates and patches) of the node at once, then
	// one per nodeEvery: the bound of a node's Event traffic. A write
	// over it waits (a patch then carries every repeat since) and the
	// queue behind it fills and drops.
	nodeBurst   = 25
	nodeEvery   = 10 * time.Second
	attempts    = 3
	maxWarnings = 16
	warningTTL  = time.Minute
	// groupWait: the kills of one group kill follow each other within
	// milliseconds; its Event waits this long for them.
	groupWait = time.Second
	// groupChosenWait: a group's Event waits this much longer for the
	// chosen task's kill (held by the tracer until the decision is over,
	// a second after its last kill, then settled like the others).
	groupChosenWait = 10 * time.Second
	// groupsMax bounds the group kills waiting at once.
	groupsMax = 1024
	// noteMax is the API's limit on an Event's note.
	noteMax = 1024
	// nameMax, pathMax: the most of a tenant's name (process, container)
	// and cgroup path a note quotes.
	nameMax = 64
	pathMax = 256
)

// API creates Events and patches their series: a kubeapi.Client.
type API interface {
	CreateEvent(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error)
	PatchEvent(ctx context.Context, namespace, name string, patch []byte) (*eventsv1.Event, error)
}

// Recorder is a sink of OOM kills that writes them as Events.
type Recorder struct {
	api   API
	node  string
	now   func() time.Time
	retry time.Duration // first wait after a failed create; doubles
	// seriesEvery: a series' first patch comes within this; later ones
	// at doubling intervals up to seriesEveryMax.
	seriesEvery, seriesEveryMax time.Duration
	// writes is the node's allowance of writes (writeBurst at once, then
	// one per nodeEvery), the sending goroutine's own.
	writes     allowance.Bucket // the node's writes
	writeBurst float64
	nodeEvery  time.Duration
	throttled  atomic.Uint64

	// leaveEnded: no Event for a kill that ended its container (see
	// LeaveEndedContainersToKubelet); left counts them.
	leaveEnded bool
	left       atomic.Uint64

	queue   *fairQueue
	dropped atomic.Uint64
	sent    atomic.Uint64

	mu     sync.Mutex
	tokens map[types.UID]*allowance.Bucket
	// groups are the group kills whose Event waits for the rest of the
	// group's kills, by decision seq.
	groups map[uint64]*pendingGroup
	// series are the Events that repeats of their kill count in.
	series map[seriesKey]*series
	// warnings are the memory pressure warnings waiting, the newest
	// maxWarnings: written only while no kill's Event or series patch
	// waits, so that a warning never takes the node's allowance from a
	// kill (a crash-looping namespace warns at every restart), and
	// dropped after warningTTL (the kill it warned of has its own Event
	// by then, saying the pressure before it).
	warnings []op
	stop     context.CancelFunc
	done     chan struct{}
}

// pendingGroup is the Event of a memory.oom.group kill, held for groupWait
// after its first kill so that it counts the whole group: one Event per
// decision, not one per process.
type pendingGroup struct {
	kill   event.OOMKill // the task the kernel chose; until it comes, the first kill seen
	kills  int
	due    time.Time
	chosen bool // the chosen task's kill came: it carries the decision's folded kills
}

// New returns a recorder that writes through api, as this node; Start
// sends.
func New(api API, node string) *Recorder {
	return &Recorder{api: api, node: node, now: time.Now, retry: time.Second, seriesEvery: seriesEvery, seriesEveryMax: seriesEveryMax,
		writes: allowance.Bucket{Left: nodeBurst}, writeBurst: nodeBurst, nodeEvery: nodeEvery,
		queue: newFairQueue(queueSize), tokens: map[types.UID]*allowance.Bucket{}, groups: map[uint64]*pendingGroup{}, series: map[seriesKey]*series{}}
}

// LeaveEndedContainersToKubelet makes the recorder write no Event for a
// kill that ended its container (OOMKillContainer): the kubelet reports
// those as the container's OOMKilled, and may write an OOM Event of its
// own (kubernetes#136092). The kills only oomtrace sees, of a process the
// container outlived (OOMKillProcess), and those whose outcome could not
// be told (OOMKill), are still written. Call it before Start.
func (r *Recorder) LeaveEndedContainersToKubelet() { r.leaveEnded = true }

// Start sends the Events to the API server until ctx is done or Shutdown.
func (r *Recorder) Start(ctx context.Context) error {
	ctx, r.stop = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		for {
			if r.queue.len() == 0 {
				if w, ok := r.popWarning(); ok {
					if !r.writeToken(ctx) {
						return
					}
					r.send(ctx, w.create, nil)
					continue
				}
				select {
				case <-ctx.Done():
					return
				case <-r.queue.ready:
					continue
				}
			}
			// The allowance first, then the turn: a namespace whose
			// write arrived during the wait takes its turn.
			if !r.writeToken(ctx) {
				return
			}
			o, ok := r.queue.pop()
			if !ok {
				continue
			}
			if o.patch != nil {
				r.patch(ctx, o.patch)
			} else {
				r.send(ctx, o.create, o.series)
			}
		}
	}()
	return nil
}

// writeToken takes one of the node's write tokens, waiting for one if
// there is none (a write over the node's bound waits, it is not dropped);
// false when ctx ended first. Called by the sending goroutine only.
func (r *Recorder) writeToken(ctx context.Context) bool {
	waited := false
	for {
		if r.writes.Take(r.now(), r.writeBurst, r.nodeEvery) {
			return true
		}
		if !waited {
			waited = true
			r.throttled.Add(1)
		}
		wait := time.Duration((1 - r.writes.Left) * float64(r.nodeEvery))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(wait, 100*time.Millisecond)):
			// Checked again on the recorder's clock.
		}
	}
}

// flushGroups queues the Events of the group kills that waited long
// enough, and comes back for the others: a timer runs only while a group
// kill waits, so an idle agent is never woken for them.
func (r *Recorder) flushGroups() {
	now := r.now()
	r.mu.Lock()
	var ready []*pendingGroup
	for seq, g := range r.groups {
		if g.ready(now) {
			ready = append(ready, g)
			delete(r.groups, seq)
		}
	}
	if len(r.groups) > 0 {
		time.AfterFunc(groupWait/4, r.flushGroups)
	}
	r.mu.Unlock()
	for _, g := range ready {
		reason, note := describeGroup(g.kill, g.kills)
		r.enqueue(op{create: r.newEvent(g.kill, reason, note)})
	}
}

// send creates ev, trying again a few times on errors (an API server
// restarting), never on the API's refusal of the Event itself; then it is
// dropped and counted. s, if not nil, is the series ev starts.
func (r *Recorder) send(ctx context.Context, ev *eventsv1.Event, s *series) {
	wait := r.retry
	for i := 0; i < attempts; i++ {
		if i > 0 && !r.writeToken(ctx) {
			break // a retry is a write too
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		made, err := r.api.CreateEvent(cctx, ev)
		cancel()
		if err == nil {
			r.sent.Add(1)
			if made == nil || made.Name == "" {
				made = ev
			}
			r.created(s, made)
			return
		}
		if permanent(err) {
			break
		}
		select {
		case <-ctx.Done():
			r.dropped.Add(1)
			r.endSeries(s)
			return
		case <-time.After(wait):
			wait *= 2
		}
	}
	r.dropped.Add(1)
	r.endSeries(s)
}

// Shutdown stops sending; Events not sent yet are dropped.
func (r *Recorder) Shutdown() {
	if r.stop != nil {
		r.stop()
		<-r.done
	}
	r.mu.Lock()
	r.dropped.Add(uint64(len(r.groups)))
	clear(r.groups)
	r.mu.Unlock()
}

// Sent counts the Events created or their series updated.
func (r *Recorder) Sent() uint64 { return r.sent.Load() }

// Dropped counts the Events given up on (the queue or the pod's allowance
// full, or the API failing or refusing).
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// Write records an Event for an OOM kill in a named pod; other events and
// kills of unnamed pods are ignored. It never waits for the API.
func (r *Recorder) Write(ev event.Event) error {
	if uk, ok := ev.(event.UserspaceKill); ok {
		r.userspaceKill(uk)
		return nil
	}
	if cp, ok := ev.(event.CgroupPressure); ok {
		r.pressure(cp)
		return nil
	}
	kill, ok := ev.(event.OOMKill)
	if !ok {
		return nil
	}
	pod := kill.Victim.Pod
	if pod == nil || pod.Name == "" || pod.Namespace == "" {
		return nil
	}
	if r.leaveEnded && reasonOf(kill) == ReasonContainer {
		r.left.Add(1)
		return nil
	}
	if g := kill.OOM.Group; g != nil && r.joinGroup(kill, g) {
		return nil
	}
	if kill.OOM.Group == nil && r.repeat(kill) {
		return nil
	}
	if !r.allow(types.UID(pod.UID)) {
		r.dropped.Add(1)
		return nil
	}
	if g := kill.OOM.Group; g != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if pending := r.groups[g.DecisionSeq]; pending != nil {
			pending.add(kill, g) // came meanwhile
			return nil
		}
		if len(r.groups) >= groupsMax {
			r.dropped.Add(1)
			return nil
		}
		if len(r.groups) == 0 {
			time.AfterFunc(groupWait, r.flushGroups)
		}
		r.groups[g.DecisionSeq] = &pendingGroup{kill: kill, kills: 1 + int(min(g.Folded, maxFolded)), due: r.now().Add(groupWait), chosen: g.Chosen}
		return nil
	}
	reason, note := Describe(kill)
	e := r.newEvent(kill, reason, note)
	r.enqueue(op{create: e, series: r.startSeries(kill, reason, e)})
	return nil
}

// joinGroup counts kill in its group's pending Event, if there is one.
func (r *Recorder) joinGroup(kill event.OOMKill, g *event.GroupKill) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	pending := r.groups[g.DecisionSeq]
	if pending == nil {
		return false
	}
	pending.add(kill, g)
	return true
}

// add counts kill in the group. Kills may come out of order (a container's
// kill waits for its check): the Event describes the task the kernel chose.
func (p *pendingGroup) add(kill event.OOMKill, g *event.GroupKill) {
	p.kills += 1 + int(min(g.Folded, maxFolded))
	if g.Chosen {
		p.kill, p.chosen = kill, true
	}
}

// ready says whether the group's Event is due: its kills have had
// groupWait to come, and the chosen task's among them, which the tracer
// hands on last, once the decision is over; without it (its record lost)
// after groupChosenWait.
func (p *pendingGroup) ready(now time.Time) bool {
	return !now.Before(p.due) && (p.chosen || !now.Before(p.due.Add(groupChosenWait)))
}

// maxFolded bounds the kills one line may add to a group's count.
const maxFolded = 1 << 30

// enqueue queues o behind the writes of its namespace; when that
// namespace's share of the queue is full, o is dropped and counted.
func (r *Recorder) enqueue(o op) {
	ns := ""
	switch {
	case o.create != nil:
		ns = o.create.Namespace
	case o.patch != nil:
		ns = o.patch.namespace
	}
	displaced, ok := r.queue.push(ns, o)
	if !ok {
		r.dropOp(o)
	}
	if displaced != nil {
		r.dropOp(*displaced)
	}
}

// dropOp counts a write that will not be made; a series' patch may be
// queued again by its next repeat, and a series whose Event is dropped
// ends.
func (r *Recorder) dropOp(o op) {
	r.dropped.Add(1)
	switch {
	case o.patch != nil:
		r.mu.Lock()
		o.patch.queued = false
		r.mu.Unlock()
	case o.series != nil:
		r.endSeries(o.series)
	}
}

// userspaceKill records a user-space kill of a named pod's processes: one
// Event a kill, within the pod's allowance.
func (r *Recorder) userspaceKill(k event.UserspaceKill) {
	if len(k.Victims) == 0 {
		return
	}
	pod := k.Victims[0].Pod
	if pod == nil || pod.Name == "" || pod.Namespace == "" {
		return
	}
	if !r.allow(types.UID(pod.UID)) {
		r.dropped.Add(1)
		return
	}
	r.enqueue(op{create: r.newPodEvent(pod, k.Time.Time, ReasonUserspace, DescribeUserspaceKill(k))})
}

// pressure writes a warning Event on the pod whose cgroup's episode of
// memory pressure started.
func (r *Recorder) pressure(p event.CgroupPressure) {
	if p.State != event.PressureStarted || p.Pod == nil || p.Pod.Name == "" || p.Pod.Namespace == "" {
		return
	}
	if !r.allow(types.UID(p.Pod.UID)) {
		r.dropped.Add(1)
		return
	}
	ev := r.newPodEvent(p.Pod, p.Time.Time, ReasonPressure, DescribePressure(p))
	ev.Action = ActionPressure
	r.mu.Lock()
	if len(r.warnings) == maxWarnings {
		r.dropped.Add(1)
		r.warnings = r.warnings[1:]
	}
	r.warnings = append(r.warnings, op{create: ev})
	r.mu.Unlock()
	select {
	case r.queue.ready <- struct{}{}:
	default:
	}
}

// popWarning takes the oldest warning not yet stale.
func (r *Recorder) popWarning() (op, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.warnings) > 0 {
		w := r.warnings[0]
		r.warnings = r.warnings[1:]
		if r.now().Sub(w.create.EventTime.Time) <= warningTTL {
			return w, true
		}
		r.dropped.Add(1)
	}
	return op{}, false
}

// newEvent is the Event of kill in its pod.
func (r *Recorder) newEvent(kill event.OOMKill, reason, note string) *eventsv1.Event {
	return r.newPodEvent(kill.Victim.Pod, kill.Time.Time, reason, note)
}

// newPodEvent is an Event on pod of a kill at at.
func (r *Recorder) newPodEvent(pod *event.Pod, at time.Time, reason, note string) *eventsv1.Event {
	note = event.BoundText(note, noteMax)
	if at.IsZero() {
		at = r.now()
	}
	return &eventsv1.Event{
		// As client-go names them: the object, and the time in hex.
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", pod.Name, at.UnixNano()), Namespace: pod.Namespace},
		EventTime:           metav1.NewMicroTime(at),
		ReportingController: Controller,
		// The node, not the pod oomtrace runs in: the kills are the node's.
		ReportingInstance: reportingInstance(r.node),
		Action:            "Killed",
		Reason:            reason,
		Regarding:         corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: types.UID(pod.UID)},
		Note:              note,
		Type:              corev1.EventTypeWarning,
	}
}

// allow takes one of the pod's tokens, if it has one left.
func (r *Recorder) allow(uid types.UID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	b := r.tokens[uid]
	if b == nil {
		b = &allowance.Bucket{Left: perPodBurst}
		r.tokens[uid] = b
	}
	// Pods long quiet are full again: forget them.
	for u, o := range r.tokens {
		if u != uid && now.Sub(o.At()) > perPodBurst*perPodEvery {
			delete(r.tokens, u)
		}
	}
	return b.Take(now, perPodBurst, perPodEvery)
}

// Describe is the reason and the note of a kill's Event: who was killed,
// in which container, at which limit, how much it held, and whether the
// container survived. What a tenant names (its process, its container,
// its cgroups) is bounded and stripped of control characters: a note is
// read in a terminal (kubectl describe).
func Describe(k event.OOMKill) (reason, note string) {
	v := k.Victim
	container := "its container"
	if v.Container != nil && v.Container.Name != "" {
		container = "container " + event.BoundText(v.Container.Name, nameMax)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Process %s (pid %d", event.BoundText(v.Comm, nameMax), v.TGID)
	if v.NSPID != nil && *v.NSPID != v.TGID {
		fmt.Fprintf(&b, ", %d in the container", *v.NSPID)
	}
	b.WriteString(")")
	if v.Init != nil && *v.Init {
		b.WriteString(", the container's init,")
	}
	in := container
	if v.Pod != nil && v.Pod.Owner != nil {
		in += fmt.Sprintf(" (%s %s)", event.BoundText(v.Pod.Owner.Kind, nameMax), event.BoundText(v.Pod.Owner.Name, nameMax))
	}
	fmt.Fprintf(&b, " was OOM-killed in %s at %s", in, limitHit(k))
	if v.RSS != nil {
		fmt.Fprintf(&b, "; it held %s (anon %s, file %s, shmem %s)", stream.Bytes(v.RSS.Anon+v.RSS.File+v.RSS.Shmem), stream.Bytes(v.RSS.Anon), stream.Bytes(v.RSS.File), stream.Bytes(v.RSS.Shmem))
		if v.RSS.Swap != nil && *v.RSS.Swap > 0 {
			fmt.Fprintf(&b, " and %s swapped out", stream.Bytes(*v.RSS.Swap))
		}
	}
	if d := k.OOM.Domain; d != nil && d.SwapUsageBytes != nil && *d.SwapUsageBytes > 0 {
		fmt.Fprintf(&b, "; the limit's cgroup had %s in swap", stream.Bytes(*d.SwapUsageBytes))
		if d.SwapLimitBytes != nil {
			fmt.Fprintf(&b, " of its %s swap limit", stream.Bytes(*d.SwapLimitBytes))
		}
	}
	if k.OOM.ForcedBy == event.ForcedByLimitWrite {
		fmt.Fprintf(&b, "; the limit had just been lowered below the usage (%s wrote memory.max)", event.BoundText(k.Trigger.Comm, nameMax))
	}
	if p := k.Pressure; p != nil {
		fmt.Fprintf(&b, "; it had been under memory pressure for %.0f s first (%s", p.DurationSeconds, strings.Join(p.Reasons, ", "))
		if p.MaxEvents > 0 {
			fmt.Fprintf(&b, ", %d charges at the limit", p.MaxEvents)
		}
		if p.HighEvents > 0 {
			fmt.Fprintf(&b, ", %d over memory.high", p.HighEvents)
		}
		if p.StallSeconds > 0 {
			fmt.Fprintf(&b, ", stalled %.1f s", p.StallSeconds)
		}
		b.WriteString(")")
	}
	reason = reasonOf(k)
	switch reason {
	case ReasonProcess:
		fmt.Fprintf(&b, ". %s runs on: the kubelet does not report this kill.", upper(container))
	case ReasonContainer:
		fmt.Fprintf(&b, ". The kill ended %s.", container)
	default:
		b.WriteString(".")
	}
	return reason, b.String()
}

// DescribePressure is the note of a cgroup's episode of memory pressure:
// whose, how full of what, and how soon at the limit.
func DescribePressure(p event.CgroupPressure) string {
	var b strings.Builder
	if p.Container != nil && p.Container.Name != "" {
		fmt.Fprintf(&b, "Container %s", event.BoundText(p.Container.Name, nameMax))
	} else {
		b.WriteString("The pod's memory cgroup")
	}
	m := p.Memory
	b.WriteString(" is running short of memory before any kill: ")
	working := m.UsageBytes - min(m.FileBytes, m.UsageBytes)
	fmt.Fprintf(&b, "%s it cannot reclaim", stream.Bytes(working))
	if m.LimitBytes != nil {
		fmt.Fprintf(&b, " of its %s limit", stream.Bytes(*m.LimitBytes))
	}
	fmt.Fprintf(&b, " (page cache %s)", stream.Bytes(m.FileBytes))
	if m.SecondsToLimit != nil {
		fmt.Fprintf(&b, ", at the limit in about %.0f s at its pace", *m.SecondsToLimit)
	}
	for _, r := range p.Episode.Reasons {
		switch r {
		case event.PressureAboveHigh:
			if m.HighBytes != nil {
				fmt.Fprintf(&b, "; over its memory.high of %s %d times (throttled)", stream.Bytes(*m.HighBytes), p.Episode.HighEvents)
			}
		case event.PressureStalling:
			if m.Pressure != nil {
				fmt.Fprintf(&b, "; its tasks stalled on memory %.0f%% of the last 10 s", m.Pressure.SomeAvg10)
			}
		}
	}
	b.WriteString(". The kernel OOM-kills in it when a charge finds nothing left to reclaim.")
	return b.String()
}

// DescribeUserspaceKill is the note of a user-space kill's Event: the
// killer, how it killed, whom, and the cgroup's memory at that moment.
func DescribeUserspaceKill(k event.UserspaceKill) string {
	v := k.Victims[0]
	var b strings.Builder
	fmt.Fprintf(&b, "Process %s (pid %d)", event.BoundText(v.Comm, nameMax), v.TGID)
	if k.VictimCount > 1 {
		fmt.Fprintf(&b, " and %d more", k.VictimCount-1)
	}
	container := "its container"
	if v.Container != nil && v.Container.Name != "" {
		container = "container " + event.BoundText(v.Container.Name, nameMax)
	}
	verb := "was"
	if k.VictimCount > 1 {
		verb = "were"
	}
	how := "SIGKILLed"
	if k.Signal == "SIGTERM" {
		how = "terminated (SIGTERM)"
	}
	fmt.Fprintf(&b, " of %s %s %s by ", container, verb, how)
	if k.KnownKiller != "" {
		fmt.Fprintf(&b, "the user-space OOM killer %s (", event.BoundText(k.KnownKiller, nameMax))
	} else {
		b.WriteString("a process in user space (")
	}
	fmt.Fprintf(&b, "%s, pid %d", event.BoundText(k.Killer.Comm, nameMax), k.Killer.TGID)
	if k.Killer.Unit != "" {
		fmt.Fprintf(&b, ", unit %s", event.BoundText(k.Killer.Unit, nameMax))
	}
	if k.Method == event.MethodCgroupKill {
		b.WriteString(", through cgroup.kill")
	}
	b.WriteString("), not by the kernel's OOM killer nor the kubelet")
	if m := k.Memory; m != nil {
		fmt.Fprintf(&b, "; the cgroup used %s", stream.Bytes(m.UsageBytes))
		if m.LimitBytes != nil {
			fmt.Fprintf(&b, " of %s", stream.Bytes(*m.LimitBytes))
		}
		if m.SwapBytes != nil && *m.SwapBytes > 0 {
			fmt.Fprintf(&b, " and %s of swap", stream.Bytes(*m.SwapBytes))
		}
		if p := m.Pressure; p != nil {
			fmt.Fprintf(&b, ", its tasks stalled on memory %.0f%% (some) and %.0f%% (full) of the last 10 s", p.SomeAvg10, p.FullAvg10)
		}
	}
	if k.Signal == "SIGTERM" {
		b.WriteString(". The kubelet reports no OOM kill.")
	} else {
		b.WriteString(". The container ends 137 Error, not OOMKilled.")
	}
	return b.String()
}

// reasonOf is the reason of a kill's Event: whether its container ran on.
func reasonOf(k event.OOMKill) string {
	switch {
	case k.ContainerSurvived != nil && *k.ContainerSurvived:
		return ReasonProcess
	case k.ContainerSurvived != nil:
		return ReasonContainer
	}
	return ReasonUnknown
}

// describeGroup is the reason and note of a memory.oom.group kill's one
// Event: the first kill (the task the kernel chose) as Describe says it,
// and how many processes the decision killed with it.
func describeGroup(first event.OOMKill, kills int) (reason, note string) {
	reason, note = Describe(first)
	g := first.OOM.Group
	where := "its cgroup"
	if g != nil && g.Cgroup.Path != "" {
		where = "cgroup " + event.BoundText(g.Cgroup.Path, pathMax)
	}
	if v := first.Victim; v.Container != nil && v.Container.Name != "" && v.Memcg != nil && g != nil && g.Cgroup.ID == v.Memcg.ID {
		where = "container " + event.BoundText(v.Container.Name, nameMax)
	}
	processes := "process"
	if kills != 1 {
		processes = "processes"
	}
	return reason, fmt.Sprintf("%s One decision of the kernel (memory.oom.group of %s) killed %d %s.", note, where, kills, processes)
}

// limitHit names the limit of the kill's OOM domain.
func limitHit(k event.OOMKill) string {
	d := k.OOM.Domain
	if d == nil {
		return "an unknown limit"
	}
	var what string
	switch d.Kind {
	case event.DomainContainer:
		what = "the container's memory limit"
		if d.LimitSource == event.LimitFromPodSpec {
			what = "the pod-level memory limit (spec.resources)"
			if d.LimitBytes > 0 {
				what += " of " + stream.Bytes(d.LimitBytes)
			}
			return what + ", which the container has as its own"
		}
	case event.DomainPod:
		what = "the pod's memory limit"
		if pod := k.Victim.Pod; pod != nil {
			switch d.LimitSource {
			case event.LimitFromPodSpec:
				what = "the pod-level memory limit (spec.resources)"
			case event.LimitFromContainers:
				if c := k.Victim.Container; c != nil && c.Name != "" && c.MemoryLimitBytes != nil && pod.ContainersMemoryLimitBytes != nil && *c.MemoryLimitBytes == *pod.ContainersMemoryLimitBytes {
					// Its only limit: the container's, which the pod cgroup
					// (the container and its sandbox) reaches first.
					what = "container " + event.BoundText(c.Name, nameMax) + "'s memory limit"
				} else {
					what = "the sum of its containers' memory limits"
				}
				if d.LimitBytes > 0 {
					what += " of " + stream.Bytes(d.LimitBytes)
				}
				return what + ", enforced on the pod cgroup"
			}
		}
	case event.DomainAllocatable:
		what = "the node's allocatable memory (the kubepods cgroup's limit)"
	case event.DomainSystem:
		return "the node's memory (a system-wide OOM)"
	default:
		if d.Cgroup != nil {
			what = "the memory limit of cgroup " + event.BoundText(d.Path, pathMax)
		} else {
			what = "a cpuset or memory policy"
		}
	}
	if d.LimitBytes > 0 {
		what += " of " + stream.Bytes(d.LimitBytes)
	}
	return what
}

func upper(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
