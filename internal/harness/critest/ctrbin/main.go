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
	"strconv"
	"syscall"
	"time"
)

var sink [][]byte

func touch(mib int) {
	for i := 0; i < mib; i += 4 {
		b := make([]byte, 4<<20)
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
