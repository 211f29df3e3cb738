// SPDX-License-Identifier: Apache-2.0

// Package pipeline is the stage between the tracer and the outputs: it
// names the containers and pods of every event, adds the node's memory
// signals, classifies and correlates kernel kills with kubelet evictions,
// reads what a kill's domain held and whether a killed process's container
// survived, counts every event in the metrics, and writes out what the
// filter keeps. It owns a kill's whole way out: its inbox, its outbox, and
// the one acknowledgement that lets the kernel's record of it go.
package pipeline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cause"
	"github.com/oomtrace/oomtrace/internal/correlate"
	"github.com/oomtrace/oomtrace/internal/enrich"
	"github.com/oomtrace/oomtrace/internal/nodememory"
	"github.com/oomtrace/oomtrace/internal/postmortem"
	"github.com/oomtrace/oomtrace/internal/refusalfold"
	"github.com/oomtrace/oomtrace/internal/userkill"
)

// Sink takes events out of the process: JSON lines or text on a stream,
// the metrics, the API's Events.
type Sink interface {
	Write(event.Event) error
}

// Options configure a Pipeline.
type Options struct {
	// Enricher names containers and pods (through the container runtime,
	// which may wait: hence the pipeline's own queue).
	Enricher *enrich.Enricher
	// Sampler reads the node's memory signals; nil when they cannot be
	// read. SampleEvery is its interval.
	Sampler     *nodememory.Sampler
	SampleEvery time.Duration
	// CorrelationWindow: a kill and an eviction of one pod this close
	// point to each other (0: correlate.DefaultWindow).
	CorrelationWindow time.Duration
	Filter            Filter
	// Metrics receives every event, before the filter, and must not
	// block.
	Metrics Sink
	// Out receives what the filter keeps, from a queue of its own: it
	// may block (a slow reader of stdout) without stalling the stage.
	Out Sink
	// OutFailed, if set, is called once with Out's first error; nothing
	// is written after it.
	OutFailed func(error)
	// KubeEvents receives every OOM kill in a pod once settled, before
	// the filter (it writes them to the API on their pods); nil: none.
	KubeEvents Sink
	// ContainerCheckDelay holds the kills of containers' processes this
	// long, then ContainerAlive says whether the container (its cgroup
	// path in the memory hierarchy) survived. 0 or a nil ContainerAlive:
	// no check, no delay.
	ContainerCheckDelay time.Duration
	ContainerAlive      func(path string) (bool, error)
	// PostMortem reads what a kill's domain held, first thing when the
	// kill comes in; nil: none.
	PostMortem *postmortem.Reader
	// QueueSize bounds the events waiting for the stage, and those
	// waiting for Out.
	QueueSize int
	// Owners, if set, names the workload of a pod by uid (the cluster
	// view's pod cache); nil: no owners.
	Owners func(uid string) *event.PodOwner
	// RefusalFolder, if set, bounds the refusal lines of each cgroup (the
	// metrics count every refusal first): the lines it holds come out
	// folded at the end of their window.
	RefusalFolder *refusalfold.Folder
	// KillerMemcg, if set, reads a live process's memory cgroup (the
	// host's procfs): a SIGKILL from a pod's own process, or a service's
	// to its children, is not a user-space kill. nil: not judged so.
	KillerMemcg func(pid uint32) *event.Cgroup
	// CgroupSwap, if set, reads a memory cgroup's swap use (a user-space
	// kill's victims', beside the usage, limit and pressure the signal's
	// record has from the kernel); nil when it has none.
	CgroupSwap func(memcg *event.Cgroup) *uint64
	// PressureEpisode, if set, is the episode of memory pressure a
	// cgroup was in (internal/memwatch), nil for none: a kill carries its
	// victim's cgroup's, else its domain's.
	PressureEpisode func(path string) *event.PressureEpisode
}

