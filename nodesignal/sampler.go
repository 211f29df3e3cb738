package nodesignal

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oomtrace/oomtrace/event"
)

// SamplerOptions configure a Sampler.
type SamplerOptions struct {
	Node string
	// MaxAge: a Sample younger than this is reused (a burst of events
	// shares one read of the cgroup files).
	MaxAge time.Duration
	// History keeps this long of samples for At.
	History time.Duration
	// OnPressure receives each threshold crossing, either way.
	OnPressure func(event.MemoryPressure)
	Logger     *slog.Logger
	Now        func() time.Time
}

// Sampler reads the signals on an interval and on demand, remembers them
// for a while, and reports threshold crossings. Safe for concurrent use.
type Sampler struct {
	src  Source
	th   Thresholds
	opts SamplerOptions

	allocatable atomic.Uint64

	mu      sync.Mutex
	last    *event.NodeMemory
	history []event.NodeMemory // oldest first
	below   map[string]bool
	since   map[string]time.Time
	failing bool
}

// NewSampler returns a sampler of src against th.
func NewSampler(src Source, th Thresholds, opts SamplerOptions) *Sampler {
	if opts.MaxAge == 0 {
		opts.MaxAge = 10 * time.Millisecond
	}
	if opts.History == 0 {
		opts.History = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Sampler{src: src, th: th, opts: opts, below: map[string]bool{}, since: map[string]time.Time{}}
}

// Thresholds are the thresholds in use.
func (s *Sampler) Thresholds() Thresholds { return s.th }

// Source is where the signals are read.
func (s *Sampler) Source() Source { return s.src }

// SetAllocatable sets the Node's status.allocatable memory (from the API);
// 0 falls back to the kubepods limit.
func (s *Sampler) SetAllocatable(bytes uint64) { s.allocatable.Store(bytes) }

// Run samples every interval until ctx is done.
func (s *Sampler) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.sample(true)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample returns the signals now (or at most MaxAge ago); false when the
// cgroup files could not be read.
func (s *Sampler) Sample() (event.NodeMemory, bool) { return s.sample(false) }

func (s *Sampler) sample(fresh bool) (event.NodeMemory, bool) {
	now := s.opts.Now()
	s.mu.Lock()
	if !fresh && s.last != nil && now.Sub(s.last.Time.Time) < s.opts.MaxAge {
		defer s.mu.Unlock()
		return *s.last, true
	}
	s.mu.Unlock()

	nm, err := s.src.Read(s.th, s.allocatable.Load(), now)

	s.mu.Lock()
	if err != nil {
		if !s.failing {
			s.opts.Logger.Warn("cannot read the node's memory signals", "err", err)
		}
		s.failing = true
		s.mu.Unlock()
		return event.NodeMemory{}, false
	}
	s.failing = false
	s.last = &nm
	s.history = append(s.history, nm)
	cut := sort.Search(len(s.history), func(i int) bool { return now.Sub(s.history[i].Time.Time) <= s.opts.History })
	s.history = s.history[cut:]
	crossings := s.crossings(nm)
	s.mu.Unlock()
	for _, c := range crossings {
		if s.opts.OnPressure != nil {
			s.opts.OnPressure(c)
		}
	}
	return nm, true
}

// crossings compares each signal with the previous sample. The first
// sample reports only signals already below their threshold.
func (s *Sampler) crossings(nm event.NodeMemory) []event.MemoryPressure {
	var out []event.MemoryPressure
	for _, sig := range []struct {
		name string
		v    *event.Signal
	}{{MemoryAvailable, nm.MemoryAvailable}, {AllocatableMemoryAvailable, nm.AllocatableMemoryAvailable}} {
		if sig.v == nil || sig.v.ThresholdBytes == nil {
			continue
		}
		was, seen := s.below[sig.name]
		if seen && was == sig.v.BelowThreshold || !seen && !sig.v.BelowThreshold {
			s.below[sig.name] = sig.v.BelowThreshold
			if !seen {
				s.since[sig.name] = nm.Time.Time
			}
			continue
		}
		mp := event.MemoryPressure{Type: event.TypeMemoryPressure, Time: nm.Time, Node: s.opts.Node, SignalName: sig.name, Signal: *sig.v}
		if seen {
			d := nm.Time.Sub(s.since[sig.name]).Seconds()
			mp.SinceSeconds = &d
		}
		s.below[sig.name] = sig.v.BelowThreshold
		s.since[sig.name] = nm.Time.Time
		out = append(out, mp)
	}
	return out
}

// At returns the last sample taken at or before t, if one is remembered.
func (s *Sampler) At(t time.Time) (event.NodeMemory, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.history), func(i int) bool { return s.history[i].Time.After(t) })
	if i == 0 {
		return event.NodeMemory{}, false
	}
	return s.history[i-1], true
}

// UnderPressure reports whether any signal was below its threshold at the
// last sample at or before t.
func (s *Sampler) UnderPressure(t time.Time) (bool, bool) {
	nm, ok := s.At(t)
	if !ok {
		return false, false
	}
	return Below(nm), true
}

// Below reports whether any signal of nm is below its threshold.
func Below(nm event.NodeMemory) bool {
	return nm.MemoryAvailable != nil && nm.MemoryAvailable.BelowThreshold ||
		nm.AllocatableMemoryAvailable != nil && nm.AllocatableMemoryAvailable.BelowThreshold
}
