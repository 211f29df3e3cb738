package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter"
	"github.com/oomtrace/oomtrace/internal/correlate"
	"github.com/oomtrace/oomtrace/internal/enrich"
	"github.com/oomtrace/oomtrace/internal/nodememory"
)

// attribution is the stage between the sources (the tracer, the node
// signal sampler, the cluster view) and the output. It names containers and
// pods (which may wait on the container runtime, so it runs behind its own
// queue, never in the ring buffer reader), adds the node's memory signals,
// correlates kernel kills with kubelet evictions, counts every event in the
// metrics, and passes on what the filter keeps.
type attribution struct {
	ctx      context.Context
	enricher *enrich.Enricher
	signals  *nodememory.Sampler // nil when the node's signals cannot be read
	// sampleEvery is the signals' sampling interval.
	sampleEvery time.Duration
	correlator  *correlate.Correlator
	filter      enrich.Filter
	metrics     *exporter.Metrics
	out         exporter.Writer
	filtered    atomic.Uint64
}

func (a *attribution) nodeMemory() *event.NodeMemory {
	if a.signals == nil {
		return nil
	}
	if nm, ok := a.signals.Sample(); ok {
		return &nm
	}
	return nil
}

func (a *attribution) WriteOOMKill(ev event.OOMKill) error {
	a.enricher.OOMKill(a.ctx, &ev)
	ev.NodeMemory = a.nodeMemory()
	a.correlator.OOMKill(&ev)
	a.metrics.ObserveOOMKill(ev)
	if !a.filter.OOMKill(ev) {
		a.filtered.Add(1)
		return nil
	}
	return a.out.WriteOOMKill(ev)
}

func (a *attribution) WriteCommitRefusal(ev event.CommitRefusal) error {
	a.enricher.CommitRefusal(a.ctx, &ev)
	ev.NodeMemory = a.nodeMemory()
	a.metrics.ObserveCommitRefusal(ev)
	if !a.filter.CommitRefusal(ev) {
		a.filtered.Add(1)
		return nil
	}
	return a.out.WriteCommitRefusal(ev)
}

func (a *attribution) WriteEviction(ev event.Eviction) error {
	if a.signals != nil {
		// The kubelet's observation can be up to a housekeeping interval
		// (10 s) older than its decision; the API time drops the second's
		// fraction, and a sample can come one interval late.
		if nm, ok := a.signals.Decided(ev.Time.Time, 10*time.Second, time.Second+a.sampleEvery); ok {
			ev.NodeMemory = &nm
		}
	}
	a.correlator.Eviction(&ev)
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
		s := &ev.KernelSignals[i]
		switch name, sandbox := a.enricher.Container(a.ctx, s.Container, s.Time.Time); {
		case sandbox:
			// The pod's pause process: its id names no container.
			s.Container, s.Sandbox = "", true
		case name != "":
			s.Container = name
		case byID[s.Container] != "":
			s.Container = byID[s.Container]
		}
	}
	a.metrics.ObserveEviction(ev)
	if !a.filter.Process(event.Process{Pod: &ev.Pod}) {
		a.filtered.Add(1)
		return nil
	}
	return a.out.WriteEviction(ev)
}

func (a *attribution) WriteMemoryPressure(ev event.MemoryPressure) error {
	a.metrics.ObserveMemoryPressure(ev)
	return a.out.WriteMemoryPressure(ev)
}

func (a *attribution) WriteNodeCondition(ev event.NodeCondition) error {
	a.metrics.ObserveNodeCondition(ev)
	return a.out.WriteNodeCondition(ev)
}
