// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"sync"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/userkill"
)

// signalMemoryMax bounds the cgroups remembered at once (a tenant signals
// at will; the tracer's signal budget bounds the rate).
const signalMemoryMax = 256

// signalMemory reads the memory of the cgroup a possible user-space kill
// hits as its first SIGKILL comes out of the ring buffer, for the stage
// to put on the kill beside the kernel's usage, limit and pressure (the
// signal's record): its swap, and the pressure where the record has none.
// By the time the stage names the kill, a container whose last process
// was killed may be gone (systemd removes an empty scope at once). One
// read per cgroup within userkill.Window.
type signalMemory struct {
	read func(memcg *event.Cgroup) *event.CgroupMemory // nil: none
	now  func() time.Time

	mu   sync.Mutex
	seen map[uint64]memoryAt
}

type memoryAt struct {
	at     time.Time
	memory *event.CgroupMemory
}

// remember reads memcg's memory unless it was read within the window.
// It never waits for the stage.
func (s *signalMemory) remember(memcg *event.Cgroup) {
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
	m := s.read(memcg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[uint64]memoryAt{}
	}
	if len(s.seen) >= signalMemoryMax {
		for id, e := range s.seen {
			if now.Sub(e.at) >= userkill.Window {
				delete(s.seen, id)
			}
		}
		if len(s.seen) >= signalMemoryMax {
			return // the stage reads it itself
		}
	}
	s.seen[memcg.ID] = memoryAt{at: now, memory: m}
}

// at is memcg's memory as its first SIGKILL found it, or as it is now
// when that was not read.
func (s *signalMemory) at(memcg *event.Cgroup) *event.CgroupMemory {
	s.mu.Lock()
	e, ok := s.seen[memcg.ID]
	s.mu.Unlock()
	if ok && e.memory != nil {
		return e.memory
	}
	if s.read == nil {
		return nil
	}
	return s.read(memcg)
}
