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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter"
	"github.com/oomtrace/oomtrace/internal/cgroup"
)

// demoHogEnv makes this binary the demo's memory hog.
const demoHogEnv = "OOMTRACE_DEMO_HOG"

// demoLimit is the demo cgroup's memory limit.
const demoLimit = 64 << 20

// The command a person can type on a cgroup v2 host with systemd.
const demoManual = "systemd-run --scope -p MemoryMax=64M -p MemorySwapMax=0 tail /dev/zero"

// runDemoHog allocates and touches memory until the kernel kills it.
func runDemoHog() {
	if procs := os.Getenv(demoHogEnv + "_PROCS"); procs != "" {
		// Join the demo cgroup before the first allocation.
		if err := os.WriteFile(procs, []byte("0"), 0); err != nil {
			fmt.Fprintf(os.Stderr, "oomtrace demo: join the cgroup: %v\n", err)
			os.Exit(3)
		}
	}
	var keep [][]byte
	for {
		b := make([]byte, 4<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep = append(keep, b)
		if len(keep) > 1<<12 { // 16 GiB: no limit stopped it
			fmt.Fprintln(os.Stderr, "oomtrace demo: the hog was not killed")
			os.Exit(4)
		}
	}
}

// demo shows oomtrace at work in one command: it starts oomtrace, runs a
// process in a new memory cgroup with a 64 MiB limit (swap included) until
// the kernel kills it, prints the event oomtrace wrote, and removes the
// cgroup. The cgroup goes below the caller's own on cgroup v1 and hybrid
// hosts and at the root of v2; on a v2 host inside a systemd unit, where a
// cgroup with processes cannot have children with memory limits, systemd
// makes it (systemd-run --scope).
func demo(stdout, stderr io.Writer) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "oomtrace demo: "+format+"\n", a...)
		return 1
	}
	if os.Geteuid() != 0 {
		return fail("needs root (sudo %s demo), as oomtrace does", os.Args[0])
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
		return fail("%v", err)
	}
	mem, err := cgroup.FindMemory("/proc")
	if err != nil {
		return fail("%v", err)
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return fail("%v", err)
	}
	own, _, ok := cgroup.MemoryPath(self)
	if ok {
		own, ok = mem.Resolve(own)
	}
	if !ok {
		return fail("/proc/self/cgroup names no memory cgroup")
	}
	useSystemd := !mem.V1 && own != "/"
	if _, err := exec.LookPath("systemd-run"); useSystemd && err != nil {
		return fail("this cgroup v2 host puts this shell in %s, a cgroup with processes, which cannot have a child with a memory limit, and has no systemd-run to make one elsewhere: run the demo from a root shell in the root cgroup", own)
	}

	// oomtrace itself, as make run starts it, but unpinned: the demo
	// leaves nothing attached.
	daemon := exec.Command(exe, "--cri.endpoint=none", "--web.listen-address=", "--kubeconfig=none", "--no-pin")
	daemonOut, err := daemon.StdoutPipe()
	if err != nil {
		return fail("%v", err)
	}
	daemonLog, err := daemon.StderrPipe()
	if err != nil {
		return fail("%v", err)
	}
	if err := daemon.Start(); err != nil {
		return fail("start oomtrace: %v", err)
	}
	defer func() {
		daemon.Process.Signal(syscall.SIGINT)
		daemon.Wait()
	}()
	started := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(daemonLog)
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
	select {
	case ok := <-started:
		if !ok {
			return fail("oomtrace stopped before it started (its log is above)")
		}
	case <-time.After(startWait):
		return fail("oomtrace did not start in %v", startWait)
	}
	type kill struct {
		ev   event.OOMKill
		line string
	}
	events := make(chan kill, 16)
	go func() {
		sc := bufio.NewScanner(daemonOut)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev event.OOMKill
			if strings.Contains(sc.Text(), `"type":"oom_kill"`) && json.Unmarshal(sc.Bytes(), &ev) == nil {
				events <- kill{ev, sc.Text()}
			}
		}
		close(events)
	}()

	hog := exec.Command(exe)
	hog.Env = append(os.Environ(), demoHogEnv+"=1")
	var where string
	if useSystemd {
		hog = exec.Command("systemd-run", "--scope", "--quiet", "-p", "MemoryMax=64M", "-p", "MemorySwapMax=0", exe)
		hog.Env = append(os.Environ(), demoHogEnv+"=1")
		where = "a systemd scope with MemoryMax=64M, MemorySwapMax=0"
	} else {
		path := filepath.Join(own, fmt.Sprintf("oomtrace-demo-%d", os.Getpid()))
		remove, err := demoCgroup(mem, path)
		if err != nil {
			return fail("%v", err)
		}
		defer remove()
		hog.Env = append(hog.Env, demoHogEnv+"_PROCS="+filepath.Join(mem.Dir(path), "cgroup.procs"))
		where = "the memory cgroup " + path + " (64 MiB, no swap)"
	}
	fmt.Fprintf(stdout, "oomtrace demo: a process allocates memory in %s until the kernel kills it...\n", where)
	if err := hog.Start(); err != nil {
		return fail("start the hog: %v", err)
	}
	hogDone := make(chan struct{})
	defer close(hogDone)
	go func() {
		select {
		case <-interrupt:
			hog.Process.Kill()
		case <-hogDone:
		}
	}()
	err = hog.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fail("the hog was not killed: %v", err)
	}
	pid := uint32(hog.Process.Pid)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case k, ok := <-events:
			if !ok {
				return fail("oomtrace stopped")
			}
			if k.ev.Victim.TGID != pid {
				continue
			}
			fmt.Fprintf(stdout, "oomtrace reported the kill, as the JSON line it writes:\n%s\nand as text (--output text):\n", k.line)
			exporter.NewText(stdout).Write(k.ev)
			fmt.Fprintf(stdout, "\nOn a cgroup v2 host the same by hand: %s (while make run shows the event)\n", demoManual)
			return 0
		case <-timeout:
			return fail("the kernel killed process %d, but oomtrace wrote no event for it in 10 s", pid)
		}
	}
}

