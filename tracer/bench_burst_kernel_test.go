// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/benchinfo"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// TestBenchBurst measures a burst of real OOM kills: events reported
// against kills counted by the cgroups, records lost, the share of events
// whose victim cgroup the kernel captured, latency from the kernel's
// timestamp to the event handler, and the tracer's footprint. It prints a
// markdown table. OOMTRACE_BENCH_KILLS sets the burst sizes (1000,10000).
func TestBenchBurst(t *testing.T) {
	testenv.RequirePrivileged(t)
	if os.Getenv(benchEnv) != "1" {
		t.Skip("benchmark: run with make bench")
	}
	testenv.RequirePrivileged(t)
	sizes := []int{1000, 10000}
	if v := os.Getenv("OOMTRACE_BENCH_KILLS"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}

	start := time.Now()
	tr, err := New(Config{Refusals: true, Node: "bench"})
	if err != nil {
		t.Fatal(err)
	}
	attach := time.Since(start)
	defer tr.Close()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		events    []event.OOMKill
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tr.Run(ctx, Handlers{OOMKill: func(ev event.OOMKill, commit func()) {
			commit()
			lat := time.Since(ev.Time.Time)
			mu.Lock()
			latencies = append(latencies, lat)
			events = append(events, ev)
			mu.Unlock()
		}})
	}()
	idleCPU, _ := cpuTime()
	time.Sleep(60 * time.Second)
	idleCPU2, _ := cpuTime()
	idleRSS := rssKiB(t, "VmRSS")

	var b strings.Builder
	fmt.Fprintf(&b, "\nOOM kill bursts in child memory cgroups, 6 at a time; %s\n\n", benchinfo.Machine())
	fmt.Fprintf(&b, "start to all hooks attached (OOM and refusal hooks): %v; tracer RSS idle after 60 s: %d KiB (whole test process); CPU idle for 60 s: %v\n\n",
		attach.Round(time.Millisecond), idleRSS, idleCPU2-idleCPU)
	b.WriteString("| kills | reported / killed (cgroup counters) | lost | victim cgroup captured | latency p50 | p99 | max | CPU during burst (whole test process) | peak RSS (whole test process) |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range sizes {
		mu.Lock()
		latencies = latencies[:0]
		events = events[:0]
		mu.Unlock()
		before, _ := tr.Stats()
		cpu0, _ := cpuTime()
		parent := memcgtest.New(t, nil, 0)
		kills := burst(t, parent, n)
		// Events are matched to the burst by cgroup, not by pid: pids
		// wrap around (pid_max) in a burst of 10,000 processes.
		count := func() (reported, captured int) {
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range events {
				if m := ev.Victim.Memcg; m != nil && strings.HasPrefix(m.Path, parent.Path+"/") {
					reported++
					if m.Source == event.CgroupFromKernel {
						captured++
					}
				}
			}
			return reported, captured
		}
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if r, _ := count(); uint64(r) >= kills {
				break
			}
		}
		cpu1, _ := cpuTime()
		after, _ := tr.Stats()
		reported, captured := count()
		mu.Lock()
		lat := slices.Clone(latencies)
		mu.Unlock()
		slices.Sort(lat)
		q := func(p float64) time.Duration {
			if len(lat) == 0 {
				return 0
			}
			return lat[min(len(lat)-1, int(p*float64(len(lat))))]
		}
		// A table is not a check: nothing lost is what the README says.
		if uint64(reported) != kills || after.Lost != before.Lost {
			t.Errorf("burst of %d: reported %d of %d kills the cgroups counted, %d records lost", n, reported, kills, after.Lost-before.Lost)
		}
		fmt.Fprintf(&b, "| %d | %d / %d | %d | %.1f%% | %v | %v | %v | %v | %d KiB |\n",
			n, reported, kills, after.Lost-before.Lost, 100*float64(captured)/float64(max(reported, 1)),
			q(0.5).Round(time.Microsecond), q(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond),
			(cpu1 - cpu0).Round(time.Millisecond), rssKiB(t, "VmHWM"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b.WriteString("\nLatency is from the kernel's timestamp at mark_victim to the event handler, through the ring buffer and the decoder.\n")
	fmt.Println(b.String())
}

// burst OOM-kills n processes, each in a cgroup of its own below parent,
// six at a time, and returns the kills the cgroups counted.
func burst(t *testing.T, parent *memcgtest.Cgroup, n int) uint64 {
	var kills uint64
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 6)
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cg := memcgtest.New(t, parent, limit)
			h := cg.Start(t, memcgtest.HogOptions{Bytes: hogBytes})
			h.Cmd.Wait()
			k := cg.OOMKills(t)
			cg.Remove(t)
			mu.Lock()
			kills += k
			mu.Unlock()
		}()
	}
	wg.Wait()
	return kills
}

// cpuTime is this process's user+system CPU time.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

func rssKiB(t *testing.T, field string) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}
