// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
	flag "github.com/spf13/pflag"
)

const runMainEnv = "OOMTRACE_TEST_RUN_MAIN"

// failMmapEnv makes this test binary fail one huge mmap and exit: a commit
// refusal from a process of its own.
const failMmapEnv = "OOMTRACE_TEST_FAIL_MMAP"

func TestMain(m *testing.M) {
	memcgtest.MaybeRunHog()
	if os.Getenv(failMmapEnv) == "1" {
		syscall.Mmap(-1, 0, 1<<45, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		os.Exit(0)
	}
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	maybeRunKiller()
	testenv.Announce("cmd/oomtrace")
	os.Exit(m.Run())
}

// oomtrace returns a command running this binary as oomtrace with args.
func oomtrace(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	if os.Geteuid() == 0 && os.Getenv(envName("pin.path")) == "" && (len(args) == 0 || args[0] != "demo" && args[0] != "unpin") {
		// Pinned where nothing of the host's /sys/fs/bpf is touched, and
		// gone with the test.
		cmd.Env = append(cmd.Env, envName("pin.path")+"="+memcgtest.PinPath(t))
	}
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("run: %v", err)
	return -1
}

func TestUsageErrors(t *testing.T) {
	// Not a testdata file: the qemu guests run this binary from /.
	notKubelet := filepath.Join(t.TempDir(), "pod.yaml")
	if err := os.WriteFile(notKubelet, []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: not-a-kubelet-config\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--no-such-flag"}, 2, "unknown flag: --no-such-flag"},
		{[]string{"--output", "xml"}, 2, "--output must be json or text"},
		{[]string{"--hook.victim", "kprobe"}, 2, `--hook.victim must be one of auto, tp_btf, tracepoint, not "kprobe"`},
		{[]string{"--hook.decision", "x"}, 2, `--hook.decision must be one of`},
		{[]string{"--output.queue", "0"}, 2, "--output.queue must be at least 1"},
		{[]string{"--ringbuf.bytes", "1000"}, 2, "power of two"},
		{[]string{"--log.level", "loud"}, 2, "--log.level"},
		{[]string{"--log.format", "xml"}, 2, "--log.format must be one of text, logfmt, json"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--web.telemetry-path", "metrics"}, 2, "must start with /"},
		{[]string{"--metrics.retention", "-1s"}, 2, "must not be negative"},
		{[]string{"--refusal.window", "0"}, 2, "--refusal.window must be positive"},
		{[]string{"--eviction-hard", "memory.available>1Gi"}, 2, "--eviction-hard"},
		{[]string{"--eviction-hard", "memory.available<200%"}, 2, "percentage"},
		{[]string{"--kubelet.config", notKubelet}, 2, "kubelet config"},
		{[]string{"--node.sample-interval", "0"}, 2, "--node.sample-interval must be positive"},
		{[]string{"--correlation.window", "-1m"}, 2, "--correlation.window must be positive"},
		{[]string{"--cri.retention", "0"}, 2, "--cri.retention must be positive"},
		{[]string{"--filter.pod", "ns/"}, 2, "--filter.pod must be NAME or NAMESPACE/NAME"},
		{[]string{"--pin.path", "bpf/oomtrace"}, 2, `--pin.path must start with /, not "bpf/oomtrace"`},
		{[]string{"--pin", "--no-pin"}, 2, "--no-pin must not be given with --pin"},
		{[]string{"unpin", "--pin.path", "rel"}, 2, "--pin.path must start with /"},
		{[]string{"unpin", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"unpin", "--help"}, 0, "Usage: oomtrace unpin"},
		{[]string{"--help"}, 0, "--hook.victim"},
	}
	for _, c := range cases {
		var stderr bytes.Buffer
		code := run(c.args, io.Discard, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr.String(), c.code, c.stderr)
		}
	}
}

// TestKubeletConfigMissing: a DaemonSet names one kubelet config path for
// every node, and only some kubelets keep their config there: a missing
// file is a warning, and the flags apply.
func TestKubeletConfigMissing(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	kc, err := kubeletSettings(options{kubeletCfg: "/nonexistent/config.yaml", evictionHard: "memory.available<1Gi", enforceAlloc: []string{"none"}}, log)
	if err != nil || kc.Thresholds["memory.available"].Bytes != 1<<30 || len(kc.Thresholds) != 1 || kc.Kubepods != "" {
		t.Errorf("settings %+v, err %v: want the flags' memory.available<1Gi only", kc, err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "/nonexistent/config.yaml") {
		t.Errorf("no warning naming the path: %s", logs.String())
	}
}

// TestKubeletConfigEmpty: where the kubelet keeps its config elsewhere
// (EKS, GKE, AKS), the DaemonSet's FileOrCreate mount makes an empty file
// at the kubeadm path. It is not the kubelet's (whose file names its kind):
// a warning that says where to point the chart, and the flags apply, as
// for a missing file, not the kubelet's defaults read from nothing.
func TestKubeletConfigEmpty(t *testing.T) {
	for _, content := range []string{"", "\n  \n"} {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		kc, err := kubeletSettings(options{kubeletCfg: path, evictionHard: "memory.available<1Gi", enforceAlloc: []string{"none"}}, log)
		if err != nil || kc.Thresholds["memory.available"].Bytes != 1<<30 || len(kc.Thresholds) != 1 {
			t.Errorf("%q: settings %+v, err %v: want the flags' memory.available<1Gi only", content, kc, err)
		}
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "empty") || !strings.Contains(logs.String(), path) {
			t.Errorf("%q: no warning that the file at the path is empty: %s", content, logs.String())
		}
	}
}

// TestLogFormatJSON: --log.format json makes every log line one JSON
// object a shipper can read, with the level and the attributes as keys.
func TestLogFormatJSON(t *testing.T) {
	var stderr bytes.Buffer
	log := newLogger(options{logFormat: "json"}, &stderr)
	log.Info("oomtrace started", "node", "n1", "hooks", 3)
	var line map[string]any
	if err := json.Unmarshal(stderr.Bytes(), &line); err != nil {
		t.Fatalf("%q: %v", stderr.String(), err)
	}
	if line["msg"] != "oomtrace started" || line["level"] != "INFO" || line["node"] != "n1" || line["hooks"] != 3.0 {
		t.Errorf("log line %v", line)
	}
}

// TestLogFormatLogfmt: --log.format logfmt, as node_exporter's users type
// it, is the text format.
func TestLogFormatLogfmt(t *testing.T) {
	var o options
	defineFlags(flag.NewFlagSet("oomtrace", flag.ContinueOnError), &o)
	o.logFormat = "logfmt"
	if err := o.validate(); err != nil {
		t.Fatalf("--log.format logfmt: %v", err)
	}
	var stderr bytes.Buffer
	newLogger(o, &stderr).Info("oomtrace started", "node", "n1")
	if got := stderr.String(); !strings.Contains(got, `level=INFO msg="oomtrace started" node=n1`) {
		t.Errorf("log line %q: want logfmt", got)
	}
}

// TestHelpDocumentsEveryFlag: every flag oomtrace defines is in --help
// and has a row in the flags table of docs/operating.md, and every row there names a
// flag that exists, with the default the code has where the row gives one
// plainly.
func TestHelpDocumentsEveryFlag(t *testing.T) {
	var stderr bytes.Buffer
	run([]string{"--help"}, io.Discard, &stderr)
	readme, err := os.ReadFile(filepath.Join("..", "..", "docs", "operating.md"))
	if errors.Is(err, os.ErrNotExist) && os.Getenv("OOMTRACE_GUEST") == "1" {
		t.Skip("the docs are the source tree's, not in the qemu guest: the host runs this")
	}
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "\n## Flags\n")
	if !ok {
		t.Fatal("docs/operating.md has no Flags section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	rowRe := regexp.MustCompile("(?m)^\\| `--([a-z0-9.-]+)` \\|([^|]*)\\|")
	rows := map[string]string{} // flag: its default cell
	for _, m := range rowRe.FindAllStringSubmatch(table, -1) {
		rows[m[1]] = strings.TrimSpace(m[2])
	}
	var o options
	fs := flag.NewFlagSet("oomtrace", flag.ContinueOnError)
	defineFlags(fs, &o)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !regexp.MustCompile(`--` + regexp.QuoteMeta(f.Name) + `[ []`).MatchString(stderr.String()) {
			t.Errorf("--help does not mention --%s", f.Name)
		}
		cell, ok := rows[f.Name]
		if !ok {
			t.Errorf("docs/operating.md's flags table has no row for --%s", f.Name)
			return
		}
		// A plain default ("`1s`") must be the code's; cells that explain
		// (auto, the DaemonSet's, $NODE_NAME) are not compared.
		m := regexp.MustCompile("^`([^`]*)`$").FindStringSubmatch(cell)
		if m == nil {
			return
		}
		same := m[1] == f.DefValue || f.Value.Type() == "stringSlice" && "["+m[1]+"]" == f.DefValue
		if f.Value.Type() == "duration" {
			readmeD, err1 := time.ParseDuration(m[1])
			codeD, err2 := time.ParseDuration(f.DefValue)
			same = err1 == nil && err2 == nil && readmeD == codeD
		}
		if !same {
			t.Errorf("docs/operating.md: --%s defaults to %q, the code to %q", f.Name, m[1], f.DefValue)
		}
	})
	for name := range rows {
		if fs.Lookup(name) == nil {
			t.Errorf("docs/operating.md documents --%s, which oomtrace does not define", name)
		}
	}
	if n < 40 || len(rows) < n {
		t.Errorf("%d flags defined, %d rows in docs/operating.md", n, len(rows))
	}
}

