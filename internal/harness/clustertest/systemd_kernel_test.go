// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// hostBinary is where deploy/systemd/oomtrace.service runs oomtrace
// from; the systemd node's root has it (kerneltest/cluster-root.sh).
const hostBinary = "/usr/local/bin/oomtrace"

// TestHostUnit runs oomtrace as the shipped systemd unit runs it on a
// host without Kubernetes (deploy/systemd/oomtrace.service): installed
// as its comment says, started by systemd, it writes an OOM kill in a
// cgroup of the test's to the journal, and stops when systemd stops it.
// The systemd node only.
func TestHostUnit(t *testing.T) {
	testenv.RequirePrivileged(t)
	if !testenv.SystemdNode() {
		t.Skip("needs systemd as PID 1: the systemd node (make test-cluster-systemd) runs it")
	}
	if _, err := os.Stat(hostBinary); err != nil {
		t.Fatalf("the unit's binary: %v", err)
	}
	unit, err := os.ReadFile("../../../deploy/systemd/oomtrace.service")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/systemd/system/oomtrace.service", unit, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove("/etc/systemd/system/oomtrace.service")
	systemctl(t, "daemon-reload")
	since := time.Now()
	systemctl(t, "start", "oomtrace.service")
	defer systemctl(t, "stop", "oomtrace.service")
	journal := func() string {
		out, _ := exec.Command("journalctl", "--no-pager", "-q", "-o", "cat", "-u", "oomtrace.service", "--since", since.Format("2006-01-02 15:04:05")).CombinedOutput()
		return string(out)
	}
	// Ready: its hooks attached (the line it logs then).
	deadline := time.Now().Add(Patience(time.Minute))
	for !strings.Contains(journal(), "oomtrace started") {
		if time.Now().After(deadline) {
			t.Fatalf("oomtrace's unit not tracing in a minute; its journal:\n%s", journal())
		}
		time.Sleep(time.Second)
	}

	cg := memcgtest.New(t, nil, 32<<20)
	hog := cg.Start(t, memcgtest.HogOptions{Bytes: 64 << 20})
	hog.Cmd.Wait()
	var kill event.OOMKill
	for deadline := time.Now().Add(Patience(30 * time.Second)); ; time.Sleep(time.Second) {
		for _, line := range strings.Split(journal(), "\n") {
			var k event.OOMKill
			if json.Unmarshal([]byte(line), &k) == nil && k.Type == event.TypeOOMKill && int(k.Victim.TGID) == hog.PID {
				kill = k
			}
		}
		if kill.Type != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no oom_kill of pid %d in the unit's journal:\n%s", hog.PID, journal())
		}
	}
	t.Logf("journal: %s", jsonOf(kill))
	if kill.Victim.Memcg == nil || kill.Victim.Memcg.Path != cg.Path || kill.OOM.Domain == nil || kill.OOM.Domain.LimitBytes != 32<<20 {
		t.Errorf("kill %s, want pid %d's at the 32 MiB limit of %s", jsonOf(kill), hog.PID, cg.Path)
	}
	systemctl(t, "stop", "oomtrace.service")
	if out, _ := exec.Command("systemctl", "is-active", "oomtrace.service").Output(); strings.TrimSpace(string(out)) != "inactive" {
		t.Errorf("after systemctl stop: %s; journal:\n%s", out, journal())
	}
}
