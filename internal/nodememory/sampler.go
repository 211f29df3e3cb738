// SPDX-License-Identifier: Apache-2.0

package nodememory

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oomtrace/oomtrace/event"
)

// SamplerOptions configure a Sampler.
type SamplerOptions struct {
	Node string
	// MaxAge: a Sample younger than this is reused (events close together
	// share one read of the cgroup files). 0: DefaultMaxAge.
	MaxAge time.Duration
	// History keeps this long of samples for At and Decided.
	History time.Duration
	// FastInterval is the sampling interval while a signal is near its
	// threshold (within the threshold again, at least NearMargin): a fast
	// allocation crosses it between two samples of the normal interval,
	// and the crossing should be seen when the kubelet sees it.
	FastInterval time.Duration
	NearMargin   uint64
	Logger       *slog.Logger
	Now          func() time.Time
	// Soft are the kubelet's soft thresholds and SoftGrace their grace
	// periods, said in each sample beside the hard ones.
	Soft      Thresholds
	SoftGrace map[string]time.Duration
}

// DefaultMaxAge is how old a sample an event may take: the fast
// interval's, which is how fresh the sampler keeps the signals near their
// thresholds anyway. A read of the signals is a few cgroup files (about
// 0.1-0.2 ms of CPU); a crash loop or a group kill makes hundreds of
// events a second, and they need no read of their own. The kubelet's own
// signals are 10 s apart.
const DefaultMaxAge = 100 * time.Millisecond

// Sampler reads the signals on an interval and on demand, remembers them
// for a while, and reports threshold crossings. Safe for concurrent use.
type Sampler struct {
	src  Source
	th   Thresholds
	opts SamplerOptions

	// onPressure receives each threshold crossing, either way: set by
	// Start, before the first sample.
	onPressure atomic.Pointer[func(event.MemoryPressure)]

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
		opts.MaxAge = DefaultMaxAge
	}
	if opts.History == 0 {
		opts.History = 10 * time.Minute
	}
	if opts.FastInterval == 0 {
		opts.FastInterval = 100 * time.Millisecond
	}
	if opts.NearMargin == 0 {
		opts.NearMargin = 256 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Sampler{src: src, th: th, opts: opts, below: map[string]bool{}, since: map[string]time.Time{}}
}

// Start samples every interval until ctx is done, every FastInterval
// while a signal is near its threshold, and hands onPressure each
// threshold crossing, also the ones Sample finds.
func (s *Sampler) Start(ctx context.Context, interval time.Duration, onPressure func(event.MemoryPressure)) {
	s.setHandler(onPressure)
	go s.run(ctx, interval)
}

func (s *Sampler) setHandler(onPressure func(event.MemoryPressure)) {
	s.onPressure.Store(&onPressure)
}

