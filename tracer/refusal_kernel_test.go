// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// expectRefusalHookEnv names the exact refusal hook the tracer must choose
// on the machine running the tests ("" for none).
const expectRefusalHookEnv = "OOMTRACE_EXPECT_REFUSAL_HOOK"

// waitRefusals returns the refusals of process tgid once want lines have
// arrived, or what arrived by the timeout.
func (c *collector) waitRefusals(tgid int, want int, timeout time.Duration) []event.CommitRefusal {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		var got []event.CommitRefusal
		for _, ev := range c.refusals {
			if int(ev.Process.TGID) == tgid {
				got = append(got, ev)
			}
		}
		c.mu.Unlock()
		if len(got) >= want {
			return got
		}
		select {
		case <-c.notify:
		case <-deadline:
			return got
		}
	}
}

func TestRefusalMode0HugeMmap(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := startTracer(t, Config{Refusals: true, Node: "n"})
	t.Logf("refusal hooks: exact=%q syscalls=%v", c.t.Hooks().RefusalExact, c.t.Hooks().RefusalSyscalls)
	if want, ok := os.LookupEnv(expectRefusalHookEnv); ok && c.t.Hooks().RefusalExact != want {
		t.Errorf("exact refusal hook = %q, want %q", c.t.Hooks().RefusalExact, want)
	}
	const huge = 1 << 45
	_, err := syscall.Mmap(-1, 0, huge, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != syscall.ENOMEM {
		t.Fatalf("mmap of 2^45 bytes: %v, want ENOMEM", err)
	}
	got := c.waitRefusals(syscall.Getpid(), 1, 5*time.Second)
	if len(got) != 1 {
		t.Fatalf("got %d refusals, want 1: %+v", len(got), got)
	}
	ev := got[0]
	t.Logf("%+v", ev)
	if ev.Syscall != "mmap" || ev.RequestBytes != huge || ev.Reason != event.ReasonCommit || ev.Count != 1 {
		t.Errorf("refusal = %+v", ev)
	}
}

func TestRefusalRlimitAS(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := startTracer(t, Config{Refusals: true, Node: "n"})
	cmd, out, _ := refuser(t, "rlimit_as", 256<<20)
	if got := readLine(t, out); got != "ENOMEM" {
		t.Fatalf("refuser: %s, want ENOMEM", got)
	}
	got := c.waitRefusals(cmd.Process.Pid, 1, 5*time.Second)
	if len(got) != 1 {
		t.Fatalf("got %d refusals, want 1: %+v", len(got), got)
	}
	ev := got[0]
	if ev.Reason != event.ReasonRlimitAS || ev.ClassifiedBy != byRlimitAS {
		t.Errorf("reason %q by %q, want %q by %q", ev.Reason, ev.ClassifiedBy, event.ReasonRlimitAS, byRlimitAS)
	}
	if ev.Syscall != "mmap" || ev.RequestBytes != 256<<20 || ev.Count != 1 {
		t.Errorf("refusal = %+v", ev)
	}
}

// TestRefusalRlimitData: a private writable mapping past RLIMIT_DATA is
// refused before any commit accounting, and said so.
func TestRefusalRlimitData(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := startTracer(t, Config{Refusals: true, Node: "n"})
	cmd, out, _ := refuser(t, "rlimit_data", 256<<20)
	if got := readLine(t, out); got != "ENOMEM" {
		t.Fatalf("refuser: %s, want ENOMEM", got)
	}
	got := c.waitRefusals(cmd.Process.Pid, 1, 5*time.Second)
	if len(got) != 1 {
		t.Fatalf("got %d refusals, want 1: %+v", len(got), got)
	}
	ev := got[0]
	if ev.Reason != event.ReasonRlimitData || ev.ClassifiedBy != byRlimitData {
		t.Errorf("reason %q by %q, want %q by %q", ev.Reason, ev.ClassifiedBy, event.ReasonRlimitData, byRlimitData)
	}
	if ev.Syscall != "mmap" || ev.RequestBytes != 256<<20 || ev.Count != 1 {
		t.Errorf("refusal = %+v", ev)
	}
}

// TestRefusalMapCount: a process that holds vm.max_map_count mappings is
// refused the next one before any commit accounting. The kernel program
// tells it by comparing the mm's map_count with the setting oomtrace
// wrote into its constants at load.
func TestRefusalMapCount(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := startTracer(t, Config{Refusals: true, Node: "n"})
	host, err := readHostMemory("/proc")
	if err != nil {
		t.Fatal(err)
	}
	cmd, out, _ := refuser(t, "map_count", 0)
	var mapped int
	var result string
	if _, err := fmt.Sscan(readLine(t, out), &mapped, &result); err != nil || result != "ENOMEM" {
		t.Fatalf("refuser: %d mappings, then %q (%v); want ENOMEM", mapped, result, err)
	}
	if uint64(mapped) > host.MaxMapCount {
		t.Fatalf("%d mappings made, more than vm.max_map_count %d", mapped, host.MaxMapCount)
	}
	got := c.waitRefusals(cmd.Process.Pid, 1, 5*time.Second)
	if len(got) == 0 {
		t.Fatal("no refusal")
	}
	ev := got[0]
	t.Logf("after %d mappings (vm.max_map_count %d): %+v", mapped, host.MaxMapCount, ev)
	if ev.Syscall != "mmap" || ev.RequestBytes != 4096 || ev.Reason != event.ReasonMapCount || ev.ClassifiedBy != byMapCount {
		t.Errorf("refusal %s %d bytes: reason %q by %q, want mmap 4096 bytes, %q by %q",
			ev.Syscall, ev.RequestBytes, ev.Reason, ev.ClassifiedBy, event.ReasonMapCount, byMapCount)
	}
}

func TestRefusalSuccessfulCallsAreSilent(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := startTracer(t, Config{Refusals: true, Node: "n"})
	before, _ := c.t.Stats()
	cmd, out, _ := refuser(t, "succeed", 20000)
	if got := readLine(t, out); got != "20000" {
		t.Fatalf("refuser: %s successful mappings, want 20000", got)
	}
	cmd.Wait()
	c.stop(t)
	if got := c.waitRefusals(cmd.Process.Pid, 1, 0); len(got) != 0 {
		t.Errorf("successful calls reported: %+v", got)
	}
	after, _ := c.t.Stats()
	t.Logf("failed calls seen machine-wide meanwhile: %d", after.RefusalsFailed-before.RefusalsFailed)
}

// TestRefusalStorm: a storm of failing mmaps (100k at least) gives a few
// lines whose counts add up exactly, and an OOM kill during the storm is
// still reported: the storm lasts until the kill's event is in.
func TestRefusalStorm(t *testing.T) {
	testenv.RequirePrivileged(t)
	const atLeast = 100000
	c := startTracer(t, Config{Refusals: true, Node: "n", RefusalWindow: 500 * time.Millisecond})
	cmd, out, in := refuser(t, "storm", atLeast)
	if got := readLine(t, out); got != "ready" {
		t.Fatalf("refuser: %q", got)
	}
	cg := memcgtest.New(t, nil, limit)
	fmt.Fprintln(in, "go")
	if got := readLine(t, out); got != "started" {
		t.Fatalf("refuser: %q", got)
	}
	hog := cg.Start(t, memcgtest.HogOptions{Bytes: hogBytes})
	hog.WaitKilled(t)
	evs := c.waitFor(map[int]bool{hog.PID: true}, 10*time.Second)[hog.PID]
	fmt.Fprintln(in, "stop")

	var enomem, startNs, endNs int64
	if _, err := fmt.Sscan(readLine(t, out), &enomem, &startNs, &endNs); err != nil || enomem < atLeast {
		t.Fatalf("refuser: %d ENOMEMs (%v), want at least %d", enomem, err, atLeast)
	}
	storm := uint64(enomem)
	t.Logf("storm of %d refusals took %v", storm, time.Duration(endNs-startNs))
	if len(evs) != 1 {
		t.Fatalf("OOM kill during the storm: %d events, want 1", len(evs))
	}
	if kill := evs[0].Time.UnixNano(); kill < startNs || kill > endNs {
		t.Errorf("the OOM kill (%d) fell outside the storm (%d..%d): the storm must outlast the kill's event", kill, startNs, endNs)
	}
	cmd.Wait()
	c.stop(t) // flushes the pending repeat count
	got := c.waitRefusals(cmd.Process.Pid, 1, 0)
	var total uint64
	for i, ev := range got {
		total += ev.Count
		if ev.Reason != event.ReasonCommit || ev.Syscall != "mmap" {
			t.Errorf("line %d: %+v", i, ev)
		}
	}
	if total != storm {
		t.Errorf("counts add up to %d, want %d", total, storm)
	}
	if len(got) == 0 || got[0].Count != 1 || got[0].Repeated {
		t.Errorf("the first refusal must be written at once with count 1: %+v", got)
	}
	if limit := int(time.Duration(endNs-startNs)/(500*time.Millisecond)) + 3; len(got) > limit {
		t.Errorf("%d lines for one storm, want at most %d: not aggregated", len(got), limit)
	}
	t.Logf("%d lines for %d refusals", len(got), total)
}

const (
	overcommitPath      = "/proc/sys/vm/overcommit_memory"
	overcommitRatioPath = "/proc/sys/vm/overcommit_ratio"
)

// setOvercommit sets vm.overcommit_memory and returns a function that puts
// the old value back; it is also restored at cleanup and by a watchdog, so
// no exit path of the test leaves the host in mode 2.
//
// Call the restore functions in the reverse order of the settings: the
// value each puts back is the one it found.
func setOvercommit(t *testing.T, mode string) (restore func()) {
	t.Helper()
	return setSysctlBriefly(t, overcommitPath, mode)
}

// setSysctlBriefly writes value to a /proc/sys file and returns a function
// that puts the old value back, also called at cleanup and by a 30 s
// watchdog: for settings that must not outlive a moment of the test.
func setSysctlBriefly(t *testing.T, path, value string) (restore func()) {
	t.Helper()
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := os.WriteFile(path, old, 0); err != nil {
				t.Errorf("restore %s: %v", path, err)
			}
		})
	}
	t.Cleanup(restore)
	watchdog := time.AfterFunc(30*time.Second, restore)
	t.Cleanup(func() { watchdog.Stop() })
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		restore()
		t.Fatalf("set %s=%s: %v", path, value, err)
	}
	return restore
}

