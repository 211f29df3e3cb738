// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// killOne OOM-kills one process in cg and returns its pid.
func killOne(t *testing.T, cg *memcgtest.Cgroup) int {
	t.Helper()
	hog := cg.Start(t, memcgtest.HogOptions{Bytes: hogBytes})
	hog.WaitKilled(t)
	return hog.PID
}

// pinned lists the pins under path, relative to it.
func pinned(t *testing.T, path string) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(path, p)
			names = append(names, rel)
		}
		return nil
	})
	sort.Strings(names)
	return names
}

func stopAndClose(t *testing.T, c *collector) []event.OOMKill {
	t.Helper()
	evs := c.stop(t)
	if err := c.t.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	return evs
}

// TestPinnedRestart: a kill while no tracer runs is recorded by the pinned
// hooks and reported by the next tracer, which adopts them; seq numbers
// run on across the restart; the earlier generation's hooks go.
func TestPinnedRestart(t *testing.T) {
	testenv.RequirePrivileged(t)
	path := testPinPath(t)
	cg := memcgtest.New(t, nil, limit)

	first := startTracer(t, Config{PinPath: path})
	if first.t.Adopted() || first.t.Generation() != 1 {
		t.Fatalf("fresh pin path: adopted %v, generation %d", first.t.Adopted(), first.t.Generation())
	}
	a := killOne(t, cg)
	gotA := first.waitFor(map[int]bool{a: true}, 10*time.Second)[a]
	stopAndClose(t, first)
	if len(gotA) != 1 {
		t.Fatalf("first tracer: %d events of %d", len(gotA), a)
	}
	t.Logf("pinned: %v", pinned(t, path))

	// Nothing runs: the pinned hooks record.
	b := killOne(t, cg)

	second := startTracer(t, Config{PinPath: path})
	if !second.t.Adopted() || second.t.Generation() != 2 {
		t.Fatalf("adopted %v, generation %d; want true, 2", second.t.Adopted(), second.t.Generation())
	}
	c := killOne(t, cg)
	// The backlog comes first in the ring buffer: by c, a would be in.
	second.waitFor(map[int]bool{b: true, c: true}, 10*time.Second)
	got := second.waitFor(map[int]bool{a: true, b: true, c: true}, 0)
	if len(got[a]) != 0 || len(got[b]) != 1 || len(got[c]) != 1 {
		t.Fatalf("second tracer: %d of %d (reported before), %d of %d (while down), %d of %d; want 0, 1, 1",
			len(got[a]), a, len(got[b]), b, len(got[c]), c)
	}
	// Other processes of the machine may be killed meanwhile: the seqs of
	// ours only grow.
	if sa, sb, sc := gotA[0].Seq, got[b][0].Seq, got[c][0].Seq; sa >= sb || sb >= sc {
		t.Errorf("seqs %d, %d, %d: want increasing", sa, sb, sc)
	}
	acc := second.t.Accounting()
	if !acc.KernelCounts || acc.Kills() < 3 {
		t.Errorf("accounting %+v: want at least our 3 kills", acc)
	}
	names := pinned(t, path)
	for _, n := range names {
		if strings.HasPrefix(n, "links-1/") {
			t.Errorf("the first generation's hook %s is still pinned", n)
		}
	}
	if !contains(names, "links-2/"+pinName(HookTpBtfMarkVictim)) && !contains(names, "links-2/"+pinName(HookTracepointMarkVictim)) {
		t.Errorf("no victim hook pinned for generation 2: %v", names)
	}
	stopAndClose(t, second)

	if removed, err := Unpin(path); err != nil || !removed {
		t.Fatalf("Unpin: %v, %v", removed, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("pin path after Unpin: %v", err)
	}
	if removed, err := Unpin(path); err != nil || removed {
		t.Errorf("Unpin again: %v, %v; want nothing to do", removed, err)
	}
}

// TestHandOverWithoutGap: kills one after another while a second tracer
// takes over from the first (it waits for the first to let go of the pin
// path, then switches generations): each is reported exactly once, by
// one of the two.
func TestHandOverWithoutGap(t *testing.T) {
	testenv.RequirePrivileged(t)
	path := testPinPath(t)
	cg := memcgtest.New(t, nil, limit)
	first := startTracer(t, Config{PinPath: path})

	var mu sync.Mutex
	var killed []int
	stopKilling := make(chan struct{})
	killing := make(chan struct{})
	go func() {
		defer close(killing)
		for {
			select {
			case <-stopKilling:
				return
			default:
			}
			hog := cg.Start(t, memcgtest.HogOptions{Bytes: hogBytes})
			hog.WaitKilled(t)
			mu.Lock()
			killed = append(killed, hog.PID)
			mu.Unlock()
		}
	}()
	time.Sleep(300 * time.Millisecond)

	// The second starts while the first runs, and says it waits for the
	// pin path: only then does the first stop (the overlap of a rolling
	// update, not one tracer after the other).
	secondReady := make(chan *collector)
	var secondLog testenv.SyncBuffer
	go func() {
		secondReady <- startTracer(t, Config{PinPath: path, Logger: slog.New(slog.NewTextHandler(&secondLog, nil))})
	}()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(secondLog.String(), "waiting for the oomtrace that holds the pin path"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the second tracer never waited for the first:\n%s", secondLog.String())
		}
	}
	select {
	case <-secondReady:
		t.Fatal("the second tracer started while the first held the pin path")
	default:
	}
	firstEvents := stopAndClose(t, first)
	second := <-secondReady
	time.Sleep(300 * time.Millisecond)
	close(stopKilling)
	<-killing

	mu.Lock()
	want := map[int]bool{}
	for _, pid := range killed {
		want[pid] = true
	}
	mu.Unlock()
	n := map[int]int{}
	rest := map[int]bool{}
	for _, ev := range firstEvents {
		if want[int(ev.Victim.PID)] {
			n[int(ev.Victim.PID)]++
		}
	}
	for pid := range want {
		if n[pid] == 0 {
			rest[pid] = true
		}
	}
	second.waitFor(rest, 10*time.Second)
	got := second.waitFor(want, 0)
	for pid, evs := range got {
		n[pid] += len(evs)
	}
	bySecond := 0
	for _, evs := range got {
		bySecond += len(evs)
	}
	t.Logf("%d killed: %d reported by the first tracer, %d by the second", len(want), len(want)-bySecond, bySecond)
	for pid := range want {
		if n[pid] != 1 {
			t.Errorf("kill of %d reported %d times", pid, n[pid])
		}
	}
	if bySecond == 0 || bySecond == len(want) {
		t.Errorf("the kills did not span the hand-over (%d of %d by the second)", bySecond, len(want))
	}
}

