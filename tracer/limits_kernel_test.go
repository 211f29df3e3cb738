// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// TestOOMLimitWrite lowers a cgroup's memory.max below what its process
// holds, as an in-place resize or a runtime's update does: the kernel
// OOM-kills from the writer (this test), outside the domain. The kill
// says forced_by limit_write and names the cgroup and its new limit as the
// domain, with the decision hook and without one (then the walk from the
// trigger finds nothing and starts again from the victim). cgroup v2 only:
// v1 refuses such a write (EBUSY) and kills nobody.
func TestOOMLimitWrite(t *testing.T) {
	testenv.RequirePrivileged(t)
	h, err := memcgtest.Detect()
	if err != nil {
		t.Fatal(err)
	}
	if h.V1 {
		t.Skip("cgroup v1 refuses a limit below usage instead of killing (the kernel guests run v2)")
	}
	for _, hook := range []string{HookAuto, HookNone} {
		t.Run(hook, func(t *testing.T) {
			c := startTracer(t, Config{Node: "n", DecisionHook: hook})
			const held, lowered = 48 << 20, 16 << 20
			cg := memcgtest.New(t, nil, 256<<20)
			hog := cg.Start(t, memcgtest.HogOptions{Bytes: held, Idle: true})
			cg.WaitUsage(t, held)
			// Until it is idle: a charge of its own while the write
			// reclaims would make its own OOM kill, from inside.
			for last, stable := cg.Usage(t), 0; stable < 5; {
				time.Sleep(100 * time.Millisecond)
				if u := cg.Usage(t); u == last {
					stable++
				} else {
					last, stable = u, 0
				}
			}
			// The write returns once the kernel has killed and the usage
			// is below the new limit.
			cg.SetLimit(t, lowered)
			hog.WaitKilled(t)
			ev := c.onlyKill(t, hog.PID)
			hooks := c.t.Hooks()
			t.Logf("hooks %+v: oom %+v domain %+v", hooks, ev.OOM, ev.OOM.Domain)
			if hooks.Decision == "" && hooks.Victim == HookTracepointMarkVictim {
				// The classic tracepoint names the victim by its pid
				// alone: with the writer as current, neither its cgroup
				// nor the domain above it can be read. Reported as what
				// it looks like, a kill with no memcg at its limit.
				if ev.OOM.ForcedBy != "" || ev.OOM.ScopeSource != event.SourceNoMemcgAtLimit {
					t.Errorf("classic tracepoint, no decision hook: forced_by %q scope_source %q, want none and no_memcg_at_limit", ev.OOM.ForcedBy, ev.OOM.ScopeSource)
				}
				return
			}
			if ev.OOM.ForcedBy != event.ForcedByLimitWrite {
				t.Errorf("oom.forced_by = %q, want %q", ev.OOM.ForcedBy, event.ForcedByLimitWrite)
			}
			if ev.Trigger.TGID != uint32(os.Getpid()) {
				t.Errorf("trigger.tgid = %d, want the writer %d", ev.Trigger.TGID, os.Getpid())
			}
			if ev.OOM.Scope != event.ScopeMemcg {
				t.Errorf("oom.scope = %q, want memcg", ev.OOM.Scope)
			}
			wantSource := event.SourceVictimMemcgAtLimit
			if c.t.Hooks().Decision != "" {
				wantSource = event.SourceOOMControl
			}
			if ev.OOM.ScopeSource != wantSource {
				t.Errorf("oom.scope_source = %q, want %q", ev.OOM.ScopeSource, wantSource)
			}
			if ev.OOM.Domain == nil {
				t.Fatal("oom.domain missing")
			}
			checkCgroup(t, "oom.domain", ev.OOM.Domain.Cgroup, cg)
			if ev.OOM.Domain.LimitBytes != lowered {
				t.Errorf("oom.domain.limit_bytes = %d, want the new limit %d", ev.OOM.Domain.LimitBytes, lowered)
			}
		})
	}
}

