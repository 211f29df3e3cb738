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
type settler struct {
	delay time.Duration
	// alive says whether the container cgroup at path (in the memory
	// hierarchy) still has a process.
	alive func(path string) (bool, error)
	// done takes each kill once settled, on a goroutine of the settler.
	done func(event.OOMKill)

	mu      sync.Mutex
	pending map[*time.Timer]event.OOMKill
	closed  bool
	held    sync.WaitGroup // one for each kill in pending
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
	var timer *time.Timer
	timer = time.AfterFunc(s.delay, func() {
		s.mu.Lock()
		ev, ok := s.pending[timer]
		delete(s.pending, timer)
		s.mu.Unlock()
		if ok {
			s.settle(ev)
			s.held.Done()
		}
	})
	s.pending[timer] = ev
	s.held.Add(1)
	return true
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
// effort at a stop), waits for those whose timer fired already, and takes
// no more.
func (s *settler) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	var held []event.OOMKill
	for timer, ev := range s.pending {
		if timer.Stop() {
			held = append(held, ev)
			delete(s.pending, timer)
		} // else its callback is waiting for mu and settles it
	}
	s.mu.Unlock()
	for _, ev := range held {
		s.settle(ev)
		s.held.Done()
	}
	s.held.Wait()
}