func TestEnvironmentTwins(t *testing.T) {
	t.Setenv("OOMTRACE_OUTPUT", "xml")
	var stderr bytes.Buffer
	if code := run(nil, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), `--output must be json or text, not "xml"`) {
		t.Errorf("OOMTRACE_OUTPUT=xml: exit %d, %q", code, stderr.String())
	}
	// The command line wins over the environment.
	stderr.Reset()
	if code := run([]string{"--output", "text", "--hook.victim", "x"}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), `--hook.victim must be one of auto, tp_btf, tracepoint, not "x"`) {
		t.Errorf("flag over env: exit %d, %q", code, stderr.String())
	}
	t.Setenv("OOMTRACE_REFUSAL_WINDOW", "soon")
	stderr.Reset()
	if code := run(nil, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "OOMTRACE_REFUSAL_WINDOW") {
		t.Errorf("bad env value: exit %d, %q", code, stderr.String())
	}
	if envName("web.listen-address") != "OOMTRACE_WEB_LISTEN_ADDRESS" {
		t.Errorf("envName = %s", envName("web.listen-address"))
	}
}

func TestHeapLimit(t *testing.T) {
	if got := heapLimit(128 << 20); got != (128<<20)/10*9 {
		t.Errorf("heapLimit(128Mi) = %d", got)
	}
	if got := heapLimit(0); got != 0 {
		t.Errorf("no limit: %d", got)
	}
	t.Setenv("GOMEMLIMIT", "64MiB")
	if got := heapLimit(128 << 20); got != 0 {
		t.Errorf("GOMEMLIMIT set: %d, want 0 (the runtime's own)", got)
	}
}