// TestUncommittedReadAgain: a kill handed out but not committed when its
// tracer ends is read again by the next one; a kill committed while an
// earlier one was still held is not.
func TestUncommittedReadAgain(t *testing.T) {
	testenv.RequirePrivileged(t)
	path := testPinPath(t)
	cg := memcgtest.New(t, nil, limit)

	first := startCollector(t, Config{PinPath: path}, true)
	a, b := killOne(t, cg), killOne(t, cg)
	got := first.waitFor(map[int]bool{a: true, b: true}, 10*time.Second)
	if len(got[a]) != 1 || len(got[b]) != 1 {
		t.Fatalf("first tracer: %d and %d events", len(got[a]), len(got[b]))
	}
	// The later one is written out, the earlier one not (held, or lost
	// with a crash).
	first.commit(got[b][0].Seq)
	var written []uint64
	var seq uint64
	var one uint8
	for it := first.t.oom.maps.Written.Iterate(); it.Next(&seq, &one); {
		written = append(written, seq)
	}
	if len(written) != 1 || written[0] != got[b][0].Seq {
		t.Errorf("written map %v, want [%d]", written, got[b][0].Seq)
	}
	stopAndClose(t, first)

	second := startTracer(t, Config{PinPath: path})
	c := killOne(t, cg)
	second.waitFor(map[int]bool{a: true, c: true}, 10*time.Second)
	again := second.waitFor(map[int]bool{a: true, b: true, c: true}, 0)
	if len(again[a]) != 1 || len(again[b]) != 0 || len(again[c]) != 1 {
		t.Fatalf("second tracer: %d of the uncommitted, %d of the committed, %d of the new; want 1, 0, 1", len(again[a]), len(again[b]), len(again[c]))
	}
	if again[a][0].Seq != got[a][0].Seq {
		t.Errorf("seq %d read again as %d", got[a][0].Seq, again[a][0].Seq)
	}
	if err := second.t.oom.maps.Written.Lookup(got[b][0].Seq, &one); err == nil {
		t.Errorf("seq %d still in the written map after the consumer passed it", got[b][0].Seq)
	} else if !strings.Contains(err.Error(), ebpf.ErrKeyNotExist.Error()) {
		t.Errorf("lookup: %v", err)
	}
}

