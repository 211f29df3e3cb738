package main

import (
	"context"
	"sync/atomic"

	"github.com/oomtrace/oomtrace/enrich"
	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter"
)

// attribution is the stage between the tracer and the output: it names
// containers and pods (which may wait on the container runtime, so it runs
// behind its own queue, never in the ring buffer reader), counts every
// event in the metrics, and passes on what the filter keeps.
type attribution struct {
	ctx      context.Context
	enricher *enrich.Enricher
	filter   enrich.Filter
	metrics  *exporter.Metrics
	out      exporter.Writer
	filtered atomic.Uint64
}

func (a *attribution) WriteOOMKill(ev event.OOMKill) error {
	a.enricher.OOMKill(a.ctx, &ev)
	a.metrics.ObserveOOMKill(ev)
	if !a.filter.OOMKill(ev) {
		a.filtered.Add(1)
		return nil
	}
	return a.out.WriteOOMKill(ev)
}

func (a *attribution) WriteCommitRefusal(ev event.CommitRefusal) error {
	a.enricher.CommitRefusal(a.ctx, &ev)
	a.metrics.ObserveCommitRefusal(ev)
	if !a.filter.CommitRefusal(ev) {
		a.filtered.Add(1)
		return nil
	}
	return a.out.WriteCommitRefusal(ev)
}
