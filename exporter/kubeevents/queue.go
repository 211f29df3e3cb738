// SPDX-License-Identifier: Apache-2.0

package kubeevents

import "sync"

// fairQueue holds the writes waiting for the node's allowance, one queue
// per namespace, taken round-robin: a namespace whose pods are OOM-killed
// by the hundred waits its turn behind one write of each other namespace,
// instead of delaying theirs for tens of minutes. In a namespace a first
// Event goes before series patches (a kill the API has not heard of yet
// before a count of repeats). Bounded to size writes in all: when full, a
// namespace's write takes the place of the newest of the namespace with
// the most waiting, if that one has more than it.
type fairQueue struct {
	mu    sync.Mutex
	byNS  map[string]*nsQueue
	order []string // namespaces with writes waiting, in turn
	total int
	max   int
	ready chan struct{} // signalled when a write is pushed
}

type nsQueue struct {
	creates, patches []op
}

func (nq *nsQueue) len() int { return len(nq.creates) + len(nq.patches) }

func newFairQueue(size int) *fairQueue {
	return &fairQueue{byNS: map[string]*nsQueue{}, max: size, ready: make(chan struct{}, 1)}
}

// push queues o for namespace ns. When the queue is full it displaces
// the newest write of the namespace with the most waiting (its newest
// patch, else its newest Event), and returns it; or, when ns has as many
// waiting as any, refuses o. ok says o was queued.
func (q *fairQueue) push(ns string, o op) (displaced *op, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	nq := q.byNS[ns]
	if q.total >= q.max {
		var most *nsQueue
		for _, other := range q.byNS {
			if most == nil || other.len() > most.len() {
				most = other
			}
		}
		if most == nil || most == nq || nq != nil && most.len() <= nq.len()+1 {
			return nil, false
		}
		var d op
		if n := len(most.patches); n > 0 {
			d, most.patches = most.patches[n-1], most.patches[:n-1]
		} else {
			n := len(most.creates)
			d, most.creates = most.creates[n-1], most.creates[:n-1]
		}
		q.total--
		displaced = &d
	}
	if nq == nil {
		nq = &nsQueue{}
		q.byNS[ns] = nq
		q.order = append(q.order, ns)
	}
	if o.patch != nil {
		nq.patches = append(nq.patches, o)
	} else {
		nq.creates = append(nq.creates, o)
	}
	q.total++
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return displaced, true
}

// pop takes the next write: the first namespace in turn's first Event, or
// its first patch; the namespace goes to the back of the turn.
func (q *fairQueue) pop() (op, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.order) == 0 {
		return op{}, false
	}
	ns := q.order[0]
	q.order = q.order[1:]
	nq := q.byNS[ns]
	var o op
	if len(nq.creates) > 0 {
		o, nq.creates = nq.creates[0], nq.creates[1:]
	} else {
		o, nq.patches = nq.patches[0], nq.patches[1:]
	}
	q.total--
	if nq.len() == 0 {
		delete(q.byNS, ns)
	} else {
		q.order = append(q.order, ns)
	}
	return o, true
}

// len is how many writes wait.
func (q *fairQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.total
}