// testPinPath is memcgtest.PinPath; Unpin at the end too, as a user would.
func testPinPath(t *testing.T) string {
	path := memcgtest.PinPath(t)
	t.Cleanup(func() { Unpin(path) })
	return path
}

// TestPinPathNotTrusted: a pin directory that others may write to, or a
// link in its place, could hand the agent maps and programs to adopt:
// New refuses it, and says why.
func TestPinPathNotTrusted(t *testing.T) {
	testenv.RequirePrivileged(t)
	path := testPinPath(t)
	if err := os.Mkdir(path, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{PinPath: path}); err == nil || !strings.Contains(err.Error(), "not trusted") {
		t.Errorf("a world-writable pin path: %v", err)
	}
	os.Remove(path)
	other := filepath.Join(filepath.Dir(path), "elsewhere")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(other)
	if err := os.Symlink(other, path); err != nil {
		t.Skipf("no symlinks on bpffs: %v", err)
	}
	defer os.Remove(path)
	if _, err := New(Config{PinPath: path}); err == nil {
		t.Error("a link in place of the pin path was followed")
	}
}

// TestHeldKillsLeaveTheRingBuffer: kills handed out and held (a
// pipeline's container check, or a slow output) do not keep the ring
// buffer's room: past half of it their records move to the spilled map.
// A ring buffer of eight records' room takes 20 held kills without one
// lost; those written out leave the map, and the next tracer reads the
// others again from it, once each.
func TestHeldKillsLeaveTheRingBuffer(t *testing.T) {
	testenv.RequirePrivileged(t)
	path := testPinPath(t)
	cg := memcgtest.New(t, nil, limit)
	const kills = 20
	cfg := Config{PinPath: path, RingBufferBytes: 32 << 10}

	first := startCollector(t, cfg, true)
	pids := map[int]bool{}
	for range kills {
		pids[killOne(t, cg)] = true
	}
	got := first.waitFor(pids, 10*time.Second)
	stats, err := first.t.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != kills || stats.Lost != 0 {
		t.Fatalf("%d of %d held kills delivered, %d lost: the held records kept the ring buffer's room", len(got), kills, stats.Lost)
	}
	spilled := func(tr *Tracer) map[uint64]bool {
		m := map[uint64]bool{}
		var seq uint64
		raw := make([]byte, OOMEventSize)
		for it := tr.oom.maps.Spilled.Iterate(); it.Next(&seq, raw); {
			m[seq] = true
		}
		return m
	}
	before := spilled(first.t)
	if len(before) < kills/2 {
		t.Fatalf("%d records spilled, want at least %d", len(before), kills/2)
	}
	// Five written out: they leave the map.
	var written []uint64
	for pid := range pids {
		if seq := got[pid][0].Seq; before[seq] && len(written) < 5 {
			first.commit(seq)
			written = append(written, seq)
		}
	}
	after := spilled(first.t)
	for _, seq := range written {
		if after[seq] {
			t.Errorf("seq %d written out and still in the spilled map", seq)
		}
	}
	stopAndClose(t, first)

	second := startTracer(t, cfg)
	second.waitUntil(func(evs []event.OOMKill) bool { return len(evs) >= kills-len(written) }, 10*time.Second)
	time.Sleep(200 * time.Millisecond) // and no more
	again := second.waitFor(pids, 0)
	isWritten := map[uint64]bool{}
	for _, seq := range written {
		isWritten[seq] = true
	}
	for pid := range pids {
		seq := got[pid][0].Seq
		switch n := len(again[pid]); {
		case isWritten[seq] && n != 0:
			t.Errorf("kill %d (seq %d) was written out and read again", pid, seq)
		case !isWritten[seq] && n != 1:
			t.Errorf("kill %d (seq %d) not written out: read %d times by the next tracer, want 1", pid, seq, n)
		}
	}
}
