package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/oomtrace/oomtrace/event"
)

// Hook names of the commit refusal side.
const (
	HookFexitVMEnoughMemory     = "fexit/__vm_enough_memory"
	HookKretprobeVMEnoughMemory = "kretprobe/__vm_enough_memory"
	hookSyscallExitPrefix       = "tracepoint/syscalls/sys_exit_"
)

// refusalSyscalls lists the watched syscalls: name, enum value, program.
var refusalSyscalls = []struct {
	name    string
	id      refusalRefusalSyscall
	program string
}{
	{"mmap", refusalRefusalSyscallSYSCALL_MMAP, refusalProgSysExitMmap},
	{"brk", refusalRefusalSyscallSYSCALL_BRK, refusalProgSysExitBrk},
	{"mremap", refusalRefusalSyscallSYSCALL_MREMAP, refusalProgSysExitMremap},
	{"mprotect", refusalRefusalSyscallSYSCALL_MPROTECT, refusalProgSysExitMprotect},
	{"clone", refusalRefusalSyscallSYSCALL_CLONE, refusalProgSysExitClone},
	{"clone3", refusalRefusalSyscallSYSCALL_CLONE3, refusalProgSysExitClone3},
	{"fork", refusalRefusalSyscallSYSCALL_FORK, refusalProgSysExitFork},
	{"vfork", refusalRefusalSyscallSYSCALL_VFORK, refusalProgSysExitVfork},
	{"shmget", refusalRefusalSyscallSYSCALL_SHMGET, refusalProgSysExitShmget},
	{"execve", refusalRefusalSyscallSYSCALL_EXECVE, refusalProgSysExitExecve},
}

func syscallName(id uint16) (string, bool) {
	for _, s := range refusalSyscalls {
		if uint16(s.id) == id {
			return s.name, true
		}
	}
	return "", false
}

// refusalTracer is the commit refusal half of the tracer.
type refusalTracer struct {
	t       *Tracer
	maps    refusalMaps
	reader  *ringbuf.Reader
	decoder refusalDecoder
	window  time.Duration
	procfs  string

	// The aggregator: only the reader goroutine touches it.
	pending map[refusalRefusalKey]*refusalState
}

// refusalState is what has been written for one aggregation key.
type refusalState struct {
	printed  uint64              // refusals written so far (sum of counts)
	last     event.CommitRefusal // the latest recorded refusal
	deadline time.Time           // when to write the repeats; zero when none are due
	seen     time.Time           // last activity, for pruning
}

func newRefusalTracer(t *Tracer, cfg Config, opts ebpf.CollectionOptions) (*refusalTracer, error) {
	r := &refusalTracer{t: t, window: cfg.RefusalWindow, procfs: cfg.ProcfsPath, pending: map[refusalRefusalKey]*refusalState{}}
	spec, err := loadRefusal()
	if err != nil {
		return nil, err
	}
	if err := spec.LoadAndAssign(&r.maps, &opts); err != nil {
		r.close()
		return nil, fmt.Errorf("load refusal maps: %w", err)
	}
	host, err := readHostMemory(r.procfs)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("read commit accounting settings: %w", err)
	}
	settings := refusalRefusalConfig{WindowNs: uint64(cfg.RefusalWindow), MaxMapCount: uint32(host.MaxMapCount)}
	if err := r.maps.RefusalSettings.Put(uint32(0), &settings); err != nil {
		r.close()
		return nil, fmt.Errorf("configure refusal programs: %w", err)
	}
	opts.MapReplacements = map[string]*ebpf.Map{
		refusalMapRefusalEvents:   r.maps.RefusalEvents,
		refusalMapRefusalStats:    r.maps.RefusalStats,
		refusalMapRefusalSettings: r.maps.RefusalSettings,
		refusalMapRefusalCounts:   r.maps.RefusalCounts,
		refusalMapExactRefusals:   r.maps.ExactRefusals,
		refusalMapVmEnoughArgs:    r.maps.VmEnoughArgs,
	}

	// The exact hook first: a refusal it sees must find the exit hook ready.
	t.hooks.RefusalExact = r.attachExact(spec, opts, cfg.RefusalHook)
	// All syscall exit programs in one load; one by one only if that fails
	// (a syscall's tracepoint may be missing: fork and vfork on arm64).
	var names []string
	for _, sc := range refusalSyscalls {
		names = append(names, sc.program)
	}
	loaded, err := loadPrograms(spec, opts, names)
	if err != nil {
		t.log.Info("loading the syscall exit programs together failed, loading one by one", "reason", err)
		loaded = nil
	}
	for _, sc := range refusalSyscalls {
		c := candidate{hookSyscallExitPrefix + sc.name, sc.program, func(p *ebpf.Program) (link.Link, error) {
			return link.Tracepoint("syscalls", "sys_exit_"+sc.name, p, nil)
		}}
		var err error
		if prog := loaded[sc.program]; prog != nil {
			err = t.attachLoaded(prog, c)
		} else {
			err = t.attach(spec, opts, c)
		}
		if err != nil {
			t.hooks.Tried[c.name] = err
			t.log.Info("syscall hook unavailable", "hook", c.name, "reason", err)
			continue
		}
		t.hooks.RefusalSyscalls = append(t.hooks.RefusalSyscalls, c.name)
	}
	if len(t.hooks.RefusalSyscalls) == 0 {
		r.close()
		return nil, &NoHookError{What: "commit refusals", Detail: fmt.Sprintf(": %v", t.hooks.Tried[hookSyscallExitPrefix+"mmap"])}
	}
	t.log.Info("attached syscall exit hooks", "count", len(t.hooks.RefusalSyscalls))

	r.reader, err = ringbuf.NewReader(r.maps.RefusalEvents)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("open refusal ring buffer: %w", err)
	}
	r.decoder = refusalDecoder{
		Node:         cfg.Node,
		PageSize:     uint64(os.Getpagesize()),
		WallTime:     bootToWall,
		AddressSpace: addressSpaceSize(),
		ExactHooked:  t.hooks.RefusalExact != "",
	}
	return r, nil
}

