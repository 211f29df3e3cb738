// SPDX-License-Identifier: Apache-2.0

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
		r.fold(handle, key, 1, event.CommitRefusal{Count: 1}, now)
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

// TestRefusalLateRecords: a record can arrive with a total below what has
// been written, and that is a late record unless the kernel's entry went.
// The kernel opens a window when a refusal comes while the reader closes
// its own on a timer: a flush can read the map after the kernel counted
// on past a record not read yet. (A guest under TCG counted 129,400
// refusals for a storm of 100,000 that way.) Two threads refused at once
// can both open a window and reach the ring in the other order. A late
// record opens a window all the same, whose refusals are written when it
// closes. An entry that was evicted and started anew counts from its new
// total.
func TestRefusalLateRecords(t *testing.T) {
	testenv.RequirePrivileged(t)
	counts, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 16, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer counts.Close()
	r := &refusalTracer{window: 500 * time.Millisecond, refusalWindow: newRefusalWindow()}
	r.maps.RefusalCounts = counts

	var written uint64
	var lines []uint64
	handle := func(ev event.CommitRefusal) { written += ev.Count; lines = append(lines, ev.Count) }
	kernel := func(key refusalRefusalKey, total uint64) {
		t.Helper()
		if err := counts.Put(&key, &refusalRefusalCount{Total: total}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string, want uint64) {
		t.Helper()
		if written != want {
			t.Errorf("%s: %d refusals written, want %d (lines %v)", when, written, want, lines)
		}
	}
	key := refusalRefusalKey{Tgid: 4242, Syscall: 9}
	now := time.Unix(1_800_000_000, 0)
	at := func(windows int) time.Time { return now.Add(time.Duration(windows) * r.window) }

	// Window 1 opens with the first refusal.
	kernel(key, 1)
	r.fold(handle, key, 1, event.CommitRefusal{}, at(0))
	// The kernel counts on to 30,000, opens window 2 and sends its record,
	// and counts on to 40,000 before the reader's timer closes window 1.
	kernel(key, 40000)
	r.flushDue(handle, at(1))
	check("window 1 closed", 40000)
	// Window 2's record arrives late. It still opens a window: the
	// kernel counts on to 45,000 meanwhile, and those are written when
	// it closes, not at the next record or at shutdown.
	r.fold(handle, key, 30000, event.CommitRefusal{}, at(1).Add(time.Millisecond))
	check("a late record", 40000)
	kernel(key, 45000)
	r.flushDue(handle, at(3))
	check("window 2 closed", 45000)

	// Two threads open window 3 at once; the ring has the later total first.
	kernel(key, 45002)
	r.fold(handle, key, 45002, event.CommitRefusal{}, at(4))
	r.fold(handle, key, 45001, event.CommitRefusal{}, at(4))
	check("two records of one window", 45002)
	r.flushDue(handle, at(6))

	// The entry is evicted and starts anew: its first record counts from 1.
	kernel(key, 7)
	r.fold(handle, key, 1, event.CommitRefusal{}, at(9))
	check("the entry started anew", 45003)
	r.flushDue(handle, at(11))
	check("its window closed", 45009)
	for i, n := range lines {
		if n == 0 {
			t.Errorf("line %d has count 0: %v", i, lines)
		}
	}
}