// TestOOMKillMemcgBounds: a kill carries the domain's memory.high, .min,
// .low and swap limit, and the victim's own cgroup's counters, as the
// files say (cgroup v2); on cgroup v1, where those files do not exist,
// the usage and limit alone.
func TestOOMKillMemcgBounds(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := startTracer(t, Config{Node: "n"})
	parent := memcgtest.New(t, nil, limit)
	cg := memcgtest.New(t, parent, 0)
	bounds := map[string]uint64{"memory.high": 48 << 20, "memory.min": 4 << 20, "memory.low": 8 << 20, "memory.swap.max": 16 << 20}
	if !parent.H.V1 {
		for file, v := range bounds {
			if err := os.WriteFile(filepath.Join(parent.Dir, file), []byte(strconv.FormatUint(v, 10)), 0); err != nil {
				t.Fatalf("write %s: %v", file, err)
			}
		}
		// The victim's own cgroup: a high of its own, no swap limit.
		if err := os.WriteFile(filepath.Join(cg.Dir, "memory.high"), []byte(strconv.Itoa(64<<20)), 0); err != nil {
			t.Fatal(err)
		}
	}
	hog := cg.Start(t, memcgtest.HogOptions{Bytes: hogBytes})
	hog.WaitKilled(t)
	ev := c.onlyKill(t, hog.PID)
	d := ev.OOM.Domain
	if d == nil {
		t.Fatal("oom.domain missing")
	}
	checkCgroup(t, "oom.domain", d.Cgroup, parent)
	m := ev.Victim.MemcgMemory
	if m == nil {
		t.Fatal("victim.memcg_memory missing")
	}
	t.Logf("domain %+v; victim's memcg %+v", d.MemcgBounds, *m)
	if m.LimitBytes != nil {
		t.Errorf("victim.memcg_memory.limit_bytes = %d, want null (no limit of its own)", *m.LimitBytes)
	}
	// The hog is alone in its cgroup and the parent's only child: both
	// are at the parent's limit.
	if u := int64(m.UsageBytes); u < limit-(2<<20) || u > limit+(2<<20) {
		t.Errorf("victim.memcg_memory.usage_bytes = %d, want within 2 MiB of %d", u, limit)
	}
	if parent.H.V1 {
		if d.MemcgBounds != (event.MemcgBounds{}) || m.MemcgBounds != (event.MemcgBounds{}) {
			t.Errorf("bounds on cgroup v1: domain %+v, victim %+v; want none", d.MemcgBounds, m.MemcgBounds)
		}
		return
	}
	for _, ck := range []struct {
		name string
		got  *uint64
		want uint64
	}{
		{"oom.domain.high_bytes", d.HighBytes, bounds["memory.high"]},
		{"oom.domain.min_bytes", d.MinBytes, bounds["memory.min"]},
		{"oom.domain.low_bytes", d.LowBytes, bounds["memory.low"]},
		{"oom.domain.swap_limit_bytes", d.SwapLimitBytes, bounds["memory.swap.max"]},
		{"oom.domain.swap_usage_bytes", d.SwapUsageBytes, swapCurrent(t, parent)},
		{"victim.memcg_memory.high_bytes", m.HighBytes, 64 << 20},
		{"victim.memcg_memory.min_bytes", m.MinBytes, 0},
	} {
		if ck.got == nil || *ck.got != ck.want {
			t.Errorf("%s = %v, want %d", ck.name, ck.got, ck.want)
		}
	}
	// The test's cgroups have no swap (memory.swap.max 0, where the
	// kernel has the file): the file says what the kill must.
	if data, err := os.ReadFile(filepath.Join(cg.Dir, "memory.swap.max")); err == nil {
		want := strings.TrimSpace(string(data))
		got := "max"
		if m.SwapLimitBytes != nil {
			got = strconv.FormatUint(*m.SwapLimitBytes, 10)
		}
		if got != want {
			t.Errorf("victim.memcg_memory.swap_limit_bytes = %s, want memory.swap.max's %s", got, want)
		}
	}
}