// attachExact attaches fexit, else kprobe+kretprobe, on __vm_enough_memory.
func (r *refusalTracer) attachExact(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions, choice string) string {
	t := r.t
	if choice == HookNone {
		return ""
	}
	if choice == HookAuto || choice == "" || choice == HookFexit {
		if got := t.attachFirst(spec, opts, []candidate{{HookFexitVMEnoughMemory, refusalProgFexitVmEnoughMemory, tracing}}); got != "" {
			return got
		}
		if choice == HookFexit {
			return ""
		}
	}
	entry := candidate{"kprobe/__vm_enough_memory", refusalProgKprobeVmEnoughMemory, func(p *ebpf.Program) (link.Link, error) {
		return link.Kprobe("__vm_enough_memory", p, nil)
	}}
	if err := t.attach(spec, opts, entry); err != nil {
		t.hooks.Tried[HookKretprobeVMEnoughMemory] = err
		t.log.Info("hook unavailable, falling back", "hook", HookKretprobeVMEnoughMemory, "reason", err)
		return ""
	}
	return t.attachFirst(spec, opts, []candidate{{HookKretprobeVMEnoughMemory, refusalProgKretprobeVmEnoughMemory, func(p *ebpf.Program) (link.Link, error) {
		return link.Kretprobe("__vm_enough_memory", p, nil)
	}}})
}

// addressSpaceSize is the size of a user address space (TASK_SIZE): a
// request above it can never be placed.
func addressSpaceSize() uint64 {
	// x86-64 and arm64 with 4-level tables: 47 or 48 bits; 5-level: 56.
	// The most permissive bound keeps the rule exact: beyond it nothing fits.
	return 1 << 56
}

// run reads refusal records and writes repeats when their window closes,
// until the ring buffer is flushed or closed; then it writes every pending
// repeat count.
func (r *refusalTracer) run(handle func(event.CommitRefusal)) error {
	var rec ringbuf.Record
	defer r.flushAll(handle)
	for {
		r.reader.SetDeadline(r.nextDeadline())
		err := r.reader.ReadInto(&rec)
		switch {
		case isEndOfStream(err):
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			r.flushDue(handle, time.Now())
			continue
		case err != nil:
			return fmt.Errorf("read refusal ring buffer: %w", err)
		}
		raw, err := r.decoder.decodeRaw(rec.RawSample)
		if err != nil {
			r.t.decodeError("commit_refusal", err)
			continue
		}
		host, err := readHostMemory(r.procfs)
		if err != nil {
			r.t.log.Warn("read commit accounting settings", "err", err)
		}
		ev, err := r.decoder.event(&raw, host)
		if err != nil {
			r.t.decodeError("commit_refusal", err)
			continue
		}
		key := refusalRefusalKey{Tgid: raw.Process.Tgid, Syscall: raw.Syscall, Class: raw.Class}
		st := r.pending[key]
		if st == nil {
			st = &refusalState{}
			r.pending[key] = st
		}
		ev.Count = delta(raw.Total, st.printed)
		st.printed = raw.Total
		st.last = ev
		st.seen = time.Now()
		st.deadline = st.seen.Add(r.window)
		handle(ev)
	}
}

