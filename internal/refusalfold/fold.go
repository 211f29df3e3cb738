// SPDX-License-Identifier: Apache-2.0

// Package refusalfold bounds the commit-refusal lines of each memory
// cgroup. The kernel side folds the repeats of one process (one line, then
// one a second with the count); a pod that forks thousands of processes,
// each refused once, still wrote a line for each: thousands a second of
// up to 10 KiB, pushing every other pod's kill lines out of the kubelet's
// log rotation. Here each cgroup writes a burst of lines, then one at a
// time; the rest are folded into one line per cgroup, syscall and reason
// a window, with their count and how many processes they came from. The
// metrics count every refusal before this.
package refusalfold

import (
	"sync"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/allowance"
)

// Defaults of Options.
const (
	DefaultBurst      = 20
	DefaultEvery      = time.Second
	DefaultWindow     = time.Second
	DefaultMaxCgroups = 4096
)

// Options bound the lines.
type Options struct {
	// Burst lines of a cgroup go out at once, then one per Every.
	Burst int
	Every time.Duration
	// Window: the refusals folded in a cgroup, syscall and reason come
	// out as one line this long after the first of them.
	Window time.Duration
	// MaxCgroups bounds the cgroups remembered (a tenant makes them at
	// will); past it, the one idle longest is forgotten.
	MaxCgroups int
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

type key struct {
	cgroup          uint64
	syscall, reason string
}

type folded struct {
	line  event.CommitRefusal
	pids  map[uint32]bool // the processes folded, up to maxPIDs
	first time.Time
}

// maxPIDs bounds the processes a folded line tells apart; past it they
// are counted as one more each.
const maxPIDs = 4096

// overflowCgroup keys the node's folded lines once MaxCgroups wait: no
// cgroup has that id.
const overflowCgroup = ^uint64(0)

// Folder decides which refusal lines go out and folds the others. Its
// methods may be called from any goroutine.
type Folder struct {
	opts Options

	mu      sync.Mutex
	allow   map[uint64]*allowance.Bucket
	pending map[key]*folded
	extra   map[key]uint64 // processes past maxPIDs, by folded line
}

// New returns a folder with opts, zero values taking the defaults.
func New(opts Options) *Folder {
	if opts.Burst <= 0 {
		opts.Burst = DefaultBurst
	}
	if opts.Every <= 0 {
		opts.Every = DefaultEvery
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.MaxCgroups <= 0 {
		opts.MaxCgroups = DefaultMaxCgroups
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Folder{opts: opts, allow: map[uint64]*allowance.Bucket{}, pending: map[key]*folded{}, extra: map[key]uint64{}}
}

func cgroupOf(ev event.CommitRefusal) uint64 {
	if ev.Process.Memcg == nil {
		return 0
	}
	return ev.Process.Memcg.ID
}

// Pass says whether ev's line goes out now. When not, ev is folded into
// its cgroup, syscall and reason's pending line, which Due hands out at
// the end of its window.
func (f *Folder) Pass(ev event.CommitRefusal) bool {
	now := f.opts.Now()
	cg := cgroupOf(ev)
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.allow[cg]
	if a == nil {
		if len(f.allow) >= f.opts.MaxCgroups {
			f.forgetIdlest()
		}
		a = &allowance.Bucket{Left: float64(f.opts.Burst)}
		f.allow[cg] = a
	}
	if a.Take(now, float64(f.opts.Burst), f.opts.Every) {
		return true
	}
	k := key{cg, ev.Syscall, ev.Reason}
	p := f.pending[k]
	if p == nil && len(f.pending) >= f.opts.MaxCgroups {
		// As many folded lines as cgroups remembered wait: the node's
		// one line for the syscall and reason takes the rest.
		k.cgroup = overflowCgroup
		p = f.pending[k]
	}
	if p == nil {
		p = &folded{pids: map[uint32]bool{}, first: now}
		f.pending[k] = p
	}
	count := p.line.Count + ev.Count
	p.line = ev // the latest's details
	p.line.Count = count
	p.line.Repeated = true
	if !p.pids[ev.Process.TGID] {
		if len(p.pids) < maxPIDs {
			p.pids[ev.Process.TGID] = true
		} else {
			f.extra[k]++
		}
	}
	return false
}

// forgetIdlest forgets the allowance of the cgroup that wrote last the
// longest ago (its pending lines stay). Call with mu held.
func (f *Folder) forgetIdlest() {
	var idlest uint64
	var at time.Time
	first := true
	for cg, a := range f.allow {
		if first || a.At().Before(at) {
			idlest, at, first = cg, a.At(), false
		}
	}
	delete(f.allow, idlest)
}

// Due hands out the folded lines whose window has ended (all of them
// with flush), each with the count of the refusals it stands for and the
// number of processes they came from, and says when the next one is due
// (zero: none waits).
func (f *Folder) Due(flush bool) ([]event.CommitRefusal, time.Time) {
	now := f.opts.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []event.CommitRefusal
	var next time.Time
	for k, p := range f.pending {
		due := p.first.Add(f.opts.Window)
		if !flush && now.Before(due) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		line := p.line
		line.Processes = uint64(len(p.pids)) + f.extra[k]
		out = append(out, line)
		delete(f.pending, k)
		delete(f.extra, k)
	}
	return out, next
}
