// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/oomtrace/oomtrace/event"
)

// oomTracer is the OOM kill half of the tracer.
type oomTracer struct {
	diag *diag
	// signalHooked: the signal hook attached, so a mark_victim without its
	// SIGKILL is an exiting task, not a kill.
	signalHooked bool
	maps         oomtraceMaps
	kills        *journal // kills leave the ring buffer once written out
	signals      *journal // SIGTERMs and SIGKILLs other than the OOM killer's
	decoder      Decoder
	procfs       procfs

	decoded       atomic.Uint64
	exitingMarked atomic.Uint64

	mu sync.Mutex // guards the maps below
	// held: the kills handed out and not yet committed, by seq: where
	// their records end in the ring buffer.
	held map[uint64]uint64
	// written: seqs committed while an earlier kill was held, so still
	// in the ring buffer (and in the written map for a successor): where
	// their records end.
	written map[uint64]uint64
	// skip: seqs an earlier process wrote out, found in the written map
	// at start: not handed out again.
	skip map[uint64]bool
	// sizes: the record sizes of the held kills, for a spill, which
	// copies them out of the ring buffer (where they stay until then).
	sizes map[uint64]int
	// spilled: the held kills whose records were moved out of the ring
	// buffer into the spilled map.
	spilled map[uint64]bool
	// spillFullWarned: the spilled map was full once (logged once).
	spillFullWarned bool
}

// DefaultSignalNodeBudget is the node's task signal records a second past
// each target cgroup's first four: a node drain stops a few hundred
// containers in seconds, with a SIGTERM and maybe a SIGKILL each, and
// those are within the four.
const DefaultSignalNodeBudget = 512

// oomHooks are the OOM half's hooks (Hooks' fields of the same names).
type oomHooks struct{ decision, signal, victim string }

// newOOMTracer loads spec (sized, its maps pinned or not by opts) as
// generation gen and attaches its hooks with att.
func newOOMTracer(att *attacher, d *diag, cfg Config, opts ebpf.CollectionOptions, spec *ebpf.CollectionSpec, gen uint64) (*oomTracer, oomHooks, error) {
	var hooks oomHooks
	o := &oomTracer{diag: d, procfs: newProcfs(cfg.ProcfsPath), held: map[uint64]uint64{}, written: map[uint64]uint64{}, skip: map[uint64]bool{},
		sizes: map[uint64]int{}, spilled: map[uint64]bool{}}
	nodeBudget := cfg.SignalNodeBudget
	if nodeBudget == 0 {
		nodeBudget = DefaultSignalNodeBudget
	}
	groupRecords := cfg.GroupRecords
	if groupRecords == 0 {
		groupRecords = DefaultGroupRecords
	}
	if err := setVariables(spec, map[string]any{oomtraceVarGeneration: gen, oomtraceVarSignalNodeBudget: nodeBudget, oomtraceVarGroupRecordsMax: groupRecords}); err != nil {
		return nil, hooks, fmt.Errorf("configure OOM programs: %w", err)
	}
	if err := spec.LoadAndAssign(&o.maps, &opts); err != nil {
		o.close()
		return nil, hooks, fmt.Errorf("load OOM maps: %w", err)
	}
	opts.MapReplacements = map[string]*ebpf.Map{
		oomtraceMapControl:      o.maps.Control,
		oomtraceMapWritten:      o.maps.Written,
		oomtraceMapOomEvents:    o.maps.OomEvents,
		oomtraceMapStats:        o.maps.Stats,
		oomtraceMapDecisions:    o.maps.Decisions,
		oomtraceMapKillSignals:  o.maps.KillSignals,
		oomtraceMapSignalEvents: o.maps.SignalEvents,
		oomtraceMapGroupFolds:   o.maps.GroupFolds,
		oomtraceMapSpilled:      o.maps.Spilled,
	}

	hooks.decision = att.attachFirst(spec, opts, decisionCandidates(cfg.DecisionHook))
	// Before the victim hook, so that no kill is seen without its signal.
	hooks.signal = att.attachFirst(spec, opts, signalCandidates(cfg.VictimHook))
	if hooks.signal == "" {
		d.log.Warn("no signal hook: tasks the OOM killer found exiting will be reported as kills too")
	} else if err := setVariables(spec, map[string]any{oomtraceVarSignalHooked: uint8(1)}); err != nil {
		o.close()
		return nil, hooks, fmt.Errorf("configure OOM programs: %w", err)
	}
	victimCands := victimCandidates(cfg.VictimHook)
	hooks.victim = att.attachFirst(spec, opts, victimCands)
	if hooks.victim == "" {
		o.close()
		return nil, hooks, att.noHookError("mark_victim", victimCands)
	}

	var err error
	o.kills, err = newJournal(o.maps.OomEvents)
	if err != nil {
		o.close()
		return nil, hooks, fmt.Errorf("open OOM ring buffer: %w", err)
	}
	// What an earlier process wrote out past the consumer position.
	var seq uint64
	var one uint8
	it := o.maps.Written.Iterate()
	for it.Next(&seq, &one) {
		o.skip[seq] = true
	}
	if err := it.Err(); err != nil {
		d.log.Warn("cannot read which kills an earlier oomtrace wrote out: some may be written again", "err", err)
	}
	o.signals, err = newJournal(o.maps.SignalEvents)
	if err != nil {
		o.close()
		return nil, hooks, fmt.Errorf("open signal ring buffer: %w", err)
	}
	o.decoder = Decoder{
		Node:     cfg.Node,
		BootID:   bootID(),
		PageSize: uint64(os.Getpagesize()),
		WallTime: bootToWall,
	}
	o.signalHooked = hooks.signal != ""
	return o, hooks, nil
}

