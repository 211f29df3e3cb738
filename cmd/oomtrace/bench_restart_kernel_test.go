// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/harness/benchinfo"
	"github.com/oomtrace/oomtrace/internal/harness/critest"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// rssBreakdown splits a process's resident memory as smaps does: its
// anonymous memory, the pages of its own binary, and the ring buffers it
// has mapped (kernel memory, there whether mapped or not), in KiB.
func rssBreakdown(t *testing.T, pid int) (anon, binary, rings int) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	var name string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			name = ""
			if len(f) >= 6 {
				name = strings.Join(f[5:], " ")
			}
		case len(f) == 3 && f[0] == "Rss:":
			kb, _ := strconv.Atoi(f[1])
			switch name {
			case exe:
				binary += kb
			case "anon_inode:bpf-map":
				rings += kb
			}
		case len(f) == 3 && f[0] == "Anonymous:":
			kb, _ := strconv.Atoi(f[1])
			anon += kb
		}
	}
	return
}

// TestBenchRestart (make bench): the restart drill, measured. Kills at a
// steady rate while oomtrace is SIGKILLed and started again, then replaced
// by another build (started while the old one runs, taking over once it
// has stopped): how many were killed, how many reported, twice, lost or
// unobserved, and how long the hand-overs took.
func TestBenchRestart(t *testing.T) {
	testenv.RequirePrivileged(t)
	if os.Getenv("OOMTRACE_BENCH") != "1" {
		t.Skip("benchmark: run with make bench")
	}
	upgrade := buildUpgrade(t)
	pin := memcgtest.PinPath(t)
	phase := time.Duration(envInt("OOMTRACE_BENCH_RESTART_PHASE", 3)) * time.Second
	rate := envInt("OOMTRACE_BENCH_RESTART_RATE", 200)
	args := []string{"--pin.path", pin, "--cri.endpoint", "none", "--kubeconfig", "none", "--refusals=false", "--container.check-delay", "0", "--output.queue", "65536"}

	parent := memcgtest.New(t, nil, 0)
	workers := 4
	cgs := make([]*memcgtest.Cgroup, workers)
	for i := range cgs {
		cgs[i] = memcgtest.New(t, parent, 8<<20)
	}
	killedNow := func() uint64 { return killedIn(t, cgs) }
	hog := critest.BuildCtrbin(t, t.TempDir())

	first := startDaemon(t, args...)
	firstKills := collectKills(t, first)

	// The storm: paced kills until stopped.
	stop := make(chan struct{})
	tokens := make(chan struct{}, 16)
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		defer close(tokens)
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				select {
				case tokens <- struct{}{}:
				default:
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for _, cg := range cgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tokens {
				c := hogIn(hog, cg)
				c.Run() // killed: its cgroup counts it
			}
		}()
	}

	time.Sleep(phase)
	crash := time.Now()
	first.cmd.Process.Signal(syscall.SIGKILL)
	<-firstKills.done
	first.cmd.Wait()
	atCrash := killedNow()
	time.Sleep(phase) // nothing runs
	second := startDaemon(t, args...)
	secondKills := collectKills(t, second)
	downFor := time.Since(crash)
	whileDown := killedNow() - atCrash

	time.Sleep(phase)
	third := make(chan *daemon, 1)
	go func() {
		cmd := exec.Command(upgrade, append(args, "--web.listen-address", "127.0.0.1:0")...)
		third <- startDaemonCmd(t, cmd)
	}()
	time.Sleep(time.Second)
	handover := time.Now()
	second.cmd.Process.Signal(syscall.SIGTERM)
	<-secondKills.done
	second.cmd.Wait()
	d3 := <-third
	handoverTook := time.Since(handover)
	thirdKills := collectKills(t, d3)
	time.Sleep(phase)
	close(stop)
	wg.Wait()
	killed := killedNow()

	// Reported: the kills of the storm's cgroups, by seq, from all three.
	count := func() (unique, twice int) {
		seen := map[uint64]int{}
		for _, k := range []*kills{firstKills, secondKills, thirdKills} {
			k.mu.Lock()
			for _, ev := range k.evs {
				if ev.Victim.Memcg != nil && strings.HasPrefix(ev.Victim.Memcg.Path, parent.Path+"/") {
					seen[ev.Seq]++
				}
			}
			k.mu.Unlock()
		}
		for _, n := range seen {
			twice += n - 1
		}
		return len(seen), twice
	}
	var unique, twice int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if unique, twice = count(); uint64(unique) >= killed || time.Now().After(deadline) {
			break
		}
	}
	lost := scrapeCounter(t, d3.base+"/metrics", `oomtrace_events_lost_total{kind="oom_kill"}`)
	unobserved := scrapeCounter(t, d3.base+"/metrics", "oomtrace_oom_kills_unobserved_total")
	d3.stop(t)
	<-thirdKills.done

	var b strings.Builder
	fmt.Fprintf(&b, "\nThe restart drill (kills at %d/s; a SIGKILL and a restart, then an upgrade to another build); %s\n\n", rate, benchinfo.Machine())
	b.WriteString("| measure | value |\n|---|---:|\n")
	fmt.Fprintf(&b, "| killed (cgroup counters) / reported (distinct seq) / written twice | %d / %d / %d |\n", killed, unique, twice)
	fmt.Fprintf(&b, "| killed while no oomtrace ran (SIGKILL to the next start, %v) | %d |\n", downFor.Round(time.Millisecond), whileDown)
	fmt.Fprintf(&b, "| upgrade: SIGTERM to the old one to the new one started | %v |\n", handoverTook.Round(time.Millisecond))
	fmt.Fprintf(&b, "| lost (ring buffer full) / unobserved (kernel count minus hooks') | %v / %v |\n", lost, unobserved)
	fmt.Println(b.String())
	if uint64(unique) != killed || lost != 0 || unobserved != 0 {
		t.Errorf("killed %d, reported %d, lost %v, unobserved %v", killed, unique, lost, unobserved)
	}
}
