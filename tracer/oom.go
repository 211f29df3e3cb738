package tracer

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/oomtrace/oomtrace/event"
)

// oomTracer is the OOM kill half of the tracer.
type oomTracer struct {
	t       *Tracer
	maps    oomtraceMaps
	reader  *ringbuf.Reader
	signals *ringbuf.Reader // SIGTERMs and SIGKILLs other than the OOM killer's
	decoder Decoder
	procfs  procfs

	decoded       atomic.Uint64
	exitingMarked atomic.Uint64
}

func newOOMTracer(t *Tracer, cfg Config, opts ebpf.CollectionOptions) (*oomTracer, error) {
	o := &oomTracer{t: t, procfs: newProcfs(cfg.ProcfsPath)}
	spec, err := loadOomtrace()
	if err != nil {
		return nil, err
	}
	sizeRingBuffers(spec)
	spec.Maps[oomtraceMapOomEvents].MaxEntries = uint32(cfg.RingBufferBytes)
	if err := spec.LoadAndAssign(&o.maps, &opts); err != nil {
		o.close()
		return nil, fmt.Errorf("load OOM maps: %w", err)
	}
	opts.MapReplacements = map[string]*ebpf.Map{
		oomtraceMapOomEvents:    o.maps.OomEvents,
		oomtraceMapStats:        o.maps.Stats,
		oomtraceMapDecisions:    o.maps.Decisions,
		oomtraceMapKillSignals:  o.maps.KillSignals,
		oomtraceMapSignalEvents: o.maps.SignalEvents,
	}

	t.hooks.Decision = t.att.attachFirst(spec, opts, decisionCandidates(cfg.DecisionHook))
	// Before the victim hook, so that no kill is seen without its signal.
	t.hooks.Signal = t.att.attachFirst(spec, opts, signalCandidates(cfg.VictimHook))
	if t.hooks.Signal == "" {
		t.log.Warn("no signal hook: tasks the OOM killer found exiting will be reported as kills too")
	}
	victimCands := victimCandidates(cfg.VictimHook)
	t.hooks.Victim = t.att.attachFirst(spec, opts, victimCands)
	if t.hooks.Victim == "" {
		o.close()
		return nil, t.att.noHookError("mark_victim", victimCands)
	}

	o.reader, err = ringbuf.NewReader(o.maps.OomEvents)
	if err != nil {
		o.close()
		return nil, fmt.Errorf("open OOM ring buffer: %w", err)
	}
	o.signals, err = ringbuf.NewReader(o.maps.SignalEvents)
	if err != nil {
		o.close()
		return nil, fmt.Errorf("open signal ring buffer: %w", err)
	}
	o.decoder = Decoder{
		Node:     cfg.Node,
		PageSize: uint64(os.Getpagesize()),
		WallTime: bootToWall,
	}
	return o, nil
}

// run reads OOM kill records until the ring buffer is flushed or closed.
func (o *oomTracer) run(handle func(event.OOMKill)) error {
	return readRecords(o.reader, "OOM", func(raw []byte) {
		ev, sigkillSeen, err := o.decoder.DecodeOOMKill(raw)
		if err != nil {
			o.t.decodeError("oom_kill", err)
			return
		}
		if !sigkillSeen && o.t.hooks.Signal != "" {
			o.exitingMarked.Add(1)
			o.t.log.Debug("OOM killer granted reserves to an exiting task; not a kill",
				"pid", ev.Victim.PID, "tgid", ev.Victim.TGID)
			return
		}
		o.decoded.Add(1)
		o.procfs.completeFromProcfs(&ev)
		handle(ev)
	})
}

// runSignals reads task signal records until the ring buffer is flushed or
// closed. handle may be nil: the records are then read and dropped.
func (o *oomTracer) runSignals(handle func(event.TaskSignal)) error {
	return readRecords(o.signals, "signal", func(raw []byte) {
		ev, err := o.decoder.DecodeTaskSignal(raw)
		if err != nil {
			o.t.decodeError("task_signal", err)
			return
		}
		if handle == nil {
			return
		}
		if ev.Target.Memcg == nil {
			// The classic tracepoint names the target only: it usually
			// still lives, handling its SIGTERM.
			ev.Target.Memcg = o.procfs.memcgOfPID(ev.Target.PID)
		}
		handle(ev)
	})
}

// readRecords hands each record of r to handle until r is flushed or closed.
func readRecords(r *ringbuf.Reader, what string, handle func(raw []byte)) error {
	var rec ringbuf.Record
	for {
		err := r.ReadInto(&rec)
		if isEndOfStream(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s ring buffer: %w", what, err)
		}
		handle(rec.RawSample)
	}
}

func (o *oomTracer) stats(s *Stats) error {
	var err error
	if s.Sent, err = sumPerCPU(o.maps.Stats, uint32(oomtraceStatIndexSTAT_OOM_SENT)); err != nil {
		return err
	}
	if s.Lost, err = sumPerCPU(o.maps.Stats, uint32(oomtraceStatIndexSTAT_OOM_LOST)); err != nil {
		return err
	}
	if s.SignalsSent, err = sumPerCPU(o.maps.Stats, uint32(oomtraceStatIndexSTAT_SIGNAL_SENT)); err != nil {
		return err
	}
	if s.SignalsLost, err = sumPerCPU(o.maps.Stats, uint32(oomtraceStatIndexSTAT_SIGNAL_LOST)); err != nil {
		return err
	}
	s.Decoded = o.decoded.Load()
	s.ExitingMarked = o.exitingMarked.Load()
	return nil
}

func (o *oomTracer) close() error {
	var errs []error
	if o.reader != nil {
		errs = append(errs, o.reader.Close())
	}
	if o.signals != nil {
		errs = append(errs, o.signals.Close())
	}
	errs = append(errs, o.maps.Close())
	return errors.Join(errs...)
}