// run reads OOM kill records until the ring buffer is flushed or closed.
// Each kill handed to handle stays in the ring buffer until commit(seq).
func (o *oomTracer) run(handle func(event.OOMKill)) error {
	groups := newGroupHold(o.maps.GroupFolds, handle)
	defer groups.close()
	deliver := func(ev event.OOMKill, meta recordMeta) {
		o.decoded.Add(1)
		o.procfs.completeFromProcfs(&ev, meta.victimStart)
		if ev.OOM.Group != nil && groups.kill(ev, meta.tsBoot) {
			return // handed on when its decision is over
		}
		handle(ev)
	}
	// First what an earlier process held out of the ring buffer: those
	// kills came before any record still in it.
	for _, raw := range o.spilledRecords() {
		ev, meta, err := o.decoder.decodeOOMKill(raw)
		if err != nil {
			o.diag.decodeError("oom_kill", err)
			_ = o.maps.Spilled.Delete(binary.NativeEndian.Uint64(raw[spilledSeqOffset:]))
			continue
		}
		o.mu.Lock()
		o.spilled[ev.Seq] = true
		o.mu.Unlock()
		deliver(ev, meta)
	}
	return readRecords(o.kills, "OOM", func(raw []byte, end uint64) bool {
		ev, meta, err := o.decoder.decodeOOMKill(raw)
		if err != nil {
			o.diag.decodeError("oom_kill", err)
			return true
		}
		if !meta.sigkillSeen && o.signalHooked {
			o.exitingMarked.Add(1)
			o.diag.log.Debug("OOM killer granted reserves to an exiting task; not a kill",
				"pid", ev.Victim.PID, "tgid", ev.Victim.TGID)
			return true
		}
		o.mu.Lock()
		skip := o.skip[ev.Seq] || o.spilled[ev.Seq]
		if skip {
			delete(o.skip, ev.Seq)
		} else {
			o.held[ev.Seq] = end
			o.sizes[ev.Seq] = len(raw)
		}
		o.mu.Unlock()
		if skip {
			o.diag.log.Debug("kill written out by an earlier oomtrace; skipped", "seq", ev.Seq)
			// Out of the ring buffer first, then out of the written map: a
			// crash in between leaves a stale entry, not a line twice.
			o.kills.Commit(end)
			o.forget(ev.Seq)
			return false
		}
		deliver(ev, meta)
		o.relieve()
		return false // until commit(seq)
	})
}

// spilledSeqOffset is where a record's seq is.
var spilledSeqOffset = int(unsafe.Offsetof(rawOOMEvent{}.Seq))

// spilledRecords are the records in the spilled map, in seq order.
func (o *oomTracer) spilledRecords() [][]byte {
	var recs [][]byte
	var seq uint64
	raw := make([]byte, OOMEventSize)
	it := o.maps.Spilled.Iterate()
	for it.Next(&seq, &raw) {
		recs = append(recs, append([]byte(nil), raw...))
	}
	if err := it.Err(); err != nil {
		o.diag.log.Warn("cannot read the kills an earlier oomtrace held out of the ring buffer: some may be lost", "err", err)
	}
	slices.SortFunc(recs, func(a, b []byte) int {
		return cmp.Compare(binary.NativeEndian.Uint64(a[spilledSeqOffset:]), binary.NativeEndian.Uint64(b[spilledSeqOffset:]))
	})
	return recs
}

