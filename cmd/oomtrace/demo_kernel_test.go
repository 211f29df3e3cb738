// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// TestDemo runs oomtrace demo as a new user would: it exits 0 after
// printing the event of the kill it caused, in a cgroup of its own that it
// removes (cgroup v1 here, v2 in the qemu guests).
func TestDemo(t *testing.T) {
	testenv.RequirePrivileged(t)
	cmd := oomtrace(t, "demo")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("oomtrace demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var kill *event.OOMKill
	for _, line := range strings.Split(stdout.String(), "\n") {
		var ev event.OOMKill
		if strings.HasPrefix(line, `{"type":"oom_kill"`) && json.Unmarshal([]byte(line), &ev) == nil {
			kill = &ev
		}
	}
	if kill == nil || kill.Victim.Memcg == nil || !strings.Contains(kill.Victim.Memcg.Path, "/oomtrace-demo-") ||
		!strings.Contains(stdout.String(), " oom_kill victim=") {
		t.Fatalf("no kill in a demo cgroup, as JSON and text:\n%s", stdout.String())
	}
	h, err := memcgtest.Detect()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.Root, kill.Victim.Memcg.Path)); err == nil {
		t.Errorf("the demo left its cgroup %s behind", kill.Victim.Memcg.Path)
	}
}
