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