// relieve moves the records of the held kills out of the ring buffer,
// into the spilled map, once they take more than half of it: a kill
// waiting for its container's check or its group decision must not cost
// the ring buffer the room of other pods' kills coming meanwhile.
func (o *oomTracer) relieve() {
	if o.kills.Backlog() <= uint64(len(o.kills.ring))/2 {
		return
	}
	o.mu.Lock()
	seqs := slices.Sorted(maps.Keys(o.held))
	o.mu.Unlock()
	for _, seq := range seqs {
		o.mu.Lock()
		end, held := o.held[seq]
		size := o.sizes[seq]
		o.mu.Unlock()
		if !held {
			continue // committed meanwhile
		}
		rec := o.kills.RecordBefore(end, size)
		if rec == nil {
			return // closed
		}
		if err := o.maps.Spilled.Put(seq, rec[:min(len(rec), OOMEventSize)]); err != nil {
			if !o.spillFullWarned {
				o.spillFullWarned = true
				o.diag.log.Warn("cannot move held kills out of the ring buffer: new kills may be lost while these wait", "held", len(seqs), "err", err)
			}
			return
		}
		o.mu.Lock()
		_, held = o.held[seq]
		if held {
			delete(o.held, seq)
			delete(o.sizes, seq)
			o.spilled[seq] = true
		}
		o.mu.Unlock()
		if !held {
			// Committed between the copy and now: nothing to keep.
			_ = o.maps.Spilled.Delete(seq)
			continue
		}
		o.kills.Commit(end)
	}
	o.forgetPassed()
}

// commit says the kill seq was written out (or will never be): its record
// may leave the ring buffer. While an earlier kill is still held it stays,
// and its seq goes into the written map, for a successor to skip.
func (o *oomTracer) commit(seq uint64) {
	o.mu.Lock()
	end, ok := o.held[seq]
	delete(o.held, seq)
	delete(o.sizes, seq)
	spilled := o.spilled[seq]
	delete(o.spilled, seq)
	o.mu.Unlock()
	if spilled {
		if err := o.maps.Spilled.Delete(seq); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			o.diag.log.Warn("cannot clear a written kill held out of the ring buffer: a successor may write it again", "seq", seq, "err", err)
		}
		return
	}
	if !ok {
		return
	}
	if !o.kills.Commit(end) {
		var one uint8 = 1
		if err := o.maps.Written.Put(seq, one); err != nil {
			o.diag.log.Warn("cannot record a kill as written: a successor may write it again", "seq", seq, "err", err)
		}
		o.mu.Lock()
		o.written[seq] = end
		o.mu.Unlock()
		return
	}
	o.forgetPassed()
}

// forgetPassed forgets the written seqs the consumer position passed.
func (o *oomTracer) forgetPassed() {
	pos := o.kills.Position()
	o.mu.Lock()
	var passed []uint64
	for s, e := range o.written {
		if e <= pos {
			passed = append(passed, s)
			delete(o.written, s)
		}
	}
	o.mu.Unlock()
	for _, s := range passed {
		o.forget(s)
	}
}

// forget removes seq from the written map.
func (o *oomTracer) forget(seq uint64) {
	if err := o.maps.Written.Delete(seq); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		o.diag.log.Warn("cannot clear a written kill", "seq", seq, "err", err)
	}
}

// runSignals reads task signal records until the ring buffer is flushed or
// closed. handle may be nil: the records are then read and dropped.
func (o *oomTracer) runSignals(handle func(event.TaskSignal)) error {
	return readRecords(o.signals, "signal", func(raw []byte, _ uint64) bool {
		ev, err := o.decoder.DecodeTaskSignal(raw)
		if err != nil {
			o.diag.decodeError("task_signal", err)
			return true
		}
		if handle == nil {
			return true
		}
		if ev.Target.Memcg == nil {
			// The classic tracepoint names the target only: it usually
			// still lives, handling its SIGTERM.
			ev.Target.Memcg = o.procfs.memcgOfPID(ev.Target.PID)
		}
		handle(ev)
		return true
	})
}

// readRecords hands each record of j, and where it ends, to handle until j
// is flushed or closed. A record leaves the ring buffer when handle returns
// true, else when the caller commits its end.
func readRecords(j *journal, what string, handle func(raw []byte, end uint64) (done bool)) error {
	var buf []byte
	for {
		raw, end, err := j.Read(buf)
		if isEndOfStream(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s ring buffer: %w", what, err)
		}
		buf = raw
		if handle(raw, end) {
			j.Commit(end)
		}
	}
}

func (o *oomTracer) stats(s *Stats) error {
	err := readPerCPU(o.maps.Stats, []perCPUStat{
		{uint32(oomtraceStatIndexSTAT_OOM_SENT), &s.Sent},
		{uint32(oomtraceStatIndexSTAT_OOM_LOST), &s.Lost},
		{uint32(oomtraceStatIndexSTAT_SIGNAL_SENT), &s.SignalsSent},
		{uint32(oomtraceStatIndexSTAT_SIGNAL_LOST), &s.SignalsLost},
		{uint32(oomtraceStatIndexSTAT_SIGNAL_LIMITED), &s.SignalsLimited},
	})
	s.Decoded = o.decoded.Load()
	s.ExitingMarked = o.exitingMarked.Load()
	return err
}

func (o *oomTracer) close() error {
	var errs []error
	if o.kills != nil {
		errs = append(errs, o.kills.Close())
	}
	if o.signals != nil {
		errs = append(errs, o.signals.Close())
	}
	errs = append(errs, o.maps.Close())
	return errors.Join(errs...)
}
