// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/benchinfo"
	"github.com/oomtrace/oomtrace/internal/harness/critest"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// The daemon benchmark (make bench): the real binary, its stdout read as a
// consumer would. Knobs: OOMTRACE_BENCH_IDLE (60s), OOMTRACE_BENCH_RATE
// (kills per second, 1000), OOMTRACE_BENCH_STEADY (kills, 5000),
// OOMTRACE_BENCH_STORM (failing mmaps, 1000000).
const stormEnv = "OOMTRACE_TEST_STORM"

func init() {
	// A storm process: n failing mmaps, then exit.
	if v := os.Getenv(stormEnv); v != "" {
		n, _ := strconv.Atoi(v)
		for i := 0; i < n; i++ {
			syscall.Syscall6(syscall.SYS_MMAP, 0, 1<<45, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON, ^uintptr(0), 0)
		}
		os.Exit(0)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// procStat is a process's CPU time and memory from /proc.
func procStat(t *testing.T, pid int) (cpu time.Duration, rssKiB, hwmKiB int) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	cpu = time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rssKiB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			hwmKiB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	return
}

// stamped is a line of the daemon's stdout with the moment it was read.
type stamped struct {
	line string
	at   time.Time
}

func TestBenchDaemon(t *testing.T) {
	testenv.RequirePrivileged(t)
	if os.Getenv("OOMTRACE_BENCH") != "1" {
		t.Skip("benchmark: run with make bench")
	}
	testenv.RequirePrivileged(t)
	idle := time.Duration(envInt("OOMTRACE_BENCH_IDLE", 60)) * time.Second
	rate := envInt("OOMTRACE_BENCH_RATE", 1000)
	steady := envInt("OOMTRACE_BENCH_STEADY", 5000)
	storm := envInt("OOMTRACE_BENCH_STORM", 1_000_000)

	launched := time.Now()
	d := startDaemon(t, "--cri.endpoint", "none", "--kubeconfig", "none", "--output.queue", "65536")
	attach := time.Since(launched)
	pid := d.cmd.Process.Pid
	// Read stdout at once, stamping each line: the latency is to here.
	lines := make(chan stamped, 1<<20)
	go func() {
		for l := range d.lines {
			lines <- stamped{l, time.Now()}
		}
		close(lines)
	}()

	cpu0, _, _ := procStat(t, pid)
	time.Sleep(idle)
	cpu1, idleRSS, _ := procStat(t, pid)
	idleAnon, idleBinary, idleRings := rssBreakdown(t, pid)

	// Steady kills at the target rate: workers take one token per kill.
	parent := memcgtest.New(t, nil, 0)
	workers := envInt("OOMTRACE_BENCH_WORKERS", 2*runtime.NumCPU())
	cgs := make([]*memcgtest.Cgroup, workers)
	for i := range cgs {
		cgs[i] = memcgtest.New(t, parent, 8<<20)
	}
	tokens := make(chan struct{}, 64)
	var started atomic.Int64
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; i < steady; i++ {
			<-tick.C
			tokens <- struct{}{}
		}
		close(tokens)
	}()
	// The hog is a small static program: a kill costs an exec, 8 MiB of
	// page faults and the kill, not a Go test binary's start.
	hog := critest.BuildCtrbin(t, t.TempDir())
	var wg sync.WaitGroup
	begin := time.Now()
	for _, cg := range cgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tokens {
				c := hogIn(hog, cg)
				if err := c.Start(); err != nil {
					t.Error(err)
					return
				}
				started.Add(1)
				c.Wait()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	killed := killedIn(t, cgs)
	var lat []time.Duration
	reported := 0
	collect := func(timeout time.Duration, until func() bool) {
		deadline := time.After(timeout)
		for !until() {
			select {
			case s := <-lines:
				var ev event.OOMKill
				if json.Unmarshal([]byte(s.line), &ev) != nil || ev.Type != event.TypeOOMKill || ev.Victim.Memcg == nil ||
					!strings.HasPrefix(ev.Victim.Memcg.Path, parent.Path+"/") {
					continue
				}
				reported++
				lat = append(lat, s.at.Sub(ev.Time.Time))
			case <-deadline:
				return
			}
		}
	}
	collect(30*time.Second, func() bool { return uint64(reported) >= killed })
	cpu2, _, hwm := procStat(t, pid)
	lost := scrapeCounter(t, d.base+"/metrics", `oomtrace_events_lost_total{kind="oom_kill"}`)
	dropped := scrapeCounter(t, d.base+"/metrics", `oomtrace_output_dropped_total`)
	slices.Sort(lat)
	q := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(time.Microsecond)
	}

	// Commit storm: one process fails storm mmaps; OOM kills happen meanwhile.
	exe, _ := os.Executable()
	stormCmd := exec.Command(exe, "-test.run=^$")
	stormCmd.Env = append(os.Environ(), stormEnv+"="+strconv.Itoa(storm))
	cpu3, _, _ := procStat(t, pid)
	stormStart := time.Now()
	if err := stormCmd.Start(); err != nil {
		t.Fatal(err)
	}
	stormKills := memcgtest.New(t, parent, 8<<20)
	const duringStorm = 20
	for i := 0; i < duringStorm; i++ {
		c := hogIn(hog, stormKills)
		c.Run()
	}
	if err := stormCmd.Wait(); err != nil {
		t.Fatal(err)
	}
	stormTime := time.Since(stormStart)
	var refused uint64
	stormLines, stormKillLines := 0, 0
	deadline := time.After(30 * time.Second)
	for refused < uint64(storm) || stormKillLines < duringStorm {
		select {
		case s := <-lines:
			var ev struct {
				Type    string        `json:"type"`
				Process event.Process `json:"process"`
				Victim  event.Victim  `json:"victim"`
				Count   uint64        `json:"count"`
			}
			if json.Unmarshal([]byte(s.line), &ev) != nil {
				continue
			}
			switch {
			case ev.Type == event.TypeCommitRefusal && int(ev.Process.TGID) == stormCmd.Process.Pid:
				refused += ev.Count
				stormLines++
			case ev.Type == event.TypeOOMKill && ev.Victim.Memcg != nil && ev.Victim.Memcg.Path == stormKills.Path:
				stormKillLines++
			}
		case <-deadline:
			t.Errorf("storm: %d of %d refusals, %d of %d kills reported", refused, storm, stormKillLines, duringStorm)
			refused = uint64(storm)
			stormKillLines = duringStorm
		}
	}
	cpu4, _, hwm2 := procStat(t, pid)
	unobserved := scrapeCounter(t, d.base+"/metrics", "oomtrace_oom_kills_unobserved_total")
	d.stop(t)

	var b strings.Builder
	fmt.Fprintf(&b, "\nThe daemon (bin/oomtrace's code, JSON on a pipe read at once); %s\n\n", benchinfo.Machine())
	b.WriteString("| measure | value |\n|---|---:|\n")
	fmt.Fprintf(&b, "| start to all hooks attached (process start to \"oomtrace started\") | %v |\n", attach.Round(time.Millisecond))
	fmt.Fprintf(&b, "| idle %v: CPU / RSS | %v / %d KiB |\n", idle, (cpu1 - cpu0).Round(time.Millisecond), idleRSS)
	fmt.Fprintf(&b, "| idle RSS: anonymous / the binary's pages / ring buffers mapped | %d / %d / %d KiB |\n", idleAnon, idleBinary, idleRings)
	fmt.Fprintf(&b, "| steady kills: target rate / achieved | %d/s / %.0f/s (%d kills in %v) |\n", rate, float64(started.Load())/elapsed.Seconds(), started.Load(), elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "| reported / killed (cgroup counters), lost, output dropped | %d / %d, %v, %v |\n", reported, killed, lost, dropped)
	fmt.Fprintf(&b, "| latency kernel timestamp to line read from stdout: p50 / p99 / max | %v / %v / %v |\n", q(0.5), q(0.99), q(1))
	fmt.Fprintf(&b, "| CPU during the steady kills / peak RSS | %v / %d KiB |\n", (cpu2 - cpu1).Round(time.Millisecond), hwm)
	fmt.Fprintf(&b, "| commit storm: failing mmaps counted / made, lines, time | %d / %d, %d lines, %v |\n", refused, storm, stormLines, stormTime.Round(time.Millisecond))
	fmt.Fprintf(&b, "| OOM kills during the storm reported / made | %d / %d |\n", stormKillLines, duringStorm)
	fmt.Fprintf(&b, "| CPU during the storm / peak RSS | %v / %d KiB |\n", (cpu4 - cpu3).Round(time.Millisecond), hwm2)
	fmt.Fprintf(&b, "| OOM kills no hook saw (oomtrace_oom_kills_unobserved_total) | %v |\n", unobserved)
	fmt.Println(b.String())
	if uint64(reported) != killed || lost != 0 || refused != uint64(storm) || unobserved != 0 {
		t.Errorf("lost events: reported %d of %d kills, ring lost %v, refusals %d of %d", reported, killed, lost, refused, storm)
	}
}
