// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// storm OOM-kills processes one after another in a cgroup of the test's
// own until stopped, and remembers their pids.
type storm struct {
	mu     sync.Mutex
	killed []int
	stop   chan struct{}
	done   chan struct{}
}

func startStorm(t *testing.T) *storm {
	cg := memcgtest.New(t, nil, 32<<20)
	s := &storm{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			h := cg.Start(t, memcgtest.HogOptions{Bytes: 128 << 20})
			h.Cmd.Wait()
			s.mu.Lock()
			s.killed = append(s.killed, h.PID)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *storm) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.killed)
}

// end stops the storm and returns every pid it killed.
func (s *storm) end() []int {
	close(s.stop)
	<-s.done
	return s.killed
}

// kills gathers the kills a daemon writes, until its stdout ends.
type kills struct {
	mu   sync.Mutex
	evs  []event.OOMKill
	done chan struct{}
}

func collectKills(t *testing.T, d *daemon) *kills {
	k := &kills{done: make(chan struct{})}
	go func() {
		defer close(k.done)
		for line := range d.lines {
			if !strings.Contains(line, `"type":"oom_kill"`) {
				continue
			}
			var ev event.OOMKill
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Errorf("%q: %v", line, err)
				continue
			}
			k.mu.Lock()
			k.evs = append(k.evs, ev)
			k.mu.Unlock()
		}
	}()
	return k
}

func (k *kills) has(pid int) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, ev := range k.evs {
		if int(ev.Victim.PID) == pid {
			return true
		}
	}
	return false
}

// buildUpgrade builds this oomtrace again as another version: an upgrade
// to load in place of the running one.
func buildUpgrade(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no Go toolchain to build the upgrade with (the qemu guests): the host runs this")
	}
	bin := filepath.Join(t.TempDir(), "oomtrace-upgrade")
	cmd := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version=drill-upgrade", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the upgrade: %v\n%s", err, out)
	}
	return bin
}

// TestRestartDrill: a kill storm goes on while oomtrace is SIGKILLed and
// started again, and while it is replaced by another build (started while
// the old one still runs, as a DaemonSet with surge does; it takes over
// once the old one has stopped). Every kill of the storm is reported, a
// line written twice only with its seq (killed between writing a line and
// committing it), and the kernel's count agrees: no kill unobserved.
func TestRestartDrill(t *testing.T) {
	testenv.RequirePrivileged(t)
	upgrade := buildUpgrade(t)
	pin := memcgtest.PinPath(t)
	args := []string{"--pin.path", pin, "--cri.endpoint", "none", "--kubeconfig", "none", "--refusals=false", "--container.check-delay", "0"}
	waitKills := func(s *storm, n int) {
		for deadline := time.Now().Add(30 * time.Second); s.count() < n; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the storm killed %d of %d in 30 s", s.count(), n)
			}
		}
	}

	// The first start of a boot has the one gap there is: kills while
	// the hooks load are counted as unobserved. The storm starts after.
	first := startDaemon(t, args...)
	firstKills := collectKills(t, first)
	s := startStorm(t)
	waitKills(s, 10)
	// A crash: nothing drains, nothing is committed any more.
	first.cmd.Process.Signal(syscall.SIGKILL)
	<-firstKills.done // stdout to its end, then Wait
	first.cmd.Wait()
	downFrom := s.count()
	waitKills(s, downFrom+10) // while nothing runs

	second := startDaemon(t, args...)
	secondKills := collectKills(t, second)
	t.Logf("second: %s", grepLine(second.logs.String(), "took over"))
	waitKills(s, s.count()+10)

	// The upgrade starts while the second runs, and waits for it: the
	// second is stopped only once the upgrade says it waits (the overlap
	// of a rolling update, not one process after the other).
	third := make(chan *daemon, 1)
	thirdLogs := &syncBuffer{}
	go func() {
		cmd := exec.Command(upgrade, append(args, "--web.listen-address", "127.0.0.1:0")...)
		third <- startDaemonCmdLogs(t, cmd, thirdLogs)
	}()
	for deadline := time.Now().Add(startTimeout); !strings.Contains(thirdLogs.String(), "waiting for the oomtrace that holds the pin path"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the upgrade never waited for the second to stop:\n%s", thirdLogs.String())
		}
	}
	if strings.Contains(thirdLogs.String(), "oomtrace started") {
		t.Fatalf("the upgrade started while the second held the pin path:\n%s", thirdLogs.String())
	}
	second.cmd.Process.Signal(syscall.SIGTERM)
	<-secondKills.done
	if code := exitCode(t, second.cmd.Wait()); code != 0 {
		t.Errorf("second: exit %d after SIGTERM:\n%s", code, second.logs.String())
	}
	d3 := <-third
	thirdKills := collectKills(t, d3)
	waitKills(s, s.count()+10)
	killed := s.end()

	// Everything the storm killed, from whichever process wrote it.
	missing := map[int]bool{}
	for _, pid := range killed {
		if !firstKills.has(pid) && !secondKills.has(pid) {
			missing[pid] = true
		}
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		for pid := range missing {
			if thirdKills.has(pid) {
				delete(missing, pid)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	unobserved := scrapeCounter(t, d3.base+"/metrics", "oomtrace_oom_kills_unobserved_total")
	d3.cmd.Process.Signal(syscall.SIGTERM)
	<-thirdKills.done
	if code := exitCode(t, d3.cmd.Wait()); code != 0 {
		t.Errorf("upgrade: exit %d after SIGTERM:\n%s", code, d3.logs.String())
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d kills never reported: %v", len(missing), len(killed), missing)
	}
	if unobserved != 0 {
		t.Errorf("oomtrace_oom_kills_unobserved_total %v, want 0", unobserved)
	}

	// Twice only as the same kill: same seq.
	seqs := map[int]map[uint64]int{}
	var runs [3]int
	for i, k := range []*kills{firstKills, secondKills, thirdKills} {
		for _, ev := range k.evs {
			pid := int(ev.Victim.PID)
			if seqs[pid] == nil {
				seqs[pid] = map[uint64]int{}
			}
			seqs[pid][ev.Seq]++
			runs[i]++
		}
	}
	twice := 0
	for _, pid := range killed {
		if len(seqs[pid]) > 1 {
			t.Errorf("kill of %d reported with seqs %v", pid, seqs[pid])
		}
		for _, n := range seqs[pid] {
			twice += n - 1
		}
	}
	t.Logf("%d killed (%d while nothing ran); written by the first %d, the second %d, the upgrade %d; %d written twice",
		len(killed), 10, runs[0], runs[1], runs[2], twice)
	if !strings.Contains(d3.logs.String(), "version=drill-upgrade") || !strings.Contains(d3.logs.String(), "generation=3") {
		t.Errorf("the upgrade did not take over as generation 3:\n%s", d3.logs.String())
	}

	// The uninstall: everything pinned goes, once.
	for _, want := range []string{"removed " + pin, "nothing pinned at " + pin} {
		out, err := oomtrace(t, "unpin", "--pin.path", pin).CombinedOutput()
		if code := exitCode(t, err); code != 0 || !strings.Contains(string(out), want) {
			t.Errorf("oomtrace unpin: exit %d, %q; want 0 and %q", code, out, want)
		}
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Errorf("%s after oomtrace unpin: %v", pin, err)
	}
}

// grepLine is the first line of logs containing s.
func grepLine(logs, s string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
