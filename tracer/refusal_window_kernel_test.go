package tracer

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// TestRefusalWindowBounded: a refusal from each of many new processes (one
// failing mmap per process is all a tenant needs) keeps at most maxKeys
// keys; the key seen longest ago has its repeats written when it goes, so
// no refusal is left uncounted, and a window closes in O(1). The kernel's
// counts are a real BPF map, as the programs keep them.
func TestRefusalWindowBounded(t *testing.T) {
	testenv.RequirePrivileged(t)
	counts, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 16, MaxEntries: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	defer counts.Close()
	r := &refusalTracer{window: time.Second, refusalWindow: newRefusalWindow()}
	r.maps.RefusalCounts = counts
	r.maxKeys = 100

	var written uint64
	lines := 0
	handle := func(ev event.CommitRefusal) { written += ev.Count; lines++ }
	now := time.Unix(1_800_000_000, 0)
	const procs = 10000
	for pid := range procs {
		key := refusalRefusalKey{Tgid: uint32(1000 + pid), Syscall: 9}
		// Each process failed 3 times in the window: the kernel counted 3
		// and sent the first.
		if err := counts.Put(&key, &refusalRefusalCount{Total: 3}); err != nil {
			t.Fatal(err)
		}
		r.fold(handle, key, kernelCount{Total: 1, WindowStartNs: uint64(pid + 1)}, event.CommitRefusal{Count: 1}, now)
		if len(r.pending) > r.maxKeys || r.bySeen.Len() != len(r.pending) {
			t.Fatalf("after %d processes: %d keys, %d in the lru, want at most %d", pid+1, len(r.pending), r.bySeen.Len(), r.maxKeys)
		}
		now = now.Add(time.Millisecond)
	}
	// The windows close: every remaining key writes its 2 repeats.
	r.flushDue(handle, now.Add(2*time.Second))
	if written != 3*procs {
		t.Errorf("%d refusals written, want %d: repeats lost with the keys that went", written, 3*procs)
	}
	if len(r.due) != 0 {
		t.Errorf("%d windows left to close", len(r.due))
	}
	// Idle keys go, here and in the kernel.
	r.flushDue(handle, now.Add(idleKeyTTL+time.Minute))
	if len(r.pending) != 0 || r.bySeen.Len() != 0 {
		t.Errorf("%d idle keys kept", len(r.pending))
	}
	var k refusalRefusalKey
	if err := counts.NextKey(nil, &k); err == nil {
		t.Errorf("the kernel still counts key %+v", k)
	}
}

// TestRefusalRecordOlderThanFlush: the kernel opens a window and sends its
// first refusal while the reader's timer closes the last one; the flush
// reads the map after the kernel counted on, and the record arrives with a
// total below what was written. That is a late record, not an evicted
// entry: its refusals are in the flushed count already. (A guest under TCG
// counted 129,400 refusals for a storm of 100,000 this way.) An entry that
// was evicted and started anew still counts from its new total.
func TestRefusalRecordOlderThanFlush(t *testing.T) {
	testenv.RequirePrivileged(t)
	counts, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 16, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer counts.Close()
	r := &refusalTracer{window: 500 * time.Millisecond, refusalWindow: newRefusalWindow()}
	r.maps.RefusalCounts = counts

	var written uint64
	var lines []event.CommitRefusal
	handle := func(ev event.CommitRefusal) { written += ev.Count; lines = append(lines, ev) }
	put := func(key refusalRefusalKey, total, windowNs uint64) {
		t.Helper()
		if err := counts.Put(&key, &kernelCount{Total: total, WindowStartNs: windowNs}); err != nil {
			t.Fatal(err)
		}
	}
	key := refusalRefusalKey{Tgid: 4242, Syscall: 9}
	now := time.Unix(1_800_000_000, 0)
	const w = uint64(500 * time.Millisecond)

	// Window 1 opens at 1 s of boot time with the first refusal.
	put(key, 1, 1*w)
	r.fold(handle, key, kernelCount{Total: 1, WindowStartNs: 1 * w}, event.CommitRefusal{}, now)
	// The kernel counts on to 30,000, opens window 2 at total 30,000 and
	// sends its record; it counts on to 40,000 before the reader's timer
	// closes window 1 and reads the map.
	put(key, 40000, 2*w)
	r.flushDue(handle, now.Add(r.window))
	// Window 2's record arrives late.
	r.fold(handle, key, kernelCount{Total: 30000, WindowStartNs: 2 * w}, event.CommitRefusal{}, now.Add(r.window+time.Millisecond))
	if written != 40000 {
		t.Errorf("%d refusals written after a late record, want 40000 (lines %+v)", written, lineCounts(lines))
	}
	// Window 3 opens after the flush: a record with a new total.
	put(key, 50000, 3*w)
	r.fold(handle, key, kernelCount{Total: 45000, WindowStartNs: 3 * w}, event.CommitRefusal{}, now.Add(2*r.window))
	r.flushDue(handle, now.Add(4*r.window))
	if written != 50000 {
		t.Errorf("%d refusals written, want 50000 (lines %+v)", written, lineCounts(lines))
	}
	// The entry is evicted and starts anew: its first record counts from 1.
	put(key, 7, 9*w)
	r.fold(handle, key, kernelCount{Total: 1, WindowStartNs: 9 * w}, event.CommitRefusal{}, now.Add(9*r.window))
	r.flushDue(handle, now.Add(11*r.window))
	if written != 50007 {
		t.Errorf("%d refusals written after the entry started anew, want 50007 (lines %+v)", written, lineCounts(lines))
	}
	for i, ev := range lines {
		if ev.Count == 0 {
			t.Errorf("line %d has count 0", i)
		}
	}
}

// lineCounts is the counts of lines, for messages.
func lineCounts(lines []event.CommitRefusal) []uint64 {
	var c []uint64
	for _, ev := range lines {
		c = append(c, ev.Count)
	}
	return c
}
