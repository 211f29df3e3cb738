// SPDX-License-Identifier: Apache-2.0

// Command ctrbin is the one program of the test image: the pod's pause
// process, an idle container holding some memory, or a memory hog.
//
//	ctrbin pause        wait for SIGTERM or SIGINT
//	ctrbin stubborn [MIB [MS]]
//	                    ignore SIGTERM (only SIGKILL ends it); like hog
//	                    with MIB
//	ctrbin idle MIB     touch MIB MiB, then wait
//	ctrbin hog MIB [MS] after MS milliseconds, touch memory in 4 MiB steps
//	                    up to MIB MiB, then wait
//	ctrbin parent MODE ARGS...
//	                    run ctrbin MODE ARGS... as a child, say how it
//	                    ended, and wait on (a container's init whose
//	                    worker process is the one OOM-killed)
//	ctrbin respawn N MODE ARGS...
//	                    as parent, but start the child again each time
//	                    it dies, N times in all (a supervisor whose
//	                    worker is OOM-killed again and again)
//	ctrbin refusers N   run N processes one after another, each refused
//	                    one mapping of a pebibyte (ENOMEM: a commit
//	                    refusal), then wait
//	ctrbin refuse       be refused one such mapping, and exit
//	ctrbin storm RATE S fork RATE processes a second for S seconds, each
//	                    refused one mapping of a pebibyte, then wait
//	ctrbin swarm N MIB  fork N processes that sleep (a container of many
//	                    processes), then touch MIB MiB, then wait
//	ctrbin armed MIB    wait for SIGUSR1, then touch MIB MiB, then wait
//	ctrbin kill PID...  send SIGKILL to each PID, stay a second, and exit
//	                    (a user-space OOM killer, named by CTRBIN_COMM)
//	ctrbin cgroupkill FILE
//	                    write 1 to the cgroup.kill file FILE, stay a
//	                    second, and exit (Talos's OOM controller)
//	ctrbin fail         exit 1 (a liveness probe that fails)
//	ctrbin churn MIB    touch MIB MiB, then write to every page of it
//	                    again and again (a working set that thrashes
//	                    when it does not fit)
//	ctrbin leak MIB RATE
//	                    touch 1 MiB at a time, RATE a second, up to MIB
//	                    MiB (a leak), then wait
//	ctrbin wave MIB S   touch MIB MiB, hold it S seconds, free it, then
//	                    wait
//	ctrbin pagecache MIB S
//	                    write a file of MIB MiB, drop it from the page
//	                    cache, then read it over and over for S seconds
//	                    (page cache that fills a limit), then wait
//
// Outside a container (benchmarks) it first joins the cgroup whose
// cgroup.procs file CTRBIN_CGROUP_PROCS names. With CTRBIN_COMM set, it
// first names itself that (/proc/self/comm: a tenant's process names are
// its own to choose, control characters included).
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var sink [][]byte

// A killer sends its signals from its main thread, the one CTRBIN_COMM
// names (/proc/self/comm is the thread group leader's), as a
// single-threaded killer does: the kernel records the sending thread's
// name.
func init() {
	if len(os.Args) > 1 && (os.Args[1] == "kill" || os.Args[1] == "cgroupkill") {
		runtime.LockOSThread()
	}
}