// delta is how many refusals a total stands for beyond what was written.
// A total below it means the kernel's entry was evicted and started anew.
func delta(total, printed uint64) uint64 {
	if total < printed {
		return total
	}
	return total - printed
}

// nextDeadline is when the reader must wake up for the next due flush.
func (r *refusalTracer) nextDeadline() time.Time {
	var next time.Time
	for _, st := range r.pending {
		if !st.deadline.IsZero() && (next.IsZero() || st.deadline.Before(next)) {
			next = st.deadline
		}
	}
	if next.IsZero() {
		// Nothing due: wake up now and then to prune idle keys.
		next = time.Now().Add(time.Minute)
	}
	return next
}

// flushDue writes the repeats of every key whose window has closed.
func (r *refusalTracer) flushDue(handle func(event.CommitRefusal), now time.Time) {
	for _, key := range r.sortedKeys() {
		st := r.pending[key]
		if !st.deadline.IsZero() && !now.Before(st.deadline) {
			r.flush(handle, key, st, now)
		}
		if st.deadline.IsZero() && now.Sub(st.seen) > idleKeyTTL {
			r.prune(key, st)
		}
	}
}

// idleKeyTTL is how long a key without refusals is remembered.
const idleKeyTTL = 10 * time.Minute

func (r *refusalTracer) flushAll(handle func(event.CommitRefusal)) {
	now := time.Now()
	for _, key := range r.sortedKeys() {
		r.flush(handle, key, r.pending[key], now)
	}
}

func (r *refusalTracer) sortedKeys() []refusalRefusalKey {
	keys := make([]refusalRefusalKey, 0, len(r.pending))
	for k := range r.pending {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.Tgid != b.Tgid {
			return a.Tgid < b.Tgid
		}
		if a.Syscall != b.Syscall {
			return a.Syscall < b.Syscall
		}
		return a.Class < b.Class
	})
	return keys
}

// flush writes one line for the refusals of key not written yet.
func (r *refusalTracer) flush(handle func(event.CommitRefusal), key refusalRefusalKey, st *refusalState, now time.Time) {
	st.deadline = time.Time{}
	var cnt refusalRefusalCount
	if err := r.maps.RefusalCounts.Lookup(&key, &cnt); err != nil {
		return // evicted: nothing more can be known
	}
	n := delta(cnt.Total, st.printed)
	if n == 0 {
		return
	}
	st.printed = cnt.Total
	ev := st.last
	ev.Time = event.Time{Time: now}
	ev.Count = n
	ev.Repeated = true
	if host, err := readHostMemory(r.procfs); err == nil {
		ev.Overcommit = overcommitOf(host)
	}
	handle(ev)
}

// prune forgets an idle key here and in the kernel, unless it moved again.
func (r *refusalTracer) prune(key refusalRefusalKey, st *refusalState) {
	var cnt refusalRefusalCount
	if err := r.maps.RefusalCounts.Lookup(&key, &cnt); err == nil && cnt.Total != st.printed {
		return
	}
	r.maps.RefusalCounts.Delete(&key)
	delete(r.pending, key)
}

func (r *refusalTracer) stats(s *Stats) error {
	var err error
	if s.RefusalsFailed, err = sumPerCPU(r.maps.RefusalStats, uint32(refusalRefusalStatIndexRSTAT_FAILED)); err != nil {
		return err
	}
	if s.RefusalsSent, err = sumPerCPU(r.maps.RefusalStats, uint32(refusalRefusalStatIndexRSTAT_SENT)); err != nil {
		return err
	}
	if s.RefusalsLost, err = sumPerCPU(r.maps.RefusalStats, uint32(refusalRefusalStatIndexRSTAT_LOST)); err != nil {
		return err
	}
	return nil
}

func (r *refusalTracer) close() error {
	var errs []error
	if r.reader != nil {
		errs = append(errs, r.reader.Close())
	}
	errs = append(errs, r.maps.Close())
	return errors.Join(errs...)
}