// commitHeadroom is what mode 2 would let this host commit more: the
// commit limit (swap and vm.overcommit_ratio of RAM) minus what is
// committed.
func commitHeadroom(t *testing.T) int64 {
	t.Helper()
	host, err := readHostMemory("/proc")
	if err != nil {
		t.Fatal(err)
	}
	return int64(host.CommitLimit) - int64(host.Committed)
}

// mode2Refusals is a refuser that held most of the commit headroom, then
// in mode 2 tried a mapping, a brk and a fork of as much.
type mode2Refusals struct {
	pid     int
	hold    uint64
	result  string // the refuser's line: each call's result
	restore func() // mode 0 (and the ratio) again; also at cleanup
}

// startMode2Refusals makes the refusals of mode 2. Mode 2 with less than
// 1 GiB to commit would starve the host. Where the commit limit is that
// tight (the 3 GiB test guests: half of RAM by default), it raises
// vm.overcommit_ratio, which only loosens mode 2, and restores it with
// the mode. Leave mode 2 with restore once the refusals are classified.
func startMode2Refusals(t *testing.T) mode2Refusals {
	t.Helper()
	restoreRatio := func() {}
	headroom := commitHeadroom(t)
	if headroom < 1<<30 {
		t.Logf("%d bytes of commit headroom: vm.overcommit_ratio raised to 100 for the test", headroom)
		restoreRatio = setSysctlBriefly(t, overcommitRatioPath, "100")
		headroom = commitHeadroom(t)
	}
	if headroom < 1<<30 {
		t.Skipf("only %d bytes of commit headroom with all of RAM: mode 2 would starve the host", headroom)
	}
	hold := uint64(headroom) * 6 / 10
	cmd, out, in := refuser(t, "mode2", hold)
	if got := readLine(t, out); got != "ready ok" {
		t.Fatalf("refuser: %q", got)
	}
	restoreMode := setOvercommit(t, "2")
	fmt.Fprintln(in, "go")
	return mode2Refusals{pid: cmd.Process.Pid, hold: hold, result: readLine(t, out),
		restore: func() { restoreMode(); restoreRatio() }}
}

