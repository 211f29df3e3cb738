// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/oomtrace/oomtrace/event"
)

// queue puts a bounded queue between the tracer and a Sink that may block
// (a slow or stuck reader of stdout). Writing to it never blocks: when the
// queue is full the event is dropped and counted, so the ring buffer reader
// keeps draining the kernel and memory stays bounded. After the first write
// error (stdout closed) events are dropped and counted too.
type queue struct {
	w        Sink
	ch       chan event.Event
	done     chan struct{}
	dropped  atomic.Uint64
	written  atomic.Uint64
	inflight atomic.Bool // an event is inside w's Write

	mu      sync.Mutex
	err     error
	onError func(error)
	onFull  func(event.Event) // see OnFull

	// sending guards ch against Close: writers from timers and other
	// goroutines may come late, and are then dropped and counted.
	sending sync.RWMutex
	closed  bool
}

// newQueue starts writing to w from a queue of size events. onError, if
// not nil, is called once, from the writing goroutine, with the first write
// error.
func newQueue(w Sink, size int, onError func(error)) *queue {
	q := &queue{w: w, ch: make(chan event.Event, size), done: make(chan struct{}), onError: onError}
	go q.loop()
	return q
}

func (q *queue) loop() {
	defer close(q.done)
	for item := range q.ch {
		if q.Err() != nil {
			q.dropped.Add(1)
			continue
		}
		q.inflight.Store(true)
		err := q.w.Write(item)
		q.inflight.Store(false)
		if err != nil {
			q.dropped.Add(1)
			q.mu.Lock()
			q.err = err
			q.mu.Unlock()
			if q.onError != nil {
				q.onError(err)
			}
			continue
		}
		q.written.Add(1)
	}
}

// OnFull sets a function that receives every event dropped because the
// queue was full (not those dropped after a write error or Close: they
// were not given up on for good). Call it before the first Write.
func (q *queue) OnFull(f func(event.Event)) *queue {
	q.onFull = f
	return q
}

// Write queues ev; it never blocks.
func (q *queue) Write(ev event.Event) error {
	q.put(ev)
	return nil
}

// put queues ev, or drops and counts it when the queue is full or closed.
func (q *queue) put(ev event.Event) {
	q.sending.RLock()
	defer q.sending.RUnlock()
	if q.closed {
		q.dropped.Add(1)
		return
	}
	select {
	case q.ch <- ev:
	default:
		q.dropped.Add(1)
		if q.onFull != nil {
			q.onFull(ev)
		}
	}
}

// Err is the first write error, if any.
func (q *queue) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// pending is how many events are queued or being written.
func (q *queue) pending() int {
	n := len(q.ch)
	if q.inflight.Load() {
		n++
	}
	return n
}

// Dropped is how many events were not written: the queue was full, the
// writer had failed, or Close gave up on them.
func (q *queue) Dropped() uint64 { return q.dropped.Load() }

// Written is how many events were written.
func (q *queue) Written() uint64 { return q.written.Load() }

// Close stops taking events and waits up to timeout for the queued ones to
// be written. It reports whether everything was written; what is still
// queued at the timeout is counted as dropped, and so is anything written
// after Close.
func (q *queue) Close(timeout time.Duration) bool {
	q.sending.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.sending.Unlock()
	select {
	case <-q.done:
		return true
	case <-time.After(timeout):
		n := uint64(len(q.ch))
		if q.inflight.Load() {
			n++ // the one stuck in the writer
		}
		q.dropped.Add(n)
		return false
	}
}