// TestMaxProcs: GOMAXPROCS is 1 by default, the flag's value when set,
// Go's own choice for 0, and left alone when GOMAXPROCS is in the
// environment and the flag is not set.
func TestMaxProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	log := slog.New(slog.DiscardHandler)
	set := func(env string, args ...string) int {
		t.Helper()
		if env != "" {
			t.Setenv("GOMAXPROCS", env)
		} else {
			os.Unsetenv("GOMAXPROCS")
		}
		runtime.GOMAXPROCS(7)
		o, err := parseFlags(args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		setMaxProcs(o, log)
		return runtime.GOMAXPROCS(0)
	}
	t.Setenv("GOMAXPROCS", "") // restored at the end
	if got := set(""); got != 1 {
		t.Errorf("default: GOMAXPROCS %d, want 1", got)
	}
	if got := set("", "--runtime.gomaxprocs", "3"); got != 3 {
		t.Errorf("--runtime.gomaxprocs 3: %d", got)
	}
	if got := set("5"); got != 7 {
		t.Errorf("GOMAXPROCS=5 in the environment, no flag: %d, want it untouched (7)", got)
	}
	if got := set("5", "--runtime.gomaxprocs", "2"); got != 2 {
		t.Errorf("GOMAXPROCS=5 and the flag 2: %d, want 2", got)
	}
	runtime.GOMAXPROCS(7)
	os.Unsetenv("GOMAXPROCS")
	if got, want := set("", "--runtime.gomaxprocs", "0"), defaultMaxProcs(); got != want {
		t.Errorf("--runtime.gomaxprocs 0: %d, want Go's default %d", got, want)
	}
	var stderr bytes.Buffer
	if code := run([]string{"--runtime.gomaxprocs", "-1"}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "--runtime.gomaxprocs") {
		t.Errorf("--runtime.gomaxprocs -1: exit %d, %q", code, stderr.String())
	}
}

// defaultMaxProcs is what Go chooses by itself.
func defaultMaxProcs() int {
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	runtime.SetDefaultGOMAXPROCS()
	return runtime.GOMAXPROCS(0)
}
