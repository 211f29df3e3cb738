// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
	"github.com/oomtrace/oomtrace/internal/refusalfold"
)

// daemon is oomtrace running as a child process.
type daemon struct {
	cmd   *exec.Cmd
	lines chan string // stdout, line by line; closed at its end
	logs  *syncBuffer // stderr
	base  string      // http://address of the metrics server
}

// startTimeout bounds how long oomtrace may take to attach its hooks: about
// a second here, but 15 to 25 s in the qemu guests, where enabling the
// syscall tracepoints live-patches kernel text under software emulation.
const startTimeout = 60 * time.Second

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer = testenv.SyncBuffer

func TestMissingBTF(t *testing.T) {
	testenv.RequirePrivileged(t)
	var stderr bytes.Buffer
	code := run([]string{"--btf.path", "/nonexistent/vmlinux"}, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "kernel BTF not found at /nonexistent/vmlinux") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	if n := strings.Count(strings.TrimSpace(stderr.String()), "\n"); n != 0 {
		t.Errorf("want one line, got %d:\n%s", n+1, stderr.String())
	}
}

// TestUnprivileged runs oomtrace as nobody: one line naming the missing
// capabilities, exit 1.
func TestUnprivileged(t *testing.T) {
	testenv.RequirePrivileged(t)
	// The test binary's own directory is private to root: copy it out.
	dir, err := os.MkdirTemp("", "oomtrace-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "oomtrace")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{runMainEnv + "=1"}
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code := exitCode(t, cmd.Run())
	if code != 1 {
		t.Errorf("exit %d, want 1; stderr %q", code, stderr.String())
	}
	if got := strings.TrimSpace(stderr.String()); got != "oomtrace: missing CAP_BPF and CAP_PERFMON: run as root or grant them (CAP_SYS_ADMIN also works)" {
		t.Errorf("stderr = %q", got)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", stdout.String())
	}
}

// TestEndToEnd runs the binary, OOM-kills a process in a cgroup of the
// test's own, reads its JSON line, and stops oomtrace with SIGTERM.
func TestEndToEnd(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, output := range []string{"json", "text"} {
		t.Run(output, func(t *testing.T) { testEndToEnd(t, output) })
	}
}

// startDaemon runs oomtrace with args (plus a metrics server on a free
// port) and waits until its hooks are attached.
func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	return startDaemonCmd(t, oomtrace(t, append(args, "--web.listen-address", "127.0.0.1:0")...))
}

// startDaemonCmd runs cmd, an oomtrace with a metrics server, and waits
// until its hooks are attached.
func startDaemonCmd(t *testing.T, cmd *exec.Cmd) *daemon {
	t.Helper()
	return startDaemonCmdLogs(t, cmd, &syncBuffer{})
}

// startDaemonCmdLogs is startDaemonCmd writing the daemon's stderr into
// logs as it comes, for a caller that watches it while this waits.
func startDaemonCmdLogs(t *testing.T, cmd *exec.Cmd, logs *syncBuffer) *daemon {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })

	// Wait until it says it is running; keep the rest of stderr.
	d := &daemon{cmd: cmd, lines: make(chan string), logs: logs}
	started := make(chan bool, 1)
	metricsAddr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderrPipe)
		signalled := false
		for sc.Scan() {
			d.logs.Write([]byte(sc.Text() + "\n"))
			if _, addr, ok := strings.Cut(sc.Text(), `msg="serving metrics" address=`); ok {
				metricsAddr <- strings.Fields(addr)[0]
			}
			if !signalled && strings.Contains(sc.Text(), "oomtrace started") {
				started <- true
				signalled = true
			}
		}
		if !signalled {
			started <- false
		}
	}()
	select {
	case ok := <-started:
		if !ok {
			t.Fatalf("oomtrace exited before starting:\n%s", d.logs.String())
		}
	case <-time.After(startTimeout):
		t.Fatalf("oomtrace did not start:\n%s", d.logs.String())
	}
	select {
	case addr := <-metricsAddr:
		d.base = "http://" + addr
	case <-time.After(5 * time.Second):
		t.Fatalf("no metrics address in the log:\n%s", d.logs.String())
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
		close(d.lines)
	}()
	return d
}

