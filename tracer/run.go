// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"context"
	"errors"
	"sync"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/oomtrace/oomtrace/event"
)

// Handlers receive events. They are never called concurrently.
type Handlers struct {
	// OOMKill receives each kill with its commit: the kill's record stays
	// in the ring buffer until commit is called, so that a successor that
	// takes over after this process dies reads again what it had not
	// written out. Call commit once, when the kill is written or dropped
	// for good (from any goroutine); a handler that keeps nothing calls
	// it before it returns. A nil OOMKill commits every kill at once.
	OOMKill       func(ev event.OOMKill, commit func())
	CommitRefusal func(event.CommitRefusal)
	// TaskSignal receives SIGTERMs and SIGKILLs to processes other than
	// the OOM killer's (needs the signal hook).
	TaskSignal func(event.TaskSignal)
}

// flush ends every reader after what is already in its ring buffer.
func (t *Tracer) flush() {
	t.oom.kills.Flush()
	t.oom.signals.Flush()
	if t.refusal != nil {
		t.refusal.reader.Flush()
	}
}

// Run reads events and passes them to h until ctx is done. It then detaches
// every hook, so no new events arrive, hands over every record still in the
// ring buffers and every pending refusal count, and returns nil. Records
// that cannot be decoded are counted and logged, not fatal.
func (t *Tracer) Run(ctx context.Context, h Handlers) error {
	var hmu sync.Mutex
	// Each kill goes out with the commit of its own record.
	oomKill := func(ev event.OOMKill) {
		commit := func() { t.oom.commit(ev.Seq) }
		if h.OOMKill == nil {
			commit()
			return
		}
		hmu.Lock()
		defer hmu.Unlock()
		h.OOMKill(ev, commit)
	}
	serial := Handlers{
		CommitRefusal: func(ev event.CommitRefusal) {
			if h.CommitRefusal != nil {
				hmu.Lock()
				defer hmu.Unlock()
				h.CommitRefusal(ev)
			}
		},
	}
	if h.TaskSignal != nil {
		serial.TaskSignal = func(ev event.TaskSignal) {
			hmu.Lock()
			defer hmu.Unlock()
			h.TaskSignal(ev)
		}
	}

	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			t.detach()
			t.flush()
		case <-stop:
		}
	}()

	go t.watchUnobserved(ctx)
	errs := make(chan error, 3)
	go func() { errs <- t.oom.run(oomKill) }()
	go func() { errs <- t.oom.runSignals(serial.TaskSignal) }()
	n := 2
	if t.refusal != nil {
		n++
		go func() { errs <- t.refusal.run(serial.CommitRefusal) }()
	}
	var first error
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil && first == nil {
			first = err
			// One reader failed: stop the others too.
			t.detach()
			t.flush()
		}
	}
	return first
}

// isEndOfStream tells a reader loop that the ring buffer was flushed or closed.
func isEndOfStream(err error) bool {
	return errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed)
}
