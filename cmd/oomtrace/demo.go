// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter/stream"
	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/memhog"
)

// demoHogEnv makes this binary the demo's memory hog; demoHogEnv_PROCS,
// if set, is the cgroup.procs it joins first.
const demoHogEnv = "OOMTRACE_DEMO_HOG"

// demoLimit is the demo cgroup's memory limit.
const demoLimit = 64 << 20

// The command a person can type on a cgroup v2 host with systemd.
const demoManual = "systemd-run --scope -p MemoryMax=64M -p MemorySwapMax=0 tail /dev/zero"

// startWait bounds oomtrace's start in the demo.
const startWait = 60 * time.Second

// runDemoHog allocates and touches memory until the kernel kills it.
func runDemoHog() {
	if procs := os.Getenv(demoHogEnv + "_PROCS"); procs != "" {
		if err := memhog.Join(procs); err != nil {
			fmt.Fprintf(os.Stderr, "oomtrace demo: %v\n", err)
			os.Exit(3)
		}
	}
	// 16 GiB: no limit stopped it.
	fmt.Fprintf(os.Stderr, "oomtrace demo: the hog: %v\n", memhog.Forever(16<<30))
	os.Exit(4)
}

// demoError is a demo failure, said on stderr with exit code 1.
type demoError struct{ msg string }

func (e demoError) Error() string { return e.msg }

func demoFail(format string, a ...any) error { return demoError{fmt.Sprintf(format, a...)} }

// demo shows oomtrace at work in one command: it starts oomtrace, runs a
// process in a new memory cgroup with a 64 MiB limit (swap off) until the
// kernel kills it, prints the event oomtrace wrote, and removes the
// cgroup. The cgroup goes below the caller's own on cgroup v1 and hybrid
// hosts and at the root of v2; on a v2 host inside a systemd unit, where a
// cgroup with processes cannot have children with memory limits, systemd
// makes it (systemd-run --scope).
func demo(stdout, stderr io.Writer) int {
	if err := runDemo(stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "oomtrace demo: %v\n", err)
		return 1
	}
	return 0
}

func runDemo(stdout, stderr io.Writer) error {
	if os.Geteuid() != 0 {
		return demoFail("needs root (sudo %s demo), as oomtrace does", os.Args[0])
	}
	// Whatever ends the demo, its cgroup goes: a closed stdout is an
	// error to return, not a SIGPIPE death, and Ctrl-C kills the hog and
	// returns through the clean-up.
	signal.Ignore(syscall.SIGPIPE)
	interrupt := make(chan os.Signal, 1)
	signal.Notify(interrupt, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(interrupt)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	mem, own, err := demoPlace()
	if err != nil {
		return err
	}
	kills, stop, err := startDemoDaemon(exe, stderr)
	if err != nil {
		return err
	}
	defer stop()
	hog, where, cleanup, err := demoHog(exe, mem, own)
	if err != nil {
		return err
	}
	defer cleanup()
	fmt.Fprintf(stdout, "oomtrace demo: a process allocates memory in %s until the kernel kills it...\n", where)
	pid, err := runUntilKilled(hog, interrupt)
	if err != nil {
		return err
	}
	return showKill(stdout, kills, pid)
}

// demoPlace finds the memory hierarchy and this process's cgroup in it.
func demoPlace() (cgroup.Memory, string, error) {
	mem, err := cgroup.FindMemory("/proc")
	if err != nil {
		return mem, "", err
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return mem, "", err
	}
	own, _, ok := cgroup.MemoryPath(self)
	if ok {
		own, ok = mem.Resolve(own)
	}
	if !ok {
		return mem, "", demoFail("/proc/self/cgroup names no memory cgroup")
	}
	return mem, own, nil
}

// demoKill is a kill oomtrace reported, and its line.
type demoKill struct {
	ev   event.OOMKill
	line string
}

// startDemoDaemon starts oomtrace as make run does, but unpinned (the
// demo leaves nothing attached), and waits for it to start; its log goes
// to stderr, its kills to the channel. stop ends it.
func startDemoDaemon(exe string, stderr io.Writer) (<-chan demoKill, func(), error) {
	daemon := exec.Command(exe, "--cri.endpoint=none", "--web.listen-address=", "--kubeconfig=none", "--no-pin")
	out, err := daemon.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	log, err := daemon.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := daemon.Start(); err != nil {
		return nil, nil, demoFail("start oomtrace: %v", err)
	}
	stop := func() {
		// Its exit status is the demo's to report, not the stop's.
		_ = daemon.Process.Signal(syscall.SIGINT)
		_ = daemon.Wait()
	}
	started := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(log)
		said := false
		for sc.Scan() {
			fmt.Fprintln(stderr, sc.Text())
			if !said && strings.Contains(sc.Text(), "oomtrace started") {
				started <- true
				said = true
			}
		}
		if !said {
			started <- false
		}
	}()
	kills := make(chan demoKill, 16)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev event.OOMKill
			if strings.Contains(sc.Text(), `"type":"oom_kill"`) && json.Unmarshal(sc.Bytes(), &ev) == nil {
				kills <- demoKill{ev, sc.Text()}
			}
		}
		close(kills)
	}()
	select {
	case ok := <-started:
		if !ok {
			stop()
			return nil, nil, demoFail("oomtrace stopped before it started (its log is above)")
		}
	case <-time.After(startWait):
		stop()
		return nil, nil, demoFail("oomtrace did not start in %v", startWait)
	}
	return kills, stop, nil
}

