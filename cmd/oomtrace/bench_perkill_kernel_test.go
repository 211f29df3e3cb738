// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/benchinfo"
	"github.com/oomtrace/oomtrace/internal/harness/critest"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// bpftraceVictim is the reference: a bare printf on every OOM victim, the
// kernel's timestamp (CLOCK_MONOTONIC) in it.
const bpftraceVictim = `tracepoint:oom:mark_victim { printf("%d %llu\n", args->pid, nsecs); }`

// TestBenchPerKill (make bench) measures what each OOM kill costs the
// daemon, with every default feature on, beside a bare bpftrace printf on
// the same kills in the same run: CPU time per kill (every thread's, from
// /proc/PID/task/*/schedstat) and the latency from the kernel's timestamp
// to the line read from stdout. Knobs: OOMTRACE_BENCH_PERKILL (kills,
// 300), OOMTRACE_BENCH_PERKILL_RATE (kills per second, 50),
// OOMTRACE_BENCH_PROFILE (a file: the daemon's CPU profile of the run),
// OOMTRACE_BENCH_ARGS (more flags for the daemon, split at spaces: what a
// feature costs, by turning it off).
func TestBenchPerKill(t *testing.T) {
	testenv.RequirePrivileged(t)
	if os.Getenv("OOMTRACE_BENCH") != "1" {
		t.Skip("benchmark: run with make bench")
	}
	kills := envInt("OOMTRACE_BENCH_PERKILL", 300)
	rate := envInt("OOMTRACE_BENCH_PERKILL_RATE", 50)
	args := []string{"--cri.endpoint", "none", "--kubeconfig", "none"}
	if p := os.Getenv("OOMTRACE_BENCH_PROFILE"); p != "" {
		args = append(args, "--debug.cpu-profile", p)
	}
	args = append(args, strings.Fields(os.Getenv("OOMTRACE_BENCH_ARGS"))...)
	d := startDaemon(t, args...)
	bt := startBpftraceVictims(t)
	lines := make(chan stamped, 1<<16)
	go func() {
		for l := range d.lines {
			lines <- stamped{l, time.Now()}
		}
		close(lines)
	}()
	// Let both settle (the daemon's first samples, bpftrace's start).
	time.Sleep(2 * time.Second)

	cg := memcgtest.New(t, nil, 16<<20)
	hog := critest.BuildCtrbin(t, t.TempDir())
	cpuD0, cpuB0 := threadsCPU(t, d.cmd.Process.Pid), threadsCPU(t, bt.cmd.Process.Pid)
	pids := map[uint32]bool{}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	for range kills {
		<-tick.C
		c := hogIn(hog, cg)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		pids[uint32(c.Process.Pid)] = true
		c.Wait()
	}
	tick.Stop()
	killed := cg.OOMKills(t)

	var daemonLat, bpftraceLat []time.Duration
	deadline := time.After(30 * time.Second)
	for len(daemonLat) < len(pids) || len(bpftraceLat) < len(pids) {
		select {
		case s := <-lines:
			var ev event.OOMKill
			if json.Unmarshal([]byte(s.line), &ev) == nil && ev.Type == event.TypeOOMKill && pids[ev.Victim.TGID] {
				daemonLat = append(daemonLat, s.at.Sub(ev.Time.Time))
			}
		case l := <-bt.lines:
			if pids[l.pid] {
				bpftraceLat = append(bpftraceLat, l.latency)
			}
		case <-deadline:
			t.Fatalf("reported: oomtrace %d, bpftrace %d of %d kills", len(daemonLat), len(bpftraceLat), len(pids))
		}
	}
	cpuD1, cpuB1 := threadsCPU(t, d.cmd.Process.Pid), threadsCPU(t, bt.cmd.Process.Pid)
	bt.stop()
	d.stop(t)

	perKill := func(a, b cpuUse) (time.Duration, float64) {
		return ((b.cpu - a.cpu) / time.Duration(len(pids))).Round(time.Microsecond), float64(b.slices-a.slices) / float64(len(pids))
	}
	pd, wd := perKill(cpuD0, cpuD1)
	pb, wb := perKill(cpuB0, cpuB1)
	qd, qb := percentiles(daemonLat), percentiles(bpftraceLat)
	var b strings.Builder
	fmt.Fprintf(&b, "\nPer kill: %d OOM kills at %d/s (one at a time, in a 16 MiB cgroup), oomtrace with its defaults and a bare bpftrace printf on oom:mark_victim beside it; %s\n\n", len(pids), rate, benchinfo.Machine())
	b.WriteString("| | CPU per kill | thread wake-ups per kill | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| oomtrace | %v | %.1f | %v | %v | %v | %v |\n", pd, wd, qd[0], qd[1], qd[2], qd[3])
	fmt.Fprintf(&b, "| bpftrace printf | %v | %.1f | %v | %v | %v | %v |\n", pb, wb, qb[0], qb[1], qb[2], qb[3])
	fmt.Fprintf(&b, "| oomtrace / bpftrace | %.1fx | %.1fx | %.2fx | %.2fx | %.2fx | %.2fx |\n",
		ratio(pd, pb), wd/max(wb, 0.1), ratio(qd[0], qb[0]), ratio(qd[1], qb[1]), ratio(qd[2], qb[2]), ratio(qd[3], qb[3]))
	fmt.Println(b.String())
	if p := os.Getenv("OOMTRACE_BENCH_PROFILE"); p != "" {
		exe, _ := os.Executable()
		top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=40", exe, p).CombinedOutput()
		fmt.Printf("The daemon's CPU profile of the run (%s):\n%s\n", p, top)
		if err != nil {
			t.Errorf("go tool pprof: %v", err)
		}
	}
	if uint64(len(pids)) != killed {
		t.Errorf("%d hogs, the kernel counted %d kills in their cgroup", len(pids), killed)
	}
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// percentiles are p50, p90, p99 and the maximum of ds.
func percentiles(ds []time.Duration) [4]time.Duration {
	slices.Sort(ds)
	var q [4]time.Duration
	for i, p := range []float64{0.5, 0.9, 0.99, 1} {
		if len(ds) > 0 {
			q[i] = ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(10 * time.Microsecond)
		}
	}
	return q
}

// threadsCPU is the CPU time every thread of pid has run, from schedstat
// (nanoseconds, not ticks), and how many times one was put on a CPU
// (schedstat's timeslices: each is a wake-up, and on this VM a wake-up of
// an idle vCPU costs more than most of what a kill's handling does).
func threadsCPU(t *testing.T, pid int) cpuUse {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	var sum cpuUse
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited meanwhile
		}
		if fields := strings.Fields(string(data)); len(fields) == 3 {
			ns, _ := strconv.ParseInt(fields[0], 10, 64)
			slices, _ := strconv.ParseInt(fields[2], 10, 64)
			sum.cpu += time.Duration(ns)
			sum.slices += slices
		}
	}
	return sum
}

