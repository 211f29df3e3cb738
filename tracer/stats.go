// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/cilium/ebpf"
)

// Stats are the tracer's counters: the kernel's since the maps were made
// (pinned: across restarts, as long as the record layout stays), the
// decoders' since this tracer was created.
type Stats struct {
	Sent         uint64 // OOM kill records the kernel wrote
	Lost         uint64 // OOM kill records the kernel dropped: the ring buffer was full
	Decoded      uint64 // OOM kill records decoded into events
	DecodeErrors uint64 // records of either kind that could not be decoded
	// ExitingMarked counts tasks the OOM killer found exiting already and
	// did not kill (mark_victim without its SIGKILL): not reported as kills.
	ExitingMarked uint64

	RefusalsFailed uint64 // failed calls the kernel saw: exact
	RefusalsSent   uint64 // refusal records the kernel wrote (first of each window)
	RefusalsLost   uint64 // refusal records the ring buffer had no room for

	SignalsSent uint64 // task signal records the kernel wrote
	SignalsLost uint64 // task signal records the ring buffer had no room for
	// SignalsLimited are task signals not recorded: their target's cgroup
	// had had its budget of records (32 a second) already.
	SignalsLimited uint64
}

// Stats reads the kernel's counters and the decoders'.
func (t *Tracer) Stats() (Stats, error) {
	var s Stats
	if err := t.oom.stats(&s); err != nil {
		return Stats{}, err
	}
	if t.refusal != nil {
		if err := t.refusal.stats(&s); err != nil {
			return Stats{}, err
		}
	}
	s.DecodeErrors = t.diag.decodeErrors.Load()
	return s, nil
}

// perCPUStat is a slot of a per-CPU array of counters and where its sum
// goes.
type perCPUStat struct {
	index uint32
	sum   *uint64
}

// readPerCPU sums each slot of the table of m into its Stats field.
func readPerCPU(m *ebpf.Map, table []perCPUStat) error {
	for _, st := range table {
		v, err := sumPerCPU(m, st.index)
		if err != nil {
			return err
		}
		*st.sum = v
	}
	return nil
}

// sumPerCPU reads one slot of a per-CPU array of counters.
func sumPerCPU(m *ebpf.Map, idx uint32) (uint64, error) {
	var perCPU []uint64
	if err := m.Lookup(idx, &perCPU); err != nil {
		return 0, fmt.Errorf("read stats: %w", err)
	}
	var sum uint64
	for _, v := range perCPU {
		sum += v
	}
	return sum, nil
}

// diag is what both halves of the tracer report through: the log and the
// count of records that could not be decoded.
type diag struct {
	log          *slog.Logger
	decodeErrors atomic.Uint64
}

func (d *diag) decodeError(kind string, err error) {
	d.decodeErrors.Add(1)
	d.log.Warn("dropping undecodable record", "kind", kind, "err", err)
}