func (s *Sampler) run(ctx context.Context, interval time.Duration) {
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		next := interval
		if nm, ok := s.sample(true); ok && s.near(nm) && s.opts.FastInterval < interval {
			next = s.opts.FastInterval
		}
		t.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// near: a signal is below its threshold, or above it by less than the
// threshold (at least NearMargin).
func (s *Sampler) near(nm event.NodeMemory) bool {
	for _, sig := range []*event.MemorySignal{nm.MemoryAvailable, nm.AllocatableMemoryAvailable} {
		if sig == nil || sig.ThresholdBytes == nil {
			continue
		}
		th := *sig.ThresholdBytes
		if sig.AvailableBytes < int64(th+max(th, s.opts.NearMargin)) {
			return true
		}
	}
	return false
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

	nm, err := s.src.Read(s.th, now)
	if err == nil {
		addSoft(nm.MemoryAvailable, s.opts.Soft[MemoryAvailable], s.opts.SoftGrace)
		addSoft(nm.AllocatableMemoryAvailable, s.opts.Soft[AllocatableMemoryAvailable], s.opts.SoftGrace)
	}

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
	if h := s.onPressure.Load(); h != nil && *h != nil {
		for _, c := range crossings {
			(*h)(c)
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
		v    *event.MemorySignal
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
		mp := event.MemoryPressure{Type: event.TypeMemoryPressure, Time: nm.Time, Node: s.opts.Node, SignalName: sig.name, MemorySignal: *sig.v}
		if seen {
			d := event.Seconds(nm.Time.Sub(s.since[sig.name]))
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

// Decided returns the sample that shows what the kubelet saw when it acted
// at t (an API time, whole seconds): of the samples from before ahead of t
// to after behind it, the one nearest t on which a signal was below its
// threshold, else the one nearest t; else the last one before t. before
// covers the age of the kubelet's stats (a housekeeping interval), after
// the second the API time drops and the sampling interval.
func (s *Sampler) Decided(t time.Time, before, after time.Duration) (event.NodeMemory, bool) {
	s.mu.Lock()
	from := sort.Search(len(s.history), func(i int) bool { return !s.history[i].Time.Before(t.Add(-before)) })
	to := sort.Search(len(s.history), func(i int) bool { return s.history[i].Time.After(t.Add(after)) })
	// A sample below a hard threshold shows a hard eviction's decision,
	// one below a soft threshold a soft eviction's; else the nearest.
	best, bestRank := -1, 0
	for i := from; i < to; i++ {
		rank := belowRank(s.history[i])
		if best < 0 || rank > bestRank || rank == bestRank && distance(s.history[i].Time.Time, t) < distance(s.history[best].Time.Time, t) {
			best, bestRank = i, rank
		}
	}
	if best >= 0 {
		defer s.mu.Unlock()
		return s.history[best], true
	}
	s.mu.Unlock()
	return s.At(t)
}

// belowRank is 2 when a signal of nm is below its hard threshold, 1 when
// one is below its soft threshold, else 0.
func belowRank(nm event.NodeMemory) int {
	switch {
	case nm.AnyBelow():
		return 2
	case nm.MemoryAvailable != nil && nm.MemoryAvailable.BelowSoftThreshold,
		nm.AllocatableMemoryAvailable != nil && nm.AllocatableMemoryAvailable.BelowSoftThreshold:
		return 1
	}
	return 0
}

func distance(a, b time.Time) time.Duration {
	if d := a.Sub(b); d >= 0 {
		return d
	}
	return b.Sub(a)
}

// addSoft sets sig's soft threshold t (zero: none) and its grace period.
func addSoft(sig *event.MemorySignal, t Threshold, grace map[string]time.Duration) {
	if sig == nil || t.Signal == "" {
		return
	}
	b := t.Of(sig.CapacityBytes)
	sig.SoftThresholdBytes = &b
	sig.SoftGracePeriod = grace[t.Signal].String()
	sig.BelowSoftThreshold = sig.AvailableBytes < int64(b)
}

// Open finds the node's memory signals (the memory hierarchy below procfs,
// the kubepods cgroup: kubepods if not empty, else the kubelet's, else the
// default ones), reads them once to check and log them, and returns their
// sampler.
func Open(procfs, kubepods string, kubelet KubeletConfig, o SamplerOptions) (*Sampler, error) {
	src, err := Detect(procfs, kubepods)
	if err != nil {
		return nil, err
	}
	if kubepods == "" && kubelet.Kubepods != "" {
		// What the kubelet's config says, if it is there; else what
		// Detect found (an empty config names the default root).
		if fromConfig, err := Detect(procfs, kubelet.Kubepods); err == nil {
			src = fromConfig
		}
	}
	th := kubelet.Thresholds
	// Outside the sampler: its first sample (in Start, once there is
	// somewhere to send it) reports a signal already below.
	nm, err := src.Read(th, time.Now())
	if err != nil {
		return nil, fmt.Errorf("read below %s: %w", src.Root, err)
	}
	o.Soft, o.SoftGrace = kubelet.Soft, kubelet.SoftGrace
	s := NewSampler(src, th, o)
	if o.Logger != nil {
		kubepodsDir := ""
		if src.Kubepods != "" {
			kubepodsDir = src.Dir(src.Kubepods)
		}
		attrs := []any{"thresholds", th.String(), "soft_thresholds", kubelet.Soft.String(), "enforce_node_allocatable", strings.Join(kubelet.EnforceNodeAllocatable, ","),
			"memory_hierarchy", src.Root, "kubepods", kubepodsDir, "memory_available", nm.MemoryAvailable.AvailableBytes}
		if a := nm.AllocatableMemoryAvailable; a != nil {
			attrs = append(attrs, "allocatable_memory_available", a.AvailableBytes)
		}
		o.Logger.Info("node memory signals", attrs...)
	}
	return s, nil
}