// readOver writes a file of mib MiB (in the container's own file system,
// on the node's disk), drops its pages from the cache (written back
// first), then reads it whole again and again for d: each read charges
// page cache to the container's memory cgroup, which the kernel reclaims
// at the limit.
func readOver(mib int, d time.Duration) error {
	f, err := os.Create("/pagecache")
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for i := range mib {
		if _, err := f.Write(chunk); err != nil {
			return err
		}
		// Dirty pages are written back before they can be reclaimed:
		// few at a time, or the writes themselves fill the limit.
		if i%16 == 15 {
			if err := f.Sync(); err != nil {
				return err
			}
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return err
	}
	fmt.Printf("pagecache: reading %d MiB over and over\n", mib)
	for end := time.Now().Add(d); time.Now().Before(end); {
		if _, err := f.Seek(0, 0); err != nil {
			return err
		}
		for {
			if _, err := f.Read(chunk); err != nil {
				break
			}
		}
	}
	return nil
}

func touch(mib int) { touchChunks(mib, 4) }

// touchChunks touches mib MiB in chunks of chunk MiB, kept in sink.
func touchChunks(mib, chunk int) {
	for i := 0; i < mib; i += chunk {
		b := make([]byte, chunk<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		sink = append(sink, b)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ctrbin pause|idle MIB|hog MIB")
		os.Exit(2)
	}
	if procs := os.Getenv("CTRBIN_CGROUP_PROCS"); procs != "" {
		if err := os.WriteFile(procs, []byte("0"), 0); err != nil {
			fmt.Fprintf(os.Stderr, "ctrbin: join cgroup: %v\n", err)
			os.Exit(3)
		}
	}
	if comm := os.Getenv("CTRBIN_COMM"); comm != "" {
		if err := os.WriteFile("/proc/self/comm", []byte(comm), 0); err != nil {
			fmt.Fprintf(os.Stderr, "ctrbin: name itself: %v\n", err)
			os.Exit(3)
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	switch os.Args[1] {
	case "parent":
		// By its own path, not /proc/self/exe: the child's comm is
		// then ctrbin, as a worker's is its program's.
		child := exec.Command(os.Args[0], os.Args[2:]...)
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		if err := child.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "ctrbin: start child: %v\n", err)
			os.Exit(3)
		}
		fmt.Printf("parent: child %d started\n", child.Process.Pid)
		go func() {
			err := child.Wait()
			fmt.Printf("parent: child ended: %v; running on\n", err)
		}()
	case "respawn":
		// A supervisor: starts its child again each time it dies, N
		// times in all, then runs on.
		n, _ := strconv.Atoi(os.Args[2])
		go func() {
			for i := 1; i <= n; i++ {
				child := exec.Command(os.Args[0], os.Args[3:]...)
				child.Stdout, child.Stderr = os.Stdout, os.Stderr
				if err := child.Start(); err != nil {
					fmt.Fprintf(os.Stderr, "ctrbin: start child: %v\n", err)
					os.Exit(3)
				}
				fmt.Printf("respawn: child %d of %d, pid %d\n", i, n, child.Process.Pid)
				err := child.Wait()
				fmt.Printf("respawn: child ended: %v\n", err)
			}
			fmt.Println("respawn: done; running on")
		}()
	case "pause":
	case "kill", "cgroupkill":
		for _, arg := range os.Args[2:] {
			var err error
			if os.Args[1] == "cgroupkill" {
				err = os.WriteFile(arg, []byte("1"), 0)
			} else if pid, perr := strconv.Atoi(arg); perr != nil {
				err = perr
			} else {
				err = syscall.Kill(pid, syscall.SIGKILL)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "ctrbin: %s %s: %v\n", os.Args[1], arg, err)
				os.Exit(1)
			}
		}
		// A daemon stays: oomtrace reads the killer's cgroup when it
		// handles the first SIGKILL.
		time.Sleep(time.Second)
		return
	case "fail":
		os.Exit(1)
	case "churn":
		mib, _ := strconv.Atoi(os.Args[2])
		touch(mib)
		fmt.Printf("churn: writing %d MiB over and over\n", mib)
		go func() {
			for n := byte(2); ; n++ {
				for _, b := range sink {
					for j := 0; j < len(b); j += 4096 {
						b[j] = n
					}
				}
			}
		}()
	case "refuse":
		_, err := syscall.Mmap(-1, 0, 1<<50, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
		if err != syscall.ENOMEM {
			fmt.Fprintf(os.Stderr, "ctrbin: a pebibyte: %v, want ENOMEM\n", err)
			os.Exit(1)
		}
		return
	case "refusers":
		n, _ := strconv.Atoi(os.Args[2])
		refused := 0
		for range n {
			if exec.Command(os.Args[0], "refuse").Run() == nil {
				refused++
			}
		}
		fmt.Printf("refusers: %d of %d processes refused\n", refused, n)
	case "storm":
		rate, _ := strconv.Atoi(os.Args[2])
		secs, _ := strconv.Atoi(os.Args[3])
		// Reaped by the kernel: no zombie waits for us.
		signal.Ignore(syscall.SIGCHLD)
		const tick = 10 * time.Millisecond
		perTick := max(rate/int(time.Second/tick), 1)
		start := time.Now()
		forked := 0
		for i := 0; time.Since(start) < time.Duration(secs)*time.Second; i++ {
			for range perTick {
				if refuser() {
					forked++
				}
			}
			if wait := time.Until(start.Add(time.Duration(i+1) * tick)); wait > 0 {
				time.Sleep(wait)
			}
		}
		fmt.Printf("storm: %d processes refused in %v\n", forked, time.Since(start).Round(time.Millisecond))
	case "swarm":
		n, _ := strconv.Atoi(os.Args[2])
		mib, _ := strconv.Atoi(os.Args[3])
		forked := 0
		for range n {
			if sleeper() {
				forked++
			}
		}
		fmt.Printf("swarm: %d of %d processes sleeping\n", forked, n)
		touch(mib)
		fmt.Printf("swarm: holding %d MiB\n", mib)
	case "leak":
		mib, _ := strconv.Atoi(os.Args[2])
		rate, _ := strconv.Atoi(os.Args[3])
		for i := 0; i < mib; i++ {
			touchChunks(1, 1)
			time.Sleep(time.Second / time.Duration(max(rate, 1)))
		}
		fmt.Printf("leak: holding %d MiB\n", mib)
	case "wave":
		mib, _ := strconv.Atoi(os.Args[2])
		secs, _ := strconv.Atoi(os.Args[3])
		touch(mib)
		fmt.Printf("wave: holding %d MiB for %d s\n", mib, secs)
		time.Sleep(time.Duration(secs) * time.Second)
		sink = nil
		debug.FreeOSMemory()
		fmt.Println("wave: freed")
	case "pagecache":
		mib, _ := strconv.Atoi(os.Args[2])
		secs, _ := strconv.Atoi(os.Args[3])
		if err := readOver(mib, time.Duration(secs)*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "ctrbin: pagecache: %v\n", err)
			os.Exit(1)
		}
		fmt.Println("pagecache: done reading; running on")
	case "armed":
		mib, _ := strconv.Atoi(os.Args[2])
		fire := make(chan os.Signal, 1)
		signal.Notify(fire, syscall.SIGUSR1)
		fmt.Println("armed: waiting for SIGUSR1")
		<-fire
		touch(mib)
		fmt.Printf("armed: holding %d MiB\n", mib)
	case "idle", "hog", "stubborn":
		if os.Args[1] == "stubborn" {
			signal.Reset(syscall.SIGTERM)
			signal.Ignore(syscall.SIGTERM)
			fmt.Println("stubborn: ignoring SIGTERM")
		}
		mib := 0
		if len(os.Args) > 2 {
			mib, _ = strconv.Atoi(os.Args[2])
		}
		if len(os.Args) > 3 {
			ms, _ := strconv.Atoi(os.Args[3])
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		touch(mib)
		fmt.Printf("%s: holding %d MiB\n", os.Args[1], mib)
		if os.Args[1] == "stubborn" {
			select {}
		}
	default:
		fmt.Fprintf(os.Stderr, "ctrbin: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
	<-stop
}

// sleepFor is what a sleeper asks of nanosleep: not on its stack.
var sleepFor = syscall.Timespec{Sec: 3600}

// rawFork forks this process (not vfork: the child would return through
// the parent's stack frames). The child of a raw fork has the calling
// thread alone and must run no Go code that could need the runtime, only
// raw system calls, until it exits. ok is false when the fork failed.
//
//go:nosplit
func rawFork() (child, ok bool) {
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	return errno == 0 && pid == 0, errno == 0
}

// sleeper forks a process that only sleeps, a few pages of its own, until
// a signal ends it. false when the fork failed.
//
//go:nosplit
func sleeper() bool {
	child, ok := rawFork()
	if !child {
		return ok
	}
	for {
		_, _, _ = syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&sleepFor)), 0, 0)
	}
}

// refuser forks a process that is refused one mapping of a pebibyte
// (ENOMEM: a commit refusal) and exits. false when the fork failed.
//
//go:nosplit
func refuser() bool {
	child, ok := rawFork()
	if !child {
		return ok
	}
	// Refused (ENOMEM) is the point: the result is not looked at.
	_, _, _ = syscall.RawSyscall6(syscall.SYS_MMAP, 0, 1<<50, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS, ^uintptr(0), 0)
	for {
		_, _, _ = syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
}
