// SPDX-License-Identifier: Apache-2.0

package memwatch

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/harness/benchinfo"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// TestBenchWatcherCost measures what the watcher costs a node of 110 pods
// and 300 containers, each a memory cgroup with a limit: the CPU time of
// its reads (one interval's Poll, a thread's own CPU time) against the
// interval, and beside it a reference in the same loop, an empty interval
// (the loop with nothing to read). 30 of the containers hold 85% of their
// limit: those are read closely (memory.stat, memory.events,
// memory.pressure) every interval, as a node's containers near their
// limits are.
func TestBenchWatcherCost(t *testing.T) {
	testenv.RequirePrivileged(t)
	if os.Getenv("OOMTRACE_BENCH") != "1" {
		t.Skip("benchmark: run with make bench")
	}
	const pods, perPod, close = 110, 3, 30
	top := memcgtest.New(t, nil, 0)
	var busy []*memcgtest.Cgroup
	ctrs := 0
	for p := 0; p < pods; p++ {
		pod := memcgtest.New(t, top, 1<<30)
		for c := 0; c < perPod && ctrs < 300; c++ {
			cg := memcgtest.New(t, pod, 64<<20)
			ctrs++
			if len(busy) < close {
				busy = append(busy, cg)
			}
		}
	}
	for _, cg := range busy {
		h := cg.Start(t, memcgtest.HogOptions{Bytes: 55 << 20, Idle: true})
		_ = h
	}
	for _, cg := range busy {
		cg.WaitUsage(t, 54<<20)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w := New(Options{Memory: cgroup.Memory{Root: top.H.Root, V1: top.H.V1}})
	before := threadCPU(t)
	w.scan()
	scanCPU := threadCPU(t) - before
	watched := w.Watched()
	const rounds = 60
	var polled, empty time.Duration
	for i := 0; i < rounds; i++ {
		a := threadCPU(t)
		w.Poll()
		b := threadCPU(t)
		polled += b - a
		c := threadCPU(t)
		d := threadCPU(t)
		empty += d - c
		time.Sleep(DefaultInterval)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	perInterval := polled / rounds
	share := 100 * perInterval.Seconds() / DefaultInterval.Seconds()
	fmt.Printf("\nThe memory pressure watcher: %d cgroups with a limit watched (%d pods, %d containers, %d of them at 85%% of their limit, read closely), %d intervals of %v; %s\n\n",
		watched, pods, ctrs, close, rounds, DefaultInterval, benchinfo.Machine())
	fmt.Printf("| | CPU per interval | share of one core |\n|---|---:|---:|\n")
	fmt.Printf("| reference: an empty interval | %v | %.4f%% |\n", empty/rounds, 100*(empty/rounds).Seconds()/DefaultInterval.Seconds())
	fmt.Printf("| the watcher's Poll | %v | %.3f%% |\n", perInterval.Round(time.Microsecond), share)
	fmt.Printf("| the walk for new cgroups (every %v) | %v | %.3f%% |\n\n", DefaultRescan, scanCPU.Round(time.Microsecond), 100*scanCPU.Seconds()/DefaultRescan.Seconds())
	fmt.Printf("Go heap in use after the run: %.1f MiB (the whole test process)\n", float64(ms.HeapInuse)/(1<<20))
	if watched < ctrs+pods {
		t.Errorf("%d cgroups watched, want the %d pods' and containers'", watched, ctrs+pods)
	}
}

// threadCPU is the calling thread's CPU time, user and system, to the
// nanosecond (getrusage's is counted in ticks).
func threadCPU(t *testing.T) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ts.Nano())
}