// stop sends SIGTERM, drains stdout and checks for a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range d.lines {
	}
	if code := exitCode(t, d.cmd.Wait()); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0; logs:\n%s", code, d.logs.String())
	}
	if !strings.Contains(d.logs.String(), "oomtrace stopped") || !strings.Contains(d.logs.String(), "lost=0") {
		t.Errorf("shutdown log missing counters:\n%s", d.logs.String())
	}
}

func testEndToEnd(t *testing.T, output string) {
	d := startDaemon(t, "--output", output, "--node-name", "e2e-node", "--cri.endpoint", "none")
	base, logs, lines := d.base, d.logs, d.lines
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz: %d, want 200 once started", code)
	}
	killsBefore := scrapeCounter(t, base+"/metrics", `oomtrace_oom_kills_total{container="",domain="other",group="none",init="false",limit="",namespace="",owner="",pod=""}`)

	// A commit refusal of this very process, then an OOM kill.
	if _, err := syscall.Mmap(-1, 0, 1<<45, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON); err != syscall.ENOMEM {
		t.Fatalf("mmap of 2^45 bytes: %v, want ENOMEM", err)
	}
	cg := memcgtest.New(t, nil, 32<<20)
	hog := cg.Start(t, memcgtest.HogOptions{Bytes: 128 << 20})
	hog.WaitKilled(t)

	var found, refusal string
	deadline := time.After(10 * time.Second)
	for found == "" || refusal == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("stdout closed early; logs:\n%s", logs.String())
			}
			if output == "json" && strings.Contains(line, `"type":"commit_refusal"`) {
				var ev event.CommitRefusal
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("not a JSON object: %q: %v", line, err)
				}
				if int(ev.Process.TGID) == os.Getpid() {
					refusal = line
					if ev.Syscall != "mmap" || ev.RequestBytes != 1<<45 || ev.Reason != "commit" || ev.Count != 1 {
						t.Errorf("refusal: %s", line)
					}
				}
			} else if output == "json" {
				var ev event.OOMKill
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("not a JSON object: %q: %v", line, err)
				}
				if int(ev.Victim.PID) == hog.PID {
					found = line
					if ev.Node != "e2e-node" || ev.Victim.Memcg == nil || ev.Victim.Memcg.Path != cg.Path || ev.OOM.Scope != "memcg" {
						t.Errorf("event: %s", line)
					}
				}
			} else if strings.Contains(line, " commit_refusal process="+strconv.Itoa(os.Getpid())+"/") {
				refusal = line
			} else if strings.Contains(line, " oom_kill victim="+strconv.Itoa(hog.PID)+"/") {
				found = line
				if !strings.Contains(line, `"`+cg.Path+`"`) || !strings.Contains(line, "scope=memcg") {
					t.Errorf("text line: %s", line)
				}
			}
		case <-deadline:
			t.Fatalf("no event for victim %d (found %q) or refusal (found %q); logs:\n%s", hog.PID, found, refusal, logs.String())
		}
	}
	t.Logf("%s\n%s", found, refusal)
	if after := scrapeCounter(t, base+"/metrics", `oomtrace_oom_kills_total{container="",domain="other",group="none",init="false",limit="",namespace="",owner="",pod=""}`); after != killsBefore+1 {
		t.Errorf("oomtrace_oom_kills_total moved from %v to %v, want by exactly 1", killsBefore, after)
	}
	// Every kill the kernel counted since the start was seen (other
	// processes of the machine killed meanwhile too: the hooks see all).
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, "\noomtrace_oom_kills_unobserved_total 0\n") {
		t.Errorf("oomtrace_oom_kills_unobserved_total is not 0:\n%s", body)
	}

	d.stop(t)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// scrapeCounter returns the value of one series, 0 when it does not exist yet.
