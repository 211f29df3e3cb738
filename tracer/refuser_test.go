// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The refuser is this test binary started with refuserEnv set: it makes the
// kernel refuse memory in a way chosen by the tests and reports on stdout.
const (
	refuserEnv     = "OOMTRACE_TEST_REFUSER"
	refuserArgEnv  = "OOMTRACE_TEST_REFUSER_ARG"
	mmapProtRW     = syscall.PROT_READ | syscall.PROT_WRITE
	mmapPrivAnon   = syscall.MAP_PRIVATE | syscall.MAP_ANON
	refuserHugeMap = 1 << 45
)

// maybeRunRefuser runs the refuser and exits when this process is one.
func maybeRunRefuser() {
	mode := os.Getenv(refuserEnv)
	if mode == "" {
		return
	}
	arg, _ := strconv.ParseUint(os.Getenv(refuserArgEnv), 10, 64)
	out := bufio.NewWriter(os.Stdout)
	defer os.Exit(0)
	defer out.Flush()
	switch mode {
	case "rlimit_as":
		// Room for what is mapped now plus 64 MiB, then ask for arg bytes.
		vm := vmSizeBytes()
		lim := syscall.Rlimit{Cur: vm + 64<<20, Max: vm + 64<<20}
		if err := syscall.Setrlimit(syscall.RLIMIT_AS, &lim); err != nil {
			fmt.Fprintln(out, "setrlimit:", err)
			return
		}
		fmt.Fprintln(out, rawMmap(arg))
	case "rlimit_data":
		// Room for the private writable memory mapped now plus 64 MiB,
		// then ask for arg bytes of it.
		data := statusBytes("VmData:")
		lim := syscall.Rlimit{Cur: data + 64<<20, Max: data + 64<<20}
		if err := syscall.Setrlimit(syscall.RLIMIT_DATA, &lim); err != nil {
			fmt.Fprintln(out, "setrlimit:", err)
			return
		}
		fmt.Fprintln(out, rawMmap(arg))
	case "storm":
		// On "go", failing mmaps as fast as possible, saying "started"
		// after the first, until "stop" has come and at least arg were
		// made; then the count of ENOMEMs and the storm's start and end
		// (Unix nanoseconds).
		fmt.Fprintln(out, "ready")
		out.Flush()
		in := bufio.NewReader(os.Stdin)
		line, _ := in.ReadString('\n')
		if strings.TrimSpace(line) != "go" {
			return
		}
		var stop atomic.Bool
		go func() {
			for {
				line, err := in.ReadString('\n')
				if err != nil || strings.TrimSpace(line) == "stop" {
					stop.Store(true)
					return
				}
			}
		}()
		start := time.Now()
		enomem := 0
		for i := uint64(0); i < arg || !stop.Load(); i++ {
			if rawMmap(refuserHugeMap) == "ENOMEM" {
				enomem++
			}
			if i == 0 {
				fmt.Fprintln(out, "started")
				out.Flush()
			}
		}
		fmt.Fprintln(out, enomem, start.UnixNano(), time.Now().UnixNano())
	case "map_count":
		// Page-sized mappings, alternately read-only and read-write so
		// that none merges, until the kernel refuses one (vm.max_map_count
		// mappings exist); then the count and the error.
		// The last few are unmapped before reporting: the runtime may
		// need a mapping or two of its own to go on.
		var last [64]uintptr
		n := 0
		for {
			prot := uintptr(syscall.PROT_READ)
			if n%2 == 1 {
				prot = mmapProtRW
			}
			addr, _, errno := syscall.RawSyscall6(syscall.SYS_MMAP, 0, 4096, prot, mmapPrivAnon, ^uintptr(0), 0)
			if errno != 0 {
				for _, a := range last {
					syscall.RawSyscall(syscall.SYS_MUNMAP, a, 4096, 0)
				}
				fmt.Fprintln(out, n, strings.ToUpper(errnoName(errno)))
				return
			}
			last[n%len(last)] = addr
			n++
		}
	case "succeed":
		// arg successful small mappings.
		ok := 0
		for i := uint64(0); i < arg; i++ {
			addr, _, errno := syscall.RawSyscall6(syscall.SYS_MMAP, 0, 4096, mmapProtRW, mmapPrivAnon, ^uintptr(0), 0)
			if errno == 0 {
				syscall.RawSyscall(syscall.SYS_MUNMAP, addr, 4096, 0)
				ok++
			}
		}
		fmt.Fprintln(out, ok)
	case "mode2":
		// Commit arg bytes now (mode 0 still), say ready, wait for "go"
		// (mode 2 by then), then try a mapping, a brk and a fork of arg
		// bytes each, reporting each result.
		held := rawMmapKeep(arg)
		fmt.Fprintln(out, "ready", held)
		out.Flush()
		in := bufio.NewReader(os.Stdin)
		line, _ := in.ReadString('\n')
		if strings.TrimSpace(line) != "go" {
			return
		}
		mm := rawMmap(arg)
		cur, _, _ := syscall.RawSyscall(syscall.SYS_BRK, 0, 0, 0)
		got, _, _ := syscall.RawSyscall(syscall.SYS_BRK, cur+uintptr(arg), 0, 0)
		brk := "ok"
		if got == cur {
			brk = "unchanged"
		}
		fork := rawFork()
		fmt.Fprintln(out, mm, brk, fork)
		out.Flush()
		// Keep holding until the test closes stdin: the tracer samples
		// Committed_AS when it writes each line, and the mode 2 rule is
		// only true while the held bytes are still committed.
		in.ReadString('\n')
	}
}

func rawMmap(n uint64) string {
	addr, _, errno := syscall.RawSyscall6(syscall.SYS_MMAP, 0, uintptr(n), mmapProtRW, mmapPrivAnon, ^uintptr(0), 0)
	if errno != 0 {
		return strings.ToUpper(errnoName(errno))
	}
	syscall.RawSyscall(syscall.SYS_MUNMAP, addr, uintptr(n), 0)
	return "ok"
}

// rawMmapKeep maps n private writable bytes and keeps them (charged to commit).
func rawMmapKeep(n uint64) string {
	_, _, errno := syscall.RawSyscall6(syscall.SYS_MMAP, 0, uintptr(n), mmapProtRW, mmapPrivAnon, ^uintptr(0), 0)
	if errno != 0 {
		return strings.ToUpper(errnoName(errno))
	}
	return "ok"
}

// rawFork forks; a child that does get created exits at once.
func rawFork() string {
	pid, _, errno := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
	if errno != 0 {
		return strings.ToUpper(errnoName(errno))
	}
	if pid == 0 {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws syscall.WaitStatus
	syscall.Wait4(int(pid), &ws, 0, nil)
	return "ok"
}

func errnoName(e syscall.Errno) string {
	if e == syscall.ENOMEM {
		return "enomem"
	}
	return "errno" + strconv.Itoa(int(e))
}

func vmSizeBytes() uint64 { return statusBytes("VmSize:") }

// statusBytes is a kB field of this process's /proc/self/status, in bytes.
func statusBytes(field string) uint64 {
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// refuser starts the refuser; it is killed when the test ends.
func refuser(t *testing.T, mode string, arg uint64) (*exec.Cmd, *bufio.Reader, *os.File) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), refuserEnv+"="+mode, refuserArgEnv+"="+strconv.FormatUint(arg, 10))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = pr
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	t.Cleanup(func() {
		pw.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, bufio.NewReader(stdout), pw
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("refuser: %v (read %q)", err, line)
	}
	return strings.TrimSpace(line)
}
