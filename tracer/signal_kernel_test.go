// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// waitSignal waits for a task signal to pid.
func (c *collector) waitSignal(t *testing.T, pid int, sig string) event.TaskSignal {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		for _, ev := range c.signals {
			if int(ev.Target.PID) == pid && ev.Signal == sig {
				c.mu.Unlock()
				return ev
			}
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-deadline:
			t.Fatalf("no %s to %d seen", sig, pid)
		}
	}
}

// TestTaskSignals: a SIGTERM and a SIGKILL from this test to processes in
// a cgroup of its own, on both signal hooks: sender, target, hook, and on
// tp_btf the target's cgroup captured in the kernel.
func TestTaskSignals(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, hook := range []string{HookTpBtf, HookTracepoint} {
		t.Run(hook, func(t *testing.T) {
			c := startTracer(t, Config{VictimHook: hook, Node: "n"})
			cg := memcgtest.New(t, nil, 64<<20)
			h := cg.Start(t, memcgtest.HogOptions{Bytes: 8 << 20, Idle: true})
			cg.WaitUsage(t, 8<<20)
			// SIGTERM ends the hog (Go's default), so SIGKILL goes to a
			// second one.
			if err := syscall.Kill(h.PID, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			term := c.waitSignal(t, h.PID, "SIGTERM")
			h2 := cg.Start(t, memcgtest.HogOptions{Bytes: 8 << 20, Idle: true})
			cg.WaitUsage(t, 8<<20)
			if err := syscall.Kill(h2.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			kill := c.waitSignal(t, h2.PID, "SIGKILL")
			for _, ev := range []event.TaskSignal{term, kill} {
				if ev.Type != "task_signal" || ev.Code != 0 || ev.Result != 0 || int(ev.Sender.TGID) != syscall.Getpid() {
					t.Errorf("%s: %+v", ev.Signal, ev)
				}
				want := HookTpBtfSignal
				if hook == HookTracepoint {
					want = HookTracepointSignal
				}
				if ev.Hook != want {
					t.Errorf("%s: hook %q, want %q", ev.Signal, ev.Hook, want)
				}
				if ev.Target.Comm == "" {
					t.Errorf("%s: no target comm", ev.Signal)
				}
			}
			// The classic tracepoint cannot capture the target's cgroup
			// (it is read from /proc when the target still lives then).
			if hook == HookTpBtf {
				for _, ev := range []event.TaskSignal{term, kill} {
					if ev.Target.Memcg == nil || ev.Target.Memcg.Path != cg.Path || ev.Target.Memcg.Source != event.CgroupFromKernel {
						t.Errorf("%s: target memcg %+v, want %s from the kernel", ev.Signal, ev.Target.Memcg, cg.Path)
					}
					// The cgroup as the signal was generated: the hog's
					// 8 MiB still charged, and the limit.
					// On cgroup v2 its memory pressure too (zero or
					// more: an idle hog stalls on nothing).
					if m := ev.TargetMemory; m == nil || m.UsageBytes < 8<<20 || m.UsageBytes > 32<<20 || m.LimitBytes == nil || *m.LimitBytes != 64<<20 ||
						(m.Pressure == nil) != cg.H.V1 {
						t.Errorf("%s: target memory %s (cgroup v1: %v)", ev.Signal, jsonOf(m), cg.H.V1)
					}
					// kill(2) sends a siginfo.
					if ev.Info != event.SiginfoFull {
						t.Errorf("%s: info %q, want %q", ev.Signal, ev.Info, event.SiginfoFull)
					}
				}
			} else if term.Info != "" || kill.Info != "" {
				t.Errorf("info %q, %q on the classic tracepoint, which does not say", term.Info, kill.Info)
			}
		})
	}
}

// TestSignalBudget: 200 SIGTERMs in a row to one process of a cgroup (as
// a container's own kill loop would send) make 32 records, the budget, and
// the rest are counted as limited; a SIGTERM to a process of another
// cgroup right after is recorded (tp_btf: the budget is the target
// cgroup's; the classic tracepoint knows only the sender, whose budget it
// is there), and a SIGKILL in the next second too.
func TestSignalBudget(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, hook := range []string{HookTpBtf, HookTracepoint} {
		t.Run(hook, func(t *testing.T) {
			c := startTracer(t, Config{VictimHook: hook, Node: "n"})
			cg := memcgtest.New(t, nil, 0)
			h := cg.Start(t, memcgtest.HogOptions{Bytes: 1 << 20, Idle: true})
			// Stopped, it keeps its SIGTERM pending: every kill below is
			// a signal generated, none ends it.
			if err := syscall.Kill(h.PID, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			before, _ := c.t.Stats()
			start := time.Now()
			for range 200 {
				if err := syscall.Kill(h.PID, syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Skipf("200 kill(2) took %v: not within one budget window", d)
			}
			c.waitSignal(t, h.PID, "SIGTERM")
			var other *memcgtest.Hog
			if hook == HookTpBtf {
				other = memcgtest.New(t, nil, 0).Start(t, memcgtest.HogOptions{Bytes: 1 << 20, Idle: true})
				if err := syscall.Kill(other.PID, syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				c.waitSignal(t, other.PID, "SIGTERM")
			}
			// The next window has a budget again: the SIGKILL is recorded.
			time.Sleep(1100 * time.Millisecond)
			syscall.Kill(h.PID, syscall.SIGKILL)
			c.waitSignal(t, h.PID, "SIGKILL")
			after, _ := c.t.Stats()
			c.mu.Lock()
			terms := 0
			for _, ev := range c.signals {
				if int(ev.Target.PID) == h.PID && ev.Signal == "SIGTERM" {
					terms++
				}
			}
			c.mu.Unlock()
			limited := after.SignalsLimited - before.SignalsLimited
			if terms != 32 || limited != 200-32 {
				t.Errorf("%d SIGTERM records and %d limited, want 32 and %d", terms, limited, 200-32)
			}
		})
	}
}

// TestSignalNodeBudget: a tenant with many cgroups has a budget in each.
// 20 SIGTERMs to each of 40 cgroups' processes make each cgroup's first
// four records, then only the node's budget (64 here) more; the rest are
// counted as limited, and a process of another cgroup stopped right after
// still has its SIGTERM recorded.
func TestSignalNodeBudget(t *testing.T) {
	testenv.RequirePrivileged(t)
	const cgroups, rounds, free, nodeBudget = 40, 20, 4, 64
	c := startTracer(t, Config{VictimHook: HookTpBtf, Node: "n", SignalNodeBudget: nodeBudget})
	pids := map[int]bool{}
	var order []int
	for range cgroups {
		h := memcgtest.New(t, nil, 0).Start(t, memcgtest.HogOptions{Bytes: 1 << 20, Idle: true})
		if err := syscall.Kill(h.PID, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		pids[h.PID] = true
		order = append(order, h.PID)
	}
	before, _ := c.t.Stats()
	start := time.Now()
	for range rounds {
		for _, pid := range order {
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Skipf("%d kill(2) took %v: not within one budget window", cgroups*rounds, d)
	}
	other := memcgtest.New(t, nil, 0).Start(t, memcgtest.HogOptions{Bytes: 1 << 20, Idle: true})
	if err := syscall.Kill(other.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.waitSignal(t, other.PID, "SIGTERM")
	after, _ := c.t.Stats()
	c.mu.Lock()
	terms := 0
	for _, ev := range c.signals {
		if pids[int(ev.Target.PID)] && ev.Signal == "SIGTERM" {
			terms++
		}
	}
	c.mu.Unlock()
	want := cgroups*free + nodeBudget
	if limited := after.SignalsLimited - before.SignalsLimited; terms != want || limited != uint64(cgroups*rounds-want) {
		t.Errorf("%d SIGTERM records and %d limited, want %d and %d", terms, limited, want, cgroups*rounds-want)
	}
}