func scrapeCounter(t *testing.T, url, series string) float64 {
	t.Helper()
	code, body := get(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d", url, code)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

func TestPortInUse(t *testing.T) {
	testenv.RequirePrivileged(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var stderr bytes.Buffer
	for _, flag := range []string{"--web.listen-address", "--web.probe-address"} {
		stderr.Reset()
		args := []string{"--web.listen-address", "127.0.0.1:0", flag, l.Addr().String()}
		code := run(args, io.Discard, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), flag) {
			t.Errorf("%s taken: exit %d, %q", flag, code, stderr.String())
		}
	}
}

// TestProbeAddress: --web.probe-address serves the kubelet's probes alone,
// beside the metrics port.
func TestProbeAddress(t *testing.T) {
	testenv.RequirePrivileged(t)
	d := startDaemon(t, "--cri.endpoint", "none", "--kubeconfig", "none", "--refusals=false", "--web.probe-address", "127.0.0.1:0")
	_, addr, ok := strings.Cut(d.logs.String(), `msg="serving probes" address=`)
	if !ok {
		t.Fatalf("no probe address in the log:\n%s", d.logs.String())
	}
	probes := "http://" + strings.Fields(addr)[0]
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 404, "/": 404} {
		if code, _ := get(t, probes+path); code != want {
			t.Errorf("probe port %s: %d, want %d", path, code, want)
		}
	}
	if code, _ := get(t, d.base+"/metrics"); code != 200 {
		t.Errorf("metrics port /metrics: %d", code)
	}
	d.stop(t)
}

// TestStuckReader: nobody reads stdout. oomtrace keeps tracing, drops and
// counts what it cannot write, and still stops promptly on SIGTERM.
func TestStuckReader(t *testing.T) {
	testenv.RequirePrivileged(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The smallest pipe: a few lines fill it.
	if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	cmd := oomtrace(t, "--output.queue", "4", "--web.listen-address", "", "--refusal.window", "1h")
	cmd.Stdout = w
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { cmd.Process.Kill() })
	for deadline := time.Now().Add(startTimeout); !strings.Contains(logs.String(), "oomtrace started"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("oomtrace did not start:\n%s", logs.String())
		}
	}

	// One refusal line each from 20 processes: a cgroup's allowance of
	// lines at once (refusalfold.DefaultBurst; more would fold into one).
	const refusers = refusalfold.DefaultBurst
	exe, _ := os.Executable()
	for i := 0; i < refusers; i++ {
		c := exec.Command(exe, "-test.run=^$")
		c.Env = append(os.Environ(), failMmapEnv+"=1")
		if err := c.Run(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)

	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if code := exitCode(t, err); code != 0 {
			t.Errorf("exit %d after SIGTERM, want 0; logs:\n%s", code, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("oomtrace did not stop with a stuck reader; logs:\n%s", logs.String())
	}
	t.Logf("stopped in %v", time.Since(start))

	written := logValue(t, logs.String(), "written")
	dropped := logValue(t, logs.String(), "output_dropped")
	data, _ := io.ReadAll(r)
	complete := strings.Count(string(data), "\n")
	if complete != written {
		t.Errorf("%d complete lines in the pipe, oomtrace says it wrote %d", complete, written)
	}
	if dropped == 0 || written+dropped < refusers {
		t.Errorf("written %d + dropped %d, want drops and at least the %d refusals", written, dropped, refusers)
	}
	t.Logf("written %d, dropped %d", written, dropped)
}

// logValue reads key=N from the "oomtrace stopped" log line.
func logValue(t *testing.T, logs, key string) int {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "oomtrace stopped") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				return n
			}
		}
	}
	t.Fatalf("no %s= in the stop line:\n%s", key, logs)
	return 0
}