// rawRefusal is the C struct refusal_event (bpf/oomtrace.h), generated by bpf2go.
type rawRefusal = refusalRefusalEvent

// RefusalEventSize is the size of one refusal record in the ring buffer.
var RefusalEventSize = binary.Size(rawRefusal{})

// refusalDecoder turns refusal records into events. decodeRaw and event
// are pure functions of their inputs and the decoder's fields.
type refusalDecoder struct {
	Node         string
	PageSize     uint64
	WallTime     func(bootNs uint64) time.Time
	AddressSpace uint64
	ExactHooked  bool
}

func (d *refusalDecoder) decodeRaw(record []byte) (rawRefusal, error) {
	var raw rawRefusal
	if len(record) < RefusalEventSize {
		return raw, fmt.Errorf("refusal event: %w: %d of %d bytes", ErrShortRecord, len(record), RefusalEventSize)
	}
	if _, err := binary.Decode(record[:RefusalEventSize], binary.NativeEndian, &raw); err != nil {
		return raw, fmt.Errorf("refusal event: %w", err)
	}
	if raw.Type != uint32(oomtraceEventTypeEVENT_COMMIT_REFUSAL) {
		return raw, fmt.Errorf("refusal event: unexpected type %d", raw.Type)
	}
	return raw, nil
}

const capSysAdmin = 21 // include/uapi/linux/capability.h

func (d *refusalDecoder) event(raw *rawRefusal, host hostMemory) (event.CommitRefusal, error) {
	name, ok := syscallName(raw.Syscall)
	if !ok {
		return event.CommitRefusal{}, fmt.Errorf("refusal event: unknown syscall %d", raw.Syscall)
	}
	if raw.Class > uint8(refusalRefusalClassCLASS_EXACT) {
		return event.CommitRefusal{}, fmt.Errorf("refusal event: unknown class %d", raw.Class)
	}
	hook := hookSyscallExitPrefix + name
	switch refusalExactHook(raw.ExactHook) {
	case refusalExactHookEXACT_HOOK_NONE:
	case refusalExactHookEXACT_HOOK_FEXIT:
		hook = HookFexitVMEnoughMemory + "+" + hook
	case refusalExactHookEXACT_HOOK_KRETPROBE:
		hook = HookKretprobeVMEnoughMemory + "+" + hook
	default:
		return event.CommitRefusal{}, fmt.Errorf("refusal event: unknown exact hook %d", raw.ExactHook)
	}
	facts := refusalFacts{
		RequestBytes: raw.RequestBytes,
		Accountable:  raw.Accountable != 0,
		Class:        refusalRefusalClass(raw.Class),
		ExactSeen:    raw.ExactHook != 0,
		ExactHooked:  d.ExactHooked,
		CapSysAdmin:  raw.CapEffective&(1<<capSysAdmin) != 0,
		TotalVMBytes: raw.TotalVmPages * d.PageSize,
	}
	if raw.ExactHook != 0 {
		facts.CapSysAdmin = raw.ExactCapSysAdmin != 0
	}
	reason, by := classifyRefusal(facts, host, d.AddressSpace)
	uid := raw.Process.Uid
	ev := event.CommitRefusal{
		Type: event.TypeCommitRefusal,
		Time: event.Time{Time: wallTime(d.WallTime, raw.TsBootNs)},
		Node: d.Node,
		Hook: hook,
		Process: event.Process{
			PID:       raw.Process.Pid,
			TGID:      raw.Process.Tgid,
			Comm:      cString(raw.Process.Comm[:]),
			UID:       &uid,
			Cgroup2ID: raw.Process.Cgroup2Id,
			Memcg:     cgroupFromKernel(raw.Memcg.Id, raw.Memcg.Valid, raw.Memcg.Truncated, raw.Memcg.Len, raw.Memcg.Path[:]),
		},
		Syscall:      name,
		RequestBytes: raw.RequestBytes,
		Reason:       reason,
		ClassifiedBy: by,
		Overcommit:   overcommitOf(host),
		Count:        1,
	}
	return ev, nil
}

func overcommitOf(h hostMemory) event.Overcommit {
	return event.Overcommit{Mode: h.Mode, Ratio: h.Ratio, CommitLimitBytes: h.CommitLimit, CommittedBytes: h.Committed}
}