// TestRefusalMode2 switches to strict accounting for a moment: a process
// holding most of the headroom then fails a mapping, a brk and a fork.
func TestRefusalMode2(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := startTracer(t, Config{Refusals: true, Node: "n"})
	m := startMode2Refusals(t)
	// Keep mode 2 until the tracer has classified the three refusals:
	// it samples the mode when it writes each line.
	got := c.waitRefusals(m.pid, 3, 5*time.Second)
	m.restore()
	if m.result != "ENOMEM unchanged ENOMEM" {
		t.Fatalf("refuser in mode 2: %q, want mmap ENOMEM, brk unchanged, fork ENOMEM", m.result)
	}
	hold := m.hold
	bySyscall := map[string]event.CommitRefusal{}
	for _, ev := range got {
		bySyscall[ev.Syscall] = ev
	}
	for _, sc := range []string{"mmap", "brk", "fork"} {
		ev, ok := bySyscall[sc]
		if !ok {
			t.Errorf("no refusal for %s; got %+v", sc, got)
			continue
		}
		wantBy := byMode2
		if c.t.Hooks().RefusalExact != "" {
			wantBy = byExact
		}
		if ev.Reason != event.ReasonCommit || ev.ClassifiedBy != wantBy {
			t.Errorf("%s: reason %q by %q, want commit by %q", sc, ev.Reason, ev.ClassifiedBy, wantBy)
		}
		if ev.Overcommit.Mode != 2 || ev.Overcommit.CommitLimitBytes == 0 || ev.Overcommit.CommittedBytes == 0 {
			t.Errorf("%s: overcommit = %+v", sc, ev.Overcommit)
		}
		if sc != "fork" && ev.RequestBytes != hold {
			t.Errorf("%s: request %d, want %d", sc, ev.RequestBytes, hold)
		}
		if sc == "fork" && ev.RequestBytes < hold {
			t.Errorf("fork: request %d, want at least the %d bytes held", ev.RequestBytes, hold)
		}
	}
}
