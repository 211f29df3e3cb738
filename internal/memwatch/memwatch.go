// SPDX-License-Identifier: Apache-2.0

// Package memwatch warns before a kill: it watches the memory cgroups
// that have a limit (containers', pods', a host's services') and reports
// an episode of memory pressure when one runs out of memory it can
// reclaim, goes over memory.high again and again with little to reclaim,
// or stalls on memory at its limit; and when the episode ends.
//
// It polls, read-only, as a DaemonSet with the host's cgroups mounted
// read-only can: one read of a cgroup's usage (a file kept open, one
// pread) each interval near its limit, less often far below it (at most
// every 10 s), and only for a cgroup past 80% of its limit the files that
// say more (memory.stat, memory.events, memory.pressure).
// PSI triggers would need a write to the cgroup's memory.pressure, which
// a read-only mount refuses.
//
// A cgroup near its limit whose memory is page cache the kernel reclaims
// without stalling is not under pressure: that is how the page cache
// works, and such a cgroup is never killed for it.
package memwatch

import (
	"cmp"
	"context"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/kernfile"
)

// Defaults of Options.
const (
	DefaultInterval    = time.Second
	DefaultRescan      = 30 * time.Second
	DefaultMaxCgroups  = 2048
	DefaultMaxDepth    = 8
	DefaultNearLimit   = 0.9
	DefaultHorizon     = time.Minute
	DefaultStallAvg10  = 10
	DefaultEndAfter    = 10 * time.Second
	DefaultRepeatEvery = 5 * time.Minute
	// DefaultKeepEnded is how long an ended episode is kept for the kill
	// that may follow it (the kill ends the episode: the cgroup goes).
	DefaultKeepEnded = time.Minute
	// closeLook is the share of its limit past which a cgroup's other
	// files are read: below it nothing can be near the limit.
	closeLook = 0.8
	// startTicks is how many intervals in a row a cgroup must be pressed
	// before its episode starts: one sample is no trend.
	startTicks = 2
	// statAgain is how long a cgroup near its limit whose usage has not
	// moved by more than a 128th of its bound goes without a new read of
	// its memory.stat (tens of microseconds, a hundred on cgroup v1): a
	// container that sits near its limit costs the small files an
	// interval, most of the time.
	statAgain = 5 * time.Second
	// A cgroup far below its limit is read less often: as often as a
	// growth of fastGrowth of its bound a second could take it to
	// closeLook, at most every readAtMost: most containers sit well below
	// their limits, and cost a read every few seconds.
	fastGrowth = 0.05
	readAtMost = 10 * time.Second
)

// Options configure a Watcher; the zero value of each field takes its
// default.
type Options struct {
	Memory cgroup.Memory
	// Interval between two reads of the watched cgroups' usage.
	Interval time.Duration
	// Rescan is how often the hierarchy is walked again for cgroups with
	// a limit (new containers).
	Rescan time.Duration
	// MaxCgroups bounds the cgroups watched, and MaxDepth the levels
	// walked below the root: tenants can make cgroups (a container with
	// its cgroup delegated). The root-most are kept.
	MaxCgroups, MaxDepth int
	// NearLimit is the share of its limit (memory.high's) that what a
	// cgroup cannot reclaim may reach before it is pressed.
	NearLimit float64
	// Horizon: past 80% of its limit, a cgroup whose unreclaimable memory
	// grows at a pace that reaches the limit within Horizon is pressed
	// too (a leak is seen well before its last tenth).
	Horizon time.Duration
	// StallAvg10 is the PSI some avg10 (percent) past which a cgroup that
	// hits its limit is stalling.
	StallAvg10 float64
	// EndAfter is how long a cgroup must be calm for its episode to end.
	EndAfter time.Duration
	// RepeatEvery is how often an episode that goes on is said again.
	RepeatEvery time.Duration
	// KeepEnded is how long an ended episode is kept for Episode.
	KeepEnded time.Duration
	// Node names the node in the lines.
	Node string
	Now  func() time.Time
}