// Pipeline takes events from the sources (the tracer, the node memory
// sampler, the cluster view) without ever making them wait, runs them
// through the stage on a goroutine of its own, and writes them out from
// another.
type Pipeline struct {
	inbox  *queue
	outbox *queue
	stage  *stage
}

// New starts a pipeline; ctx bounds the container runtime's lookups.
func New(ctx context.Context, o Options) *Pipeline {
	s := &stage{ctx: ctx, enricher: o.Enricher, sampler: o.Sampler, sampleEvery: o.SampleEvery,
		correlator: correlate.New(o.CorrelationWindow), filter: o.Filter, metrics: o.Metrics, owners: o.Owners}
	if s.enricher == nil {
		s.enricher = &enrich.Enricher{}
	}
	if o.ContainerCheckDelay > 0 && o.ContainerAlive != nil {
		s.settler = &settler{delay: o.ContainerCheckDelay, alive: o.ContainerAlive, done: func(ev event.OOMKill) { _ = s.finishKill(ev) }}
	}
	s.kubeEvents, s.postmortem, s.folder, s.pressureEpisode = o.KubeEvents, o.PostMortem, o.RefusalFolder, o.PressureEpisode
	s.signalSwap = &signalSwap{read: o.CgroupSwap, now: time.Now}
	s.userKills.KillerMemcg, s.userKills.Swap = o.KillerMemcg, s.signalSwap.at
	outbox := newQueue(acking{o.Out, s.acknowledge}, o.QueueSize, o.OutFailed).OnFull(s.droppedFromOutbox)
	s.out = outbox
	return &Pipeline{inbox: newQueue(s, o.QueueSize, nil).OnFull(s.droppedFromInbox), outbox: outbox, stage: s}
}

// Write queues an event for the stage; it never blocks (a full queue
// drops the event and counts it).
func (p *Pipeline) Write(ev event.Event) { p.inbox.put(ev) }

// OOMKill queues a kill from the tracer; it never blocks. commit (nil:
// none) lets the kernel's record of the kill go: the pipeline calls it
// once, when it is done with the kill for good (written out, kept out by
// the filter, or dropped from a full queue). A kill the output failed to
// write, or that a stop gave up on, is not committed: it stays in the
// kernel's record for the next oomtrace.
func (p *Pipeline) OOMKill(ev event.OOMKill, commit func()) {
	p.stage.commits.hold(ev.Seq, commit)
	p.inbox.put(ev)
}

// CommitRefusal queues a refusal from the tracer; it never blocks.
func (p *Pipeline) CommitRefusal(ev event.CommitRefusal) { p.inbox.put(ev) }

// Signal remembers a SIGTERM or SIGKILL to a pod's process for the pod's
// eviction, and queues a SIGKILL that may be a user-space kill for the
// stage; it never waits (safe in the ring buffer reader).
func (p *Pipeline) Signal(ev event.TaskSignal) {
	p.stage.correlator.Signal(ev)
	if userkill.Candidate(ev) {
		p.stage.signalSwap.remember(ev.Target.Memcg)
		p.inbox.put(ev)
	}
}

// Close stops taking events and waits up to timeout for the queued ones to
// go through the stage, settles the kills still held, and waits up to
// timeout again for the output; false when it gave up on some.
func (p *Pipeline) Close(timeout time.Duration) bool {
	ok := p.inbox.Close(timeout)
	p.stage.settler.close()
	p.stage.flushFolds(true)
	p.stage.flushUserKills(true)
	return p.outbox.Close(timeout) && ok
}

// Dropped is how many events were never written out: a queue was full,
// the output had failed, or a stop gave up on them.
func (p *Pipeline) Dropped() uint64 { return p.inbox.Dropped() + p.outbox.Dropped() }

// Written is how many events were written out.
func (p *Pipeline) Written() uint64 { return p.outbox.Written() }

// DroppedKills is how many OOM kills a full queue dropped: counted in the
// metrics, written to no output (no line, no Event).
func (p *Pipeline) DroppedKills() uint64 { return p.stage.droppedKills.Load() }