// startWait bounds oomtrace's start in the demo.
const startWait = 60 * time.Second

// demoCgroup creates the demo's memory cgroup with its limits, and returns
// what removes it.
func demoCgroup(mem cgroup.Memory, path string) (func(), error) {
	dir := mem.Dir(path)
	if !mem.V1 {
		// Only below the root (the caller checked): the root may have
		// children with limits while it has processes, once its subtree
		// has the memory controller (systemd enables it at boot).
		ctl := filepath.Join(filepath.Dir(dir), "cgroup.subtree_control")
		if data, err := os.ReadFile(ctl); err != nil || !slices.Contains(strings.Fields(string(data)), "memory") {
			if err := os.WriteFile(ctl, []byte("+memory"), 0); err != nil {
				return nil, fmt.Errorf("enable the memory controller: %w", err)
			}
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	remove := func() {
		for i := 0; i < 50; i++ {
			if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(100 * time.Millisecond) // the killed hog leaves
		}
	}
	limits := [][2]string{{"memory.max", strconv.Itoa(demoLimit)}, {"memory.swap.max", "0"}}
	if mem.V1 {
		limits = [][2]string{{"memory.limit_in_bytes", strconv.Itoa(demoLimit)}, {"memory.memsw.limit_in_bytes", strconv.Itoa(demoLimit)}, {"memory.swappiness", "0"}}
	}
	for i, l := range limits {
		err := os.WriteFile(filepath.Join(dir, l[0]), []byte(l[1]), 0)
		if err != nil && i == 0 {
			remove()
			return nil, fmt.Errorf("limit %s: %w", path, err)
		}
		// Without swap accounting, memsw and swap.max are absent: the
		// limit alone holds where swap is off, swappiness 0 elsewhere.
	}
	return remove, nil
}