// zramSwap turns on a swap device of size bytes on zram for the test, in
// the guest only (it changes how the whole machine reclaims).
func zramSwap(t *testing.T, size int64) {
	t.Helper()
	requireGuest(t)
	if _, err := os.Stat("/sys/block/zram0"); err != nil {
		t.Skip("no zram in this guest")
	}
	if err := os.WriteFile("/sys/block/zram0/disksize", []byte(strconv.FormatInt(size, 10)), 0); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{{"mkswap", "/dev/zram0"}, {"swapon", "/dev/zram0"}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("swapoff", "/dev/zram0").Run()
		os.WriteFile("/sys/block/zram0/reset", []byte("1"), 0)
	})
}

// TestOOMDomainNotSwapLimit: on cgroup v2 a cgroup whose swap is at its
// memory.swap.max is not the OOM domain of a kill at its parent's memory
// limit: swap never OOMs. Without a decision hook the walk read the swap
// counter (in v1's memory+swap place) as a limit and named the child.
// The kill carries the child's swap, at its limit, and its memory.
func TestOOMDomainNotSwapLimit(t *testing.T) {
	testenv.RequirePrivileged(t)
	zramSwap(t, 256<<20)
	for _, hook := range []string{HookAuto, HookNone} {
		t.Run(hook, func(t *testing.T) {
			c := startTracer(t, Config{Node: "n", DecisionHook: hook})
			const swapMax = 8 << 20
			parent := memcgtest.New(t, nil, 64<<20)
			child := memcgtest.New(t, parent, 0)
			// The test's cgroups are made without swap: the parent gets it
			// back, the child a limit of its own.
			for dir, value := range map[string]string{parent.Dir: "max", child.Dir: strconv.Itoa(swapMax)} {
				if err := os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte(value), 0); err != nil {
					t.Fatal(err)
				}
			}
			hog := child.Start(t, memcgtest.HogOptions{Bytes: hogBytes})
			hog.WaitKilled(t)
			ev := c.onlyKill(t, hog.PID)
			t.Logf("oom %s victim's memcg %s rss %s", jsonOf(ev.OOM), jsonOf(ev.Victim.MemcgMemory), jsonOf(ev.Victim.RSS))
			if ev.OOM.Domain == nil {
				t.Fatal("oom.domain missing")
			}
			checkCgroup(t, "oom.domain", ev.OOM.Domain.Cgroup, parent)
			m := ev.Victim.MemcgMemory
			near := func(p *uint64, want uint64) bool { return p != nil && *p+(2<<20) >= want && *p <= want+(2<<20) }
			if m == nil || m.SwapLimitBytes == nil || *m.SwapLimitBytes != swapMax || !near(m.SwapUsageBytes, swapMax) {
				t.Errorf("victim.memcg_memory %s: want its swap at its %d-byte limit", jsonOf(m), swapMax)
			}
			if d := ev.OOM.Domain; !near(d.SwapUsageBytes, swapMax) || d.SwapLimitBytes != nil {
				t.Errorf("oom.domain swap usage %v limit %v: want the child's %d, no limit", d.SwapUsageBytes, d.SwapLimitBytes, swapMax)
			}
			if r := ev.Victim.RSS; r == nil || r.Swap == nil || *r.Swap == 0 {
				t.Errorf("victim.rss_bytes %s: want swapped-out bytes", jsonOf(r))
			}
		})
	}
}

// swapCurrent is the cgroup's memory.swap.current.
func swapCurrent(t *testing.T, cg *memcgtest.Cgroup) uint64 {
	t.Helper()
	n, ok := cgroup.Memory{Root: cg.H.Root, V1: cg.H.V1}.Swap(cg.Path)
	if !ok {
		t.Fatalf("no memory.swap.current in %s", cg.Dir)
	}
	return n
}