// Filtered is how many events the filter kept from the output.
func (p *Pipeline) Filtered() uint64 { return p.stage.filtered.Load() }

// OutErr is the output's first error, if any.
func (p *Pipeline) OutErr() error { return p.outbox.Err() }

// stage attributes, classifies, correlates, counts and filters one event
// at a time.
type stage struct {
	ctx         context.Context
	enricher    *enrich.Enricher
	sampler     *nodememory.Sampler // nil when the node's signals cannot be read
	sampleEvery time.Duration
	correlator  *correlate.Correlator
	filter      Filter
	metrics     Sink
	out         Sink
	kubeEvents  Sink     // nil: none
	settler     *settler // nil: kills are not held
	postmortem  *postmortem.Reader
	commits     commits
	// pressureEpisode: see Options.PressureEpisode; nil: none.
	pressureEpisode func(path string) *event.PressureEpisode
	owners          func(uid string) *event.PodOwner // nil: none
	filtered        atomic.Uint64
	droppedKills    atomic.Uint64
	folder          *refusalfold.Folder // nil: every refusal line goes out
	foldTimer       dueTimer            // while folded lines wait
	userKills       userkill.Gatherer
	signalSwap      *signalSwap
	userTimer       dueTimer // while user-space kills are gathered
}

// dueTimer runs a flush once something is due, and only while something
// waits: an idle agent is never woken for it.
type dueTimer struct {
	mu    sync.Mutex
	timer *time.Timer
}

// arm makes sure flush runs once after has passed (at least a
// millisecond); a flush already armed stands.
func (d *dueTimer) arm(after time.Duration, flush func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer == nil {
		d.timer = time.AfterFunc(max(after, time.Millisecond), flush)
	}
}

// disarm stops the armed flush, if any: the flush runs now, or has.
func (d *dueTimer) disarm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// Write runs one event through the stage.
func (s *stage) Write(ev event.Event) error {
	switch ev := ev.(type) {
	case event.OOMKill:
		// Before anything that may wait (the runtime's lookups): the
		// domain's memory moves on after the kill.
		ev.PostMortem = s.postmortem.Read(&ev)
		s.enricher.OOMKill(s.ctx, &ev)
		s.owner(ev.Victim.Pod)
		s.owner(ev.Trigger.Pod)
		ev.NodeMemory = s.nodeMemory()
		ev.Pressure = s.pressure(ev)
		cause.Classify(&ev)
		s.correlator.OOMKill(&ev)
		if s.settler.hold(ev) {
			return nil
		}
		return s.finishKill(ev)
	case event.CommitRefusal:
		s.enricher.CommitRefusal(s.ctx, &ev)
		s.owner(ev.Process.Pod)
		ev.NodeMemory = s.nodeMemory()
		s.count(ev)
		if s.folder != nil && !s.folder.Pass(ev) {
			s.armFolds(refusalfold.DefaultWindow)
			return nil
		}
		return s.output(ev, s.filter.CommitRefusal(ev))
	case event.Eviction:
		s.eviction(&ev)
		return s.pass(ev, s.filter.Process(event.Process{Pod: &ev.Pod}))
	case event.CgroupPressure:
		p := event.Process{Memcg: &ev.Memcg}
		s.enricher.Process(s.ctx, &p, ev.Time.Time)
		ev.Container, ev.Pod, ev.Unit = p.Container, p.Pod, p.Unit
		s.owner(ev.Pod)
		if s.kubeEvents != nil && ev.Pod != nil && ev.State == event.PressureStarted {
			_ = s.kubeEvents.Write(ev)
		}
		return s.pass(ev, s.filter.Process(p))
	case event.TaskSignal:
		if next := s.userKills.Add(ev); !next.IsZero() {
			s.userTimer.arm(time.Until(next), func() { s.flushUserKills(false) })
		}
		return nil
	}
	// Node-level events: no pod to filter on.
	return s.pass(ev, true)
}

