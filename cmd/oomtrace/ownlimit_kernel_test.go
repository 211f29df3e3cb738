// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/critest"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// TestOwnMemoryLimit: oomtrace in a memory cgroup of its own with a small
// limit (--memory.limit says so, as the DaemonSet does), a burst of kills,
// and nobody reading its stdout meanwhile. It stays below its limit (the
// kernel never OOM-kills it): the kills it cannot write wait in the ring
// buffer, not in its memory, and once that is full the kernel counts them
// as lost. Every kill of the burst is written or counted: nothing is lost
// silently. (The counters are the machine's: other processes' kills may
// be in them too.)
func TestOwnMemoryLimit(t *testing.T) {
	testenv.RequirePrivileged(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no Go toolchain to build the hog with (the qemu guests): the host runs this")
	}
	if raceEnabled {
		t.Skip("the race detector multiplies oomtrace's memory: its own limit means nothing then")
	}
	const limit = 48 << 20
	burst := envInt("OOMTRACE_TEST_OWN_LIMIT_KILLS", 1500)
	hog := critest.BuildCtrbin(t, t.TempDir())
	own := memcgtest.New(t, nil, limit)
	victims := memcgtest.New(t, nil, 0)
	cgs := make([]*memcgtest.Cgroup, 4)
	for i := range cgs {
		cgs[i] = memcgtest.New(t, victims, 8<<20)
	}

	// Into its cgroup before it starts: its maps are charged there too.
	cmd := oomtrace(t, "--memory.limit", strconv.Itoa(limit), "--cri.endpoint", "none", "--kubeconfig", "none",
		"--refusals=false", "--container.check-delay", "0", "--web.listen-address", "127.0.0.1:0")
	cmd.Args = append([]string{"sh", "-c", `echo $$ > "$0" && exec "$@"`, own.Dir + "/cgroup.procs"}, cmd.Args...)
	cmd.Path, _ = exec.LookPath("sh")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	var base string
	for deadline := time.Now().Add(startTimeout); ; time.Sleep(50 * time.Millisecond) {
		l := logs.String()
		if _, addr, ok := strings.Cut(l, `msg="serving metrics" address=`); ok && strings.Contains(l, "oomtrace started") {
			base = "http://" + strings.Fields(addr)[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("oomtrace did not start:\n%s", l)
		}
	}

	// The burst, with stdout unread: the pipe fills, then the queue.
	var wg sync.WaitGroup
	per := burst / len(cgs)
	for _, cg := range cgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				c := hogIn(hog, cg)
				c.Run()
			}
		}()
	}
	wg.Wait()
	killed := killedIn(t, cgs)
	peak := readUint(t, own.Dir, "memory.max_usage_in_bytes", "memory.peak")
	// Now read everything it wrote.
	reported := 0
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var dropped, lost float64
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("oomtrace's stdout ended (%d kills in its own cgroup); its log:\n%s", own.OOMKills(t), logs.String())
			}
			var ev event.OOMKill
			if json.Unmarshal([]byte(l), &ev) == nil && ev.Type == event.TypeOOMKill && ev.Victim.Memcg != nil && strings.HasPrefix(ev.Victim.Memcg.Path, victims.Path+"/") {
				reported++
			}
			continue
		case <-time.After(2 * time.Second):
		}
		dropped = scrapeCounter(t, base+"/metrics", "oomtrace_output_dropped_total")
		lost = scrapeCounter(t, base+"/metrics", `oomtrace_events_lost_total{kind="oom_kill"}`)
		if uint64(reported)+uint64(dropped+lost) >= killed {
			break
		}
	}
	if n := own.OOMKills(t); n != 0 {
		t.Fatalf("oomtrace was OOM-killed in its own cgroup (%d kills); its log:\n%s", n, logs.String())
	}
	t.Logf("%d killed: %d written, %v lost in the kernel (ring buffer full), %v dropped by the output; oomtrace's cgroup peaked at %d MiB of %d",
		killed, reported, lost, dropped, peak>>20, limit>>20)
	if uint64(reported)+uint64(dropped+lost) < killed {
		t.Errorf("%d killed, %d written + %v lost + %v dropped: some missing silently", killed, reported, lost, dropped)
	}
}

// hogIn is the small static hog (critest.BuildCtrbin), to be OOM-killed
// in cg: it joins it itself.
func hogIn(hog string, cg *memcgtest.Cgroup) *exec.Cmd {
	c := exec.Command(hog, "hog", "32")
	c.Env = []string{"CTRBIN_CGROUP_PROCS=" + cg.Dir + "/cgroup.procs"}
	return c
}

// killedIn is how many OOM kills the kernel counted in cgs.
func killedIn(t *testing.T, cgs []*memcgtest.Cgroup) uint64 {
	var n uint64
	for _, cg := range cgs {
		n += cg.OOMKills(t)
	}
	return n
}

// readUint reads the first of files in dir that exists, as a number.
func readUint(t *testing.T, dir string, files ...string) uint64 {
	for _, f := range files {
		data, err := os.ReadFile(dir + "/" + f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		if err != nil {
			t.Fatalf("%s/%s: %v", dir, f, err)
		}
		return n
	}
	t.Fatalf("none of %v in %s", files, dir)
	return 0
}