// TestSIGTERMDuringBurst stops an unpinned oomtrace while processes are
// being killed: exit 0, every event it read written out, and none of its
// BPF programs left in the kernel.
func TestSIGTERMDuringBurst(t *testing.T) {
	testenv.RequirePrivileged(t)
	// An earlier test's pinned hooks go when its BPF filesystem does: its
	// last reference dropped after the test, and a dozen tracepoints to
	// detach take the kernel a second here.
	// Programs still loaded after that (another oomtrace on this host) are
	// left out of the check, by id: this run's own must all go.
	before := testenv.OomtracePrograms()
	for deadline := time.Now().Add(20 * time.Second); len(before) > 0 && time.Now().Before(deadline); before = testenv.OomtracePrograms() {
		time.Sleep(200 * time.Millisecond)
	}
	if len(before) > 0 {
		t.Logf("oomtrace programs loaded before this run, left out of the check: %v", before)
	}
	newSince := func() []string {
		var fresh []string
		for _, p := range testenv.OomtracePrograms() {
			if !slices.Contains(before, p) {
				fresh = append(fresh, p)
			}
		}
		return fresh
	}
	// Unpinned: the hooks end with the process (pinned ones stay:
	// TestRestartDrill).
	cmd := oomtrace(t, "--web.listen-address", "", "--no-pin")
	var stdout bytes.Buffer
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	for deadline := time.Now().Add(startTimeout); !strings.Contains(logs.String(), "oomtrace started"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("oomtrace did not start:\n%s", logs.String())
		}
	}
	if len(newSince()) == 0 {
		t.Fatalf("no oomtrace programs loaded while running: the check below would prove nothing (loaded: %v; before: %v)", testenv.ProgramNames(), before)
	}

	cg := memcgtest.New(t, nil, 32<<20)
	stopBurst := make(chan struct{})
	burstDone := make(chan int)
	go func() {
		n := 0
		defer func() { burstDone <- n }()
		for {
			select {
			case <-stopBurst:
				return
			default:
			}
			h := cg.Start(t, memcgtest.HogOptions{Bytes: 128 << 20})
			h.Cmd.Wait()
			n++
		}
	}()
	time.Sleep(2 * time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	close(stopBurst)
	kills := <-burstDone
	if code := exitCode(t, err); code != 0 {
		t.Errorf("exit %d, want 0; logs:\n%s", code, logs.String())
	}
	if left := newSince(); len(left) > 0 {
		t.Errorf("BPF programs left loaded after exit: %v", left)
	}
	lines := strings.Count(stdout.String(), "\n")
	written, dropped := logValue(t, logs.String(), "written"), logValue(t, logs.String(), "output_dropped")
	decoded := logValue(t, logs.String(), "decoded")
	if lines != written || dropped != 0 || decoded == 0 {
		t.Errorf("%d lines on stdout, written=%d output_dropped=%d decoded=%d: everything read must be written", lines, written, dropped, decoded)
	}
	t.Logf("%d kills during the run, %d OOM events decoded, %d lines written", kills, decoded, lines)
}

// TestWebConfigFlag: --web.config.file reaches the daemon's metrics server
// (TestWebConfig checks the server itself): its metrics are served over
// TLS to the configured user only, and plain HTTP gets none.
func TestWebConfigFlag(t *testing.T) {
	testenv.RequirePrivileged(t)
	config, pool := webConfigFiles(t, "prometheus", "s3cret")
	d := startDaemon(t, "--web.config.file", config, "--cri.endpoint", "none", "--kubeconfig", "none", "--no-pin")
	defer d.stop(t)
	addr := strings.TrimPrefix(d.base, "http://")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	scrape := func(user, password string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+addr+"/metrics", nil)
		req.SetBasicAuth(user, password)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("scrape over TLS as %q: %v", user, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == 200 && !strings.Contains(string(body), "oomtrace_hook_info") {
			t.Errorf("scrape as %q: 200 without oomtrace's metrics", user)
		}
		return resp.StatusCode
	}
	if code := scrape("prometheus", "s3cret"); code != 200 {
		t.Errorf("the configured user: %d, want 200", code)
	}
	if code := scrape("prometheus", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("a wrong password: %d, want 401", code)
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served the metrics")
		}
	}
	if !strings.Contains(d.logs.String(), "tls_and_auth=true") {
		t.Errorf("the log does not say the server has TLS and authentication:\n%s", d.logs.String())
	}
}
