// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// withoutTracefs runs this binary as oomtrace in a mount namespace of its
// own where /sys/kernel has only btf: no tracefs, no debugfs, and nowhere
// to mount one (as in a container that mounts the host's BTF only).
func withoutTracefs(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	testenv.RequirePrivileged(t)
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

// TestTracefsAbsent: commit refusals need tracefs, OOM kills only tp_btf.
// Asked for with --refusals=true, refusals without tracefs are an error:
// one line, with the fix, exit 1. By default oomtrace runs without them and
// says so in one warning and in oomtrace_hook_info; with --refusals=false
// it runs and says nothing.
func TestTracefsAbsent(t *testing.T) {
	testenv.RequirePrivileged(t)
	cmd := withoutTracefs(t, "--web.listen-address=", "--cri.endpoint=none", "--kubeconfig=none", "--refusals=true")
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

	for _, tt := range []struct {
		args []string
		warn bool
	}{{nil, true}, {[]string{"--refusals=false"}, false}} {
		cmd = withoutTracefs(t, append([]string{"--web.listen-address=127.0.0.1:0", "--cri.endpoint=none", "--kubeconfig=none"}, tt.args...)...)
		var out syncBuffer
		cmd.Stderr = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(startTimeout)
		for !strings.Contains(out.String(), "oomtrace started") {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("%v: did not start without tracefs:\n%s", tt.args, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(out.String(), "victim_hook=tp_btf/mark_victim") {
			t.Errorf("%v: want the tp_btf victim hook:\n%s", tt.args, out.String())
		}
		warnings := strings.Count(out.String(), "level=WARN msg=\"commit refusals are not watched")
		_, addr, _ := strings.Cut(out.String(), `msg="serving metrics" address=`)
		info := scrapeCounter(t, "http://"+strings.Fields(addr)[0]+"/metrics", `oomtrace_hook_info{event="commit_refusal",hook="none"}`)
		if tt.warn != (warnings == 1) || tt.warn != (info == 1) {
			t.Errorf("%v: %d warnings, hook_info commit_refusal none = %v; want them: %v\n%s", tt.args, warnings, info, tt.warn, out.String())
		}
		cmd.Process.Signal(syscall.SIGTERM)
		if code := exitCode(t, cmd.Wait()); code != 0 {
			t.Errorf("%v: exit %d after SIGTERM:\n%s", tt.args, code, out.String())
		}
	}
}