// demoHog is the hog's command in its limited cgroup: one of its own
// below own (v1, hybrid, or the v2 root), else a systemd scope (a v2 host
// that puts this shell in a cgroup with processes, which cannot have a
// child with a memory limit). cleanup removes what it made.
func demoHog(exe string, mem cgroup.Memory, own string) (hog *exec.Cmd, where string, cleanup func(), err error) {
	if !mem.V1 && own != "/" {
		if _, err := exec.LookPath("systemd-run"); err != nil {
			return nil, "", nil, demoFail("this cgroup v2 host puts this shell in %s, a cgroup with processes, which cannot have a child with a memory limit, and has no systemd-run to make one elsewhere: run the demo from a root shell in the root cgroup", own)
		}
		hog = exec.Command("systemd-run", "--scope", "--quiet", "-p", "MemoryMax=64M", "-p", "MemorySwapMax=0", exe)
		hog.Env = append(os.Environ(), demoHogEnv+"=1")
		return hog, "a systemd scope with MemoryMax=64M, MemorySwapMax=0", func() {}, nil
	}
	path := filepath.Join(own, fmt.Sprintf("oomtrace-demo-%d", os.Getpid()))
	if err := mem.Create(path, demoLimit); err != nil {
		return nil, "", nil, err
	}
	hog = exec.Command(exe)
	hog.Env = append(os.Environ(), demoHogEnv+"=1", demoHogEnv+"_PROCS="+filepath.Join(mem.Dir(path), "cgroup.procs"))
	return hog, "the memory cgroup " + path + " (64 MiB, no swap)", func() { _ = mem.Remove(path) }, nil
}

// runUntilKilled runs the hog until it dies (killed by an interrupt, if
// one comes first), and returns its pid; an error if it exited by itself.
func runUntilKilled(hog *exec.Cmd, interrupt <-chan os.Signal) (uint32, error) {
	if err := hog.Start(); err != nil {
		return 0, demoFail("start the hog: %v", err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-interrupt:
			_ = hog.Process.Kill() // it may have died already
		case <-done:
		}
	}()
	err := hog.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0, demoFail("the hog was not killed: %v", err)
	}
	return uint32(hog.Process.Pid), nil
}

// showKill prints oomtrace's event of the kill of pid, as JSON and text.
func showKill(stdout io.Writer, kills <-chan demoKill, pid uint32) error {
	timeout := time.After(10 * time.Second)
	for {
		select {
		case k, ok := <-kills:
			if !ok {
				return demoFail("oomtrace stopped")
			}
			if k.ev.Victim.TGID != pid {
				continue
			}
			fmt.Fprintf(stdout, "oomtrace reported the kill, as the JSON line it writes:\n%s\nand as text (--output text):\n", k.line)
			if err := stream.NewText(stdout).Write(k.ev); err != nil {
				return demoFail("write the kill as text: %v", err)
			}
			fmt.Fprintf(stdout, "\nOn a cgroup v2 host the same by hand: %s (while make run shows the event)\n", demoManual)
			return nil
		case <-timeout:
			return demoFail("the kernel killed process %d, but oomtrace wrote no event for it in 10 s", pid)
		}
	}
}