// pass counts ev in the metrics and writes it out if the filter keeps it.
func (s *stage) pass(ev event.Event, keep bool) error {
	s.count(ev)
	return s.output(ev, keep)
}

func (s *stage) count(ev event.Event) {
	if s.metrics != nil {
		_ = s.metrics.Write(ev)
	}
}

// armFolds makes sure the folded refusal lines waiting are handed out
// once after has passed.
func (s *stage) armFolds(after time.Duration) {
	s.foldTimer.arm(after, func() { s.flushFolds(false) })
}

// flushFolds writes the folded refusal lines that are due (every one
// with all), counted in the metrics already, and comes back for the
// next.
func (s *stage) flushFolds(all bool) {
	if s.folder == nil {
		return
	}
	s.foldTimer.disarm()
	due, next := s.folder.Due(all)
	for _, ev := range due {
		_ = s.output(ev, s.filter.CommitRefusal(ev))
	}
	if !next.IsZero() {
		s.armFolds(time.Until(next))
	}
}

// flushUserKills names the user-space kills gathered long enough (every
// one with all), drops those by the victims' own processes, and counts,
// filters and writes the rest, on the timer's goroutine (as folded
// refusals are).
func (s *stage) flushUserKills(all bool) {
	s.userTimer.disarm()
	due, next := s.userKills.Due(all)
	for _, k := range due {
		if k.Killer.Memcg != nil && userkill.Own(k, k.Killer.Memcg.Path) {
			continue
		}
		s.enricher.Process(s.ctx, &k.Killer, k.Time.Time)
		for i := range k.Victims {
			s.enricher.Process(s.ctx, &k.Victims[i], k.Time.Time)
			s.owner(k.Victims[i].Pod)
		}
		k.KnownKiller = userkill.KnownKiller(k.Killer)
		if s.kubeEvents != nil && k.Victims[0].Pod != nil {
			_ = s.kubeEvents.Write(k)
		}
		_ = s.pass(k, s.filter.Process(k.Victims[0]))
	}
	if !next.IsZero() {
		s.userTimer.arm(time.Until(next), func() { s.flushUserKills(false) })
	}
}

// finishKill counts a kill, settled or not held, in the metrics and hands
// it to the API's Events and to the output. It runs on the stage's
// goroutine or the settler's.
func (s *stage) finishKill(ev event.OOMKill) error {
	s.nameLate(&ev)
	s.count(ev)
	if s.kubeEvents != nil && ev.Victim.Pod != nil {
		_ = s.kubeEvents.Write(ev)
	}
	return s.output(ev, s.filter.OOMKill(ev))
}

func (s *stage) output(ev event.Event, keep bool) error {
	if !keep {
		s.filtered.Add(1)
		s.acknowledge(ev)
		return nil
	}
	return s.out.Write(ev)
}

// droppedFromInbox: the stage is too far behind to take ev. It is still
// counted in the metrics, as it is (not named: the stage names), so that
// no kill is missing from oomtrace_oom_kills_total; a kill is counted as
// dropped and acknowledged. It runs on the writer's goroutine (the
// tracer's reader): the metrics never block.
func (s *stage) droppedFromInbox(ev event.Event) {
	s.count(ev)
	s.droppedFromOutbox(ev)
}

// droppedFromOutbox: the output is too far behind to take ev, counted in
// the metrics already.
func (s *stage) droppedFromOutbox(ev event.Event) {
	if _, ok := ev.(event.OOMKill); ok {
		s.droppedKills.Add(1)
	}
	s.acknowledge(ev)
}

// acknowledge tells the kernel's side that a kill is done with.
func (s *stage) acknowledge(ev event.Event) {
	if kill, ok := ev.(event.OOMKill); ok {
		s.commits.release(kill.Seq)
	}
}

