package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/memcgtest"
)

// withoutTracefs runs this binary as oomtrace in a mount namespace of its
// own where /sys/kernel has only btf: no tracefs, no debugfs, and nowhere
// to mount one (as in a container that mounts the host's BTF only).
func withoutTracefs(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	memcgtest.RequireRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) not installed")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	keep := t.TempDir()
	script := `set -e
mount --make-rprivate /
mount --bind /sys/kernel/btf "$KEEP"
mount -t tmpfs -o size=1m none /sys/kernel
mkdir /sys/kernel/btf
mount --bind "$KEEP" /sys/kernel/btf
exec "$EXE" "$@"`
	cmd := exec.Command("unshare", append([]string{"--mount", "sh", "-c", script, "sh"}, args...)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "KEEP="+keep, "EXE="+exe)
	return cmd
}

// TestTracefsAbsent: commit refusals need tracefs; without it the daemon
// says so in one line, with the fix, and exits 1. OOM kills need only
// tp_btf: with --refusals=false it runs.
func TestTracefsAbsent(t *testing.T) {
	cmd := withoutTracefs(t, "--web.listen-address=", "--cri.endpoint=none", "--kubeconfig=none")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if code := exitCode(t, err); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, stderr.String())
	}
	var ours []string
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if strings.HasPrefix(line, "oomtrace: ") {
			ours = append(ours, line)
		}
	}
	if len(ours) != 1 || !strings.Contains(ours[0], "tracefs") || !strings.Contains(ours[0], "--refusals=false") {
		t.Errorf("want one oomtrace: line naming tracefs and the way out, got %q", ours)
	}

	t.Log(ours[0])
	cmd = withoutTracefs(t, "--web.listen-address=", "--cri.endpoint=none", "--kubeconfig=none", "--refusals=false")
	var out syncBuffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "oomtrace started") {
		if time.Now().After(deadline) {
			t.Fatalf("did not start without tracefs and refusals:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "victim_hook=tp_btf/mark_victim") {
		t.Errorf("want the tp_btf victim hook:\n%s", out.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, cmd.Wait()); code != 0 {
		t.Errorf("exit %d after SIGTERM:\n%s", code, out.String())
	}
}