func (o *Options) defaults() {
	o.Interval = cmp.Or(o.Interval, DefaultInterval)
	o.Rescan = cmp.Or(o.Rescan, DefaultRescan)
	o.MaxCgroups = cmp.Or(o.MaxCgroups, DefaultMaxCgroups)
	o.MaxDepth = cmp.Or(o.MaxDepth, DefaultMaxDepth)
	o.Horizon = cmp.Or(o.Horizon, DefaultHorizon)
	o.StallAvg10 = cmp.Or(o.StallAvg10, DefaultStallAvg10)
	o.EndAfter = cmp.Or(o.EndAfter, DefaultEndAfter)
	o.RepeatEvery = cmp.Or(o.RepeatEvery, DefaultRepeatEvery)
	o.KeepEnded = cmp.Or(o.KeepEnded, DefaultKeepEnded)
	if o.NearLimit <= 0 || o.NearLimit > 1 {
		o.NearLimit = DefaultNearLimit
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Watcher watches memory cgroups for pressure. Run drives it; Episode is
// safe to call from any goroutine.
type Watcher struct {
	opts Options
	mem  cgroup.Memory

	mu      sync.Mutex
	watched map[string]*watchedCgroup // by path
	ended   map[string]endedEpisode   // by path, for Episode
}

// watchedCgroup is one cgroup's limits (read at each scan) and its
// episode, if one is on.
type watchedCgroup struct {
	id          uint64
	limit, high uint64 // 0: none
	pressed     int    // intervals in a row it was pressed
	calmSince   time.Time
	last        counters // at the previous full read
	// growth is how fast its unreclaimable memory grew over the last
	// looks (bytes a second, smoothed); valid with last.
	growth      float64
	growthKnown bool
	// stat is memory.stat's figures as last read, at statAt with usage
	// statUsage.
	stat      [3]uint64 // file, inactive_file, anon
	statAt    time.Time
	statUsage uint64
	// nextRead is when it is read next (far below its bound: later).
	nextRead time.Time
	episode  *episode
}

// counters are the cumulative counts of a cgroup's files, and its
// unreclaimable memory, at one look.
type counters struct {
	max, high, stallUS uint64
	working            uint64
	at                 time.Time
	valid              bool
}

type episode struct {
	ev      event.PressureEpisode
	since   time.Time
	started bool      // said: pressed startTicks intervals in a row
	said    time.Time // when a line last said it
	reasons map[string]bool
}

type endedEpisode struct {
	ev    event.PressureEpisode
	ended time.Time
}

// New returns a watcher of opts.Memory's cgroups.
func New(opts Options) *Watcher {
	opts.defaults()
	mem := opts.Memory
	// Its own open files: one usage file per cgroup, read every interval.
	mem.Files = kernfile.NewOpenFiles(opts.MaxCgroups)
	return &Watcher{opts: opts, mem: mem, watched: map[string]*watchedCgroup{}, ended: map[string]endedEpisode{}}
}

// Run polls until ctx is done, passing each line to emit (on Run's
// goroutine). An episode still on when ctx ends is not said to end.
func (w *Watcher) Run(ctx context.Context, emit func(event.CgroupPressure)) {
	tick := time.NewTicker(w.opts.Interval)
	defer tick.Stop()
	var scanned time.Time
	for {
		now := w.opts.Now()
		if now.Sub(scanned) >= w.opts.Rescan {
			w.scan()
			scanned = now
		}
		for _, ev := range w.Poll() {
			emit(ev)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// scan walks the hierarchy breadth first (the root-most cgroups first, at
// most MaxCgroups of them, MaxDepth levels down) for cgroups with a
// memory limit, and reads their limits again. Root-most first is what
// keeps it fair: the cgroups a tenant makes are below its container,
// deeper than every pod's and container's, and cannot push them out.
func (w *Watcher) scan() {
	found := map[string]watchedCgroup{}
	level := []string{"/"}
	visited := 0
	for depth := 0; depth <= w.opts.MaxDepth && len(level) > 0 && visited < w.opts.MaxCgroups; depth++ {
		var next []string
		for _, p := range level {
			if visited >= w.opts.MaxCgroups {
				break
			}
			visited++
			if p != "/" {
				if c, ok := w.limits(p); ok {
					found[p] = c
				}
			}
			subs, err := kernfile.Subdirs(w.mem.Dir(p))
			if err != nil {
				continue
			}
			for _, name := range subs {
				if visited+len(next) >= w.opts.MaxCgroups {
					break
				}
				next = append(next, path.Join(p, name))
			}
		}
		level = next
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for p, c := range found {
		if old, ok := w.watched[p]; ok && old.id == c.id {
			old.limit, old.high = c.limit, c.high
			continue
		}
		w.watched[p] = &c
	}
	// A cgroup gone, or out of bounds now, is dropped; Poll ends its
	// episode when its usage cannot be read.
	for p, c := range w.watched {
		if _, ok := found[p]; !ok && c.episode == nil {
			delete(w.watched, p)
		}
	}
}

// limits reads a cgroup's memory.max and memory.high (v1: its limit);
// false when it has neither, or is gone.
func (w *Watcher) limits(p string) (watchedCgroup, bool) {
	var c watchedCgroup
	c.limit, _ = w.mem.Limit(p)
	c.high, _ = w.mem.High(p)
	if c.limit == 0 && c.high == 0 {
		return c, false
	}
	id, ok := w.mem.ID(p)
	c.id = id
	return c, ok
}

// Poll reads every watched cgroup once and returns the lines due.
func (w *Watcher) Poll() []event.CgroupPressure {
	now := w.opts.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []event.CgroupPressure
	reads := map[string]reading{}
	for p, c := range w.watched {
		if now.Before(c.nextRead) && c.episode == nil {
			continue
		}
		r, ok := w.read(p, c, now)
		if !ok {
			// Gone (its container ended: a kill, most often).
			delete(w.watched, p)
			if c.episode != nil && c.episode.started {
				out = append(out, w.end(p, c, now, event.PressureSample{}))
			}
			continue
		}
		reads[p] = r
	}
	for p, r := range reads {
		if ev, ok := w.advance(p, w.watched[p], r, now); ok {
			out = append(out, ev)
		}
	}
	for p, e := range w.ended {
		if now.Sub(e.ended) > w.opts.KeepEnded {
			delete(w.ended, p)
		}
	}
	slices.SortFunc(out, func(a, b event.CgroupPressure) int { return strings.Compare(a.Memcg.Path, b.Memcg.Path) })
	return out
}

// reading is one interval's read of a cgroup.
type reading struct {
	sample  event.PressureSample
	reasons []string
	delta   counters
}

// read reads one cgroup's usage (and, near its limit, more) and counts
// the intervals in a row it was pressed; false when it is gone.
func (w *Watcher) read(p string, c *watchedCgroup, now time.Time) (reading, bool) {
	usage, err := w.mem.Usage(p)
	if err != nil {
		return reading{}, false
	}
	bound := c.limit
	if c.high > 0 && (bound == 0 || c.high < bound) {
		bound = c.high
	}
	r := reading{sample: event.PressureSample{UsageBytes: usage, LimitBytes: nonZero(c.limit), HighBytes: nonZero(c.high)}}
	c.nextRead = now.Add(w.untilNextRead(usage, bound))
	if float64(usage) >= closeLook*float64(bound) {
		fresh := !c.last.valid || now.Sub(c.statAt) >= statAgain || absDiff(usage, c.statUsage) >= bound/128
		r.reasons, r.delta = w.look(p, c, &r.sample, now, fresh)
	} else {
		c.last.valid = false
	}
	if len(r.reasons) > 0 {
		c.pressed++
		c.calmSince = time.Time{}
	} else {
		c.pressed = 0
		if c.calmSince.IsZero() {
			c.calmSince = now
		}
	}
	return r, true
}

// untilNextRead is how long a cgroup with usage of bound may go unread:
// the time a fast growth (fastGrowth of bound a second) takes it to
// closeLook of bound, rounded down to intervals, at least one, at most
// readAtMost.
func (w *Watcher) untilNextRead(usage, bound uint64) time.Duration {
	gap := closeLook*float64(bound) - float64(usage)
	if gap <= 0 {
		return 0
	}
	d := time.Duration(gap / (fastGrowth * float64(bound)) * float64(time.Second))
	d = min(d, readAtMost)
	return d - d%w.opts.Interval
}

// advance moves the cgroup's episode on by one interval; a line when one
// is due.
func (w *Watcher) advance(p string, c *watchedCgroup, r reading, now time.Time) (event.CgroupPressure, bool) {
	usage := r.sample.UsageBytes
	e := c.episode
	if e == nil || !e.started {
		if c.pressed == 0 {
			c.episode = nil
			return event.CgroupPressure{}, false
		}
		// The episode counts from its first pressed interval, and starts
		// (is said) at its startTicks-th in a row.
		if e == nil {
			e = &episode{since: now, reasons: map[string]bool{}}
			e.ev.Since = event.Time{Time: now}
			c.episode = e
		}
		w.account(e, r.reasons, r.delta, usage, now)
		// A pod's cgroup holds its containers': when one of them is
		// pressed too, the warning is that container's, not the pod's
		// (on cgroup v2 a pod's limit is its containers' summed, and the
		// two fill together).
		if c.pressed < startTicks || w.pressedBelow(p) {
			return event.CgroupPressure{}, false
		}
		e.started, e.said = true, now
		return w.line(p, c, now, event.PressureStarted, r.sample), true
	}
	w.account(e, r.reasons, r.delta, usage, now)
	if len(r.reasons) == 0 && now.Sub(c.calmSince) >= w.opts.EndAfter {
		return w.end(p, c, now, r.sample), true
	}
	if now.Sub(e.said) >= w.opts.RepeatEvery {
		e.said = now
		return w.line(p, c, now, event.PressureOngoing, r.sample), true
	}
	return event.CgroupPressure{}, false
}

// pressedBelow says a cgroup below p is pressed, or in an episode.
func (w *Watcher) pressedBelow(p string) bool {
	prefix := strings.TrimSuffix(p, "/") + "/"
	for q, c := range w.watched {
		if strings.HasPrefix(q, prefix) && (c.pressed > 0 || c.episode != nil && c.episode.started) {
			return true
		}
	}
	return false
}

// look reads what says more than usage: memory.stat, and on v2
// memory.events and memory.pressure (v1: memory.failcnt). It fills sample
// and returns the reasons the cgroup is pressed for, if any, and how far
// its counters moved since the last look.
func (w *Watcher) look(p string, c *watchedCgroup, sample *event.PressureSample, at time.Time, fresh bool) ([]string, counters) {
	if fresh {
		if st, err := w.mem.Stat(p); err == nil {
			if w.mem.V1 {
				c.stat = [3]uint64{st["total_cache"], st["total_inactive_file"], st["total_rss"]}
			} else {
				c.stat = [3]uint64{st["file"], st["inactive_file"], st["anon"]}
			}
			c.statAt, c.statUsage = at, sample.UsageBytes
		}
	}
	sample.FileBytes, sample.InactiveFileBytes, sample.AnonBytes = c.stat[0], c.stat[1], c.stat[2]
	// What the kernel cannot reclaim without swap: usage less page cache.
	working := sub(sample.UsageBytes, sample.FileBytes)
	now := counters{valid: true, working: working, at: at}
	if w.mem.V1 {
		now.max, _ = w.mem.ReadUint(p, "memory.failcnt")
	} else {
		if data, err := w.mem.Read(p, "memory.events"); err == nil {
			ev := kernfile.ParseKeyValues(data)
			now.max, now.high = ev["max"], ev["high"]
		}
		if data, err := w.mem.Read(p, "memory.pressure"); err == nil {
			if psi, err := ParsePSI(data); err == nil {
				sample.Pressure = &psi
				now.stallUS = psi.SomeTotalUS
			}
		}
	}
	var delta counters
	growing := false
	if c.last.valid {
		delta = counters{max: sub(now.max, c.last.max), high: sub(now.high, c.last.high), stallUS: sub(now.stallUS, c.last.stallUS), valid: true}
		if dt := at.Sub(c.last.at).Seconds(); dt > 0 {
			rate := (float64(working) - float64(c.last.working)) / dt
			if c.growthKnown {
				rate = (c.growth + rate) / 2
			}
			c.growth, c.growthKnown, growing = rate, true, true
		}
	} else {
		c.growth, c.growthKnown = 0, false
	}
	c.last = now

	var reasons []string
	if c.limit > 0 {
		left := float64(c.limit) - float64(working)
		var toLimit float64
		if growing && c.growth > 0 {
			toLimit = left / c.growth
			if toLimit <= w.opts.Horizon.Seconds() {
				s := event.Seconds(time.Duration(max(toLimit, 0) * float64(time.Second)))
				sample.SecondsToLimit = &s
			}
		}
		if float64(working) >= w.opts.NearLimit*float64(c.limit) || sample.SecondsToLimit != nil && float64(working) >= closeLook*float64(c.limit) {
			reasons = append(reasons, event.PressureNearLimit)
		}
	}
	if c.high > 0 && delta.high > 0 && float64(working) >= w.opts.NearLimit*float64(c.high) {
		reasons = append(reasons, event.PressureAboveHigh)
	}
	if sample.Pressure != nil && sample.Pressure.SomeAvg10 >= w.opts.StallAvg10 && (delta.max > 0 || delta.high > 0) {
		reasons = append(reasons, event.PressureStalling)
	}
	return reasons, delta
}

// account adds an interval to the episode.
func (w *Watcher) account(e *episode, reasons []string, delta counters, usage uint64, now time.Time) {
	for _, r := range reasons {
		if !e.reasons[r] {
			e.reasons[r] = true
			e.ev.Reasons = append(e.ev.Reasons, r)
		}
	}
	e.ev.MaxEvents += delta.max
	e.ev.HighEvents += delta.high
	e.ev.StallSeconds = event.Seconds(time.Duration(float64(e.ev.StallSeconds)*float64(time.Second)) + time.Duration(delta.stallUS)*time.Microsecond)
	e.ev.PeakUsageBytes = max(e.ev.PeakUsageBytes, usage)
	e.ev.DurationSeconds = event.Seconds(now.Sub(e.since))
}

// end ends the cgroup's episode: a line, and the episode kept for the
// kill that may have ended it.
func (w *Watcher) end(p string, c *watchedCgroup, now time.Time, sample event.PressureSample) event.CgroupPressure {
	ev := w.line(p, c, now, event.PressureEnded, sample)
	w.ended[p] = endedEpisode{ev: ev.Episode, ended: now}
	c.episode = nil
	c.pressed = 0
	return ev
}

func (w *Watcher) line(p string, c *watchedCgroup, now time.Time, state string, sample event.PressureSample) event.CgroupPressure {
	ep := c.episode.ev
	ep.Reasons = slices.Clone(ep.Reasons)
	return event.CgroupPressure{
		Type:    event.TypeCgroupPressure,
		Time:    event.Time{Time: now},
		Node:    w.opts.Node,
		State:   state,
		Memcg:   event.Cgroup{ID: c.id, Path: p, Source: event.CgroupFromCgroupfs},
		Episode: ep,
		Memory:  sample,
	}
}

// Episode is the episode of pressure of the cgroup at path (a kill's
// victim's, or its domain's): the one on, or one that ended within
// KeepEnded; nil for none. The path may be one captured in the kernel,
// the watcher's are the hierarchy's.
func (w *Watcher) Episode(p string) *event.PressureEpisode {
	if p == "" {
		return nil
	}
	p = path.Clean("/" + p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.watched[p]; ok && c.episode != nil && c.episode.started {
		ep := c.episode.ev
		ep.Reasons = slices.Clone(ep.Reasons)
		return &ep
	}
	if e, ok := w.ended[p]; ok {
		ep := e.ev
		return &ep
	}
	return nil
}

func nonZero(n uint64) *uint64 {
	if n == 0 {
		return nil
	}
	return &n
}

func absDiff(a, b uint64) uint64 {
	if a < b {
		return b - a
	}
	return a - b
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
