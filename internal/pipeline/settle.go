// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"sync"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgpath"
)

// settler holds the OOM kills of containers' processes for a moment, then
// says whether the container survived the kill: the kubelet reports an
// OOM kill only when a container's init dies, and a worker process killed
// in a container that keeps running leaves no trace in the API. Kills of
// processes in no container pass at once.
//
// The held kills wait in one queue, in the order they came, behind one
// timer: they come out in that order (the kills of one memory.oom.group
// decision, the chosen task first), and a burst costs no goroutine or
// timer per kill.
type settler struct {
	delay time.Duration
	// alive says whether the container cgroup at path (in the memory
	// hierarchy) still has a process.
	alive func(path string) (bool, error)
	// done takes each kill once settled, on the settler's goroutine.
	done func(event.OOMKill)

	mu      sync.Mutex
	pending []heldKill // oldest first
	timer   *time.Timer
	running bool // a drain is under way: it takes what comes meanwhile
	closed  bool
	drained sync.WaitGroup // one while a drain runs
}

type heldKill struct {
	ev  event.OOMKill
	due time.Time
}

// hold takes ev and hands it to done once settled; false when ev has no
// container to check (the caller passes it on itself).
func (s *settler) hold(ev event.OOMKill) bool {
	if s == nil || ev.Victim.Container == nil || ev.Victim.Memcg == nil || cgpath.ContainerPath(ev.Victim.Memcg.Path) == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.pending = append(s.pending, heldKill{ev: ev, due: time.Now().Add(s.delay)})
	if len(s.pending) == 1 && !s.running {
		s.arm(s.delay)
	}
	return true
}

// arm starts the timer for the head of the queue. Call with mu held.
func (s *settler) arm(after time.Duration) {
	s.running = true
	s.drained.Add(1)
	s.timer = time.AfterFunc(after, s.drain)
}

// drain settles the kills that are due, in order, then waits for the next
// one, or ends when none is left.
func (s *settler) drain() {
	defer s.drained.Done()
	for {
		s.mu.Lock()
		if len(s.pending) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		head := s.pending[0]
		if wait := time.Until(head.due); wait > 0 && !s.closed {
			// The next is not due yet: come back for it.
			s.drained.Add(1)
			s.timer = time.AfterFunc(wait, s.drain)
			s.mu.Unlock()
			return
		}
		s.pending = s.pending[1:]
		s.mu.Unlock()
		s.settle(head.ev)
	}
}

// settle checks the container now and hands the kill on.
func (s *settler) settle(ev event.OOMKill) {
	alive, err := s.alive(cgpath.ContainerPath(ev.Victim.Memcg.Path))
	if err == nil {
		ev.ContainerSurvived = &alive
	}
	s.done(ev)
}

// close settles every held kill at once (the check comes early: best
// effort at a stop), in order, and takes no more.
func (s *settler) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	if s.timer != nil && s.timer.Stop() {
		s.drained.Done() // its drain will not run
		s.running = false
	}
	start := !s.running && len(s.pending) > 0
	if start {
		s.running = true
		s.drained.Add(1)
	}
	s.mu.Unlock()
	if start {
		s.drain()
	}
	s.drained.Wait()
}