// cpuUse is what threadsCPU reads.
type cpuUse struct {
	cpu    time.Duration
	slices int64
}

// bpftraceRun is bpftrace printing victims; lines carry the latency from
// the kernel's timestamp to the moment each was read.
type bpftraceRun struct {
	cmd   *exec.Cmd
	lines chan bpftraceLine
	stop  func()
}

type bpftraceLine struct {
	pid     uint32
	latency time.Duration
}

func startBpftraceVictims(t *testing.T) *bpftraceRun {
	bin, err := exec.LookPath("bpftrace")
	if err != nil {
		t.Fatalf("bpftrace not installed: %v", err)
	}
	cmd := exec.Command(bin, "-e", bpftraceVictim)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &bpftraceRun{cmd: cmd, lines: make(chan bpftraceLine, 1<<16)}
	r.stop = func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	attached := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var now unix.Timespec
			unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
			if strings.HasPrefix(sc.Text(), "Attaching") {
				close(attached)
				continue
			}
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				continue
			}
			pid, err1 := strconv.ParseUint(f[0], 10, 32)
			ns, err2 := strconv.ParseInt(f[1], 10, 64)
			if err1 == nil && err2 == nil {
				r.lines <- bpftraceLine{uint32(pid), time.Duration(now.Nano() - ns)}
			}
		}
	}()
	select {
	case <-attached:
	case <-time.After(60 * time.Second):
		t.Fatal("bpftrace did not attach within a minute")
	}
	return r
}