// commits holds each kill's commit from when the tracer hands the kill
// over until the stage is done with it: the kill carries the one way to
// let its kernel record go, and nothing else can.
type commits struct {
	mu sync.Mutex
	m  map[uint64]func()
}

func (c *commits) hold(seq uint64, commit func()) {
	if commit == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[uint64]func(){}
	}
	c.m[seq] = commit
}

// release calls the commit of kill seq, once.
func (c *commits) release(seq uint64) {
	c.mu.Lock()
	commit := c.m[seq]
	delete(c.m, seq)
	c.mu.Unlock()
	if commit != nil {
		commit()
	}
}

// acking is the output: it acknowledges every kill it wrote.
type acking struct {
	Sink
	ack func(event.Event)
}

func (a acking) Write(ev event.Event) error {
	if err := a.Sink.Write(ev); err != nil {
		return err
	}
	a.ack(ev)
	return nil
}

// owner names the workload of pod, if known.
// nameLate asks again for the name of a container that had none at the
// kill: a container killed in its first second is not yet in the
// kubelet's pod status, which names containers where the runtime does
// not; after the settle delay it is. Its pod's owner likewise.
func (s *stage) nameLate(ev *event.OOMKill) {
	if c := ev.Victim.Container; c == nil || c.Name != "" || s.enricher.Resolver == nil {
		return
	}
	s.enricher.OOMKill(s.ctx, ev)
	s.owner(ev.Victim.Pod)
	s.owner(ev.Trigger.Pod)
}

func (s *stage) owner(pod *event.Pod) {
	if pod != nil && pod.Owner == nil && pod.UID != "" && s.owners != nil {
		pod.Owner = s.owners(pod.UID)
	}
}

// pressure is the episode of memory pressure before the kill: its
// victim's cgroup's, else its domain's; nil for none.
func (s *stage) pressure(ev event.OOMKill) *event.PressureEpisode {
	if s.pressureEpisode == nil {
		return nil
	}
	if m := ev.Victim.Memcg; m != nil && !m.PathTruncated {
		if ep := s.pressureEpisode(m.Path); ep != nil {
			return ep
		}
	}
	if d := ev.OOM.Domain; d != nil && d.Cgroup != nil && !d.PathTruncated {
		return s.pressureEpisode(d.Path)
	}
	return nil
}

func (s *stage) nodeMemory() *event.NodeMemory {
	if s.sampler == nil {
		return nil
	}
	if nm, ok := s.sampler.Sample(); ok {
		return &nm
	}
	return nil
}

// eviction adds the node's memory at the kubelet's decision, the pod's
// earlier kills and the kernel's view of its stop.
func (s *stage) eviction(ev *event.Eviction) {
	if s.sampler != nil {
		// The kubelet's observation can be up to a housekeeping interval
		// (10 s) older than its decision; the API time drops the second's
		// fraction, and a sample can come one interval late.
		if nm, ok := s.sampler.Decided(ev.Time.Time, 10*time.Second, time.Second+s.sampleEvery); ok {
			ev.NodeMemory = &nm
		}
	}
	s.correlator.Eviction(ev)
	// The correlator knows container ids; the runtime names them, else the
	// API's container statuses (an evicted pod's containers can be gone
	// from the runtime before it was ever listed).
	byID := map[string]string{}
	for _, ce := range ev.ContainerExits {
		if ce.ContainerID != "" {
			byID[ce.ContainerID] = ce.Name
		}
	}
	for i := range ev.KernelSignals {
		sig := &ev.KernelSignals[i]
		switch name, sandbox := s.enricher.Container(s.ctx, sig.Container, sig.Time.Time); {
		case sandbox:
			// The pod's pause process: its id names no container.
			sig.Container, sig.Sandbox = "", true
		case name != "":
			sig.Container = name
		case byID[sig.Container] != "":
			sig.Container = byID[sig.Container]
		}
	}
}
