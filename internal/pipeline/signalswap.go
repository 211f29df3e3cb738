// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"sync"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/userkill"
)

// signalSwapMax bounds the cgroups remembered at once (a tenant signals
// at will; the tracer's signal budget bounds the rate).
const signalSwapMax = 256

// signalSwap reads the swap use of the cgroup a possible user-space kill
// hits as its first SIGKILL comes out of the ring buffer: the one figure
// the signal's record does not have (the kernel's usage, limit and
// pressure are in it). By the time the stage names the kill, a container
// whose last process was killed may be gone (systemd removes an empty
// scope at once). One read per cgroup within userkill.Window.
type signalSwap struct {
	read func(memcg *event.Cgroup) *uint64 // nil: none
	now  func() time.Time

	mu   sync.Mutex
	seen map[uint64]swapAt
}

type swapAt struct {
	at    time.Time
	bytes *uint64
}

// remember reads memcg's swap use unless it was read within the window.
// It never waits for the stage.
func (s *signalSwap) remember(memcg *event.Cgroup) {
	if s.read == nil || memcg == nil {
		return
	}
	now := s.now()
	s.mu.Lock()
	if e, ok := s.seen[memcg.ID]; ok && now.Sub(e.at) < userkill.Window {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	swap := s.read(memcg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[uint64]swapAt{}
	}
	if len(s.seen) >= signalSwapMax {
		for id, e := range s.seen {
			if now.Sub(e.at) >= userkill.Window {
				delete(s.seen, id)
			}
		}
		if len(s.seen) >= signalSwapMax {
			return // the stage reads it itself
		}
	}
	s.seen[memcg.ID] = swapAt{at: now, bytes: swap}
}

// at is memcg's swap use as its first SIGKILL found it, or as it is now
// when that was not read.
func (s *signalSwap) at(memcg *event.Cgroup) *uint64 {
	s.mu.Lock()
	e, ok := s.seen[memcg.ID]
	s.mu.Unlock()
	if ok && e.bytes != nil {
		return e.bytes
	}
	if s.read == nil {
		return nil
	}
	return s.read(memcg)
}
