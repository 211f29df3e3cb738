// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// TestNodeSignalsStandalone runs the binary without any API server, with a
// cgroup of the test's own standing in for kubepods: both kubelet signals
// are exported, a real allocation there crosses the allocatable threshold
// and its release crosses back, and a real kill carries both signals.
func TestNodeSignalsStandalone(t *testing.T) {
	testenv.RequirePrivileged(t)
	const limit = 512 << 20
	kubepods := memcgtest.New(t, nil, limit)
	d := startDaemon(t, "--cri.endpoint", "none", "--kubeconfig", "none", "--refusals=false",
		"--kubepods-cgroup", kubepods.Path, "--node.sample-interval", "50ms",
		"--eviction-hard", "memory.available<1Ki,allocatableMemory.available<300Mi")
	if !strings.Contains(d.logs.String(), "standalone") {
		t.Errorf("no standalone line:\n%s", d.logs.String())
	}
	for _, sig := range []string{"memory.available", "allocatableMemory.available"} {
		series := `oomtrace_node_memory_available_bytes{signal="` + sig + `"}`
		if v := scrapeCounter(t, d.base+"/metrics", series); v == 0 {
			t.Errorf("%s not exported", series)
		}
	}

	// 280 MiB of the 512 MiB limit: allocatable available about 232 MiB < 300 MiB.
	holder := memcgtest.New(t, kubepods, 0)
	hog := holder.Start(t, memcgtest.HogOptions{Bytes: 280 << 20, Idle: true})
	below := waitPressure(t, d, true)
	if below.CapacityBytes != limit || below.CapacitySource != "kubepods_limit" || below.AvailableBytes >= 300<<20 ||
		below.ThresholdBytes == nil || *below.ThresholdBytes != 300<<20 || below.WorkingSetBytes <= limit-300<<20 {
		t.Errorf("below: %+v", below)
	}
	hog.Cmd.Process.Kill()
	hog.Cmd.Wait()
	above := waitPressure(t, d, false)
	if above.SinceSeconds == nil || *above.SinceSeconds <= 0 || above.AvailableBytes < 300<<20 {
		t.Errorf("above: %+v", above)
	}

	// A kill in there carries the node's signals.
	small := memcgtest.New(t, kubepods, 32<<20)
	victim := small.Start(t, memcgtest.HogOptions{Bytes: 128 << 20})
	victim.WaitKilled(t)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line := <-d.lines:
			var ev event.OOMKill
			if json.Unmarshal([]byte(line), &ev) != nil || ev.Type != "oom_kill" || int(ev.Victim.PID) != victim.PID {
				continue
			}
			nm := ev.NodeMemory
			if nm == nil || nm.MemoryAvailable == nil || nm.AllocatableMemoryAvailable == nil || nm.AllocatableMemoryAvailable.CapacityBytes != limit {
				t.Errorf("node_memory: %s", line)
			}
			if ev.Cause != "kernel_oom_other" {
				t.Errorf("cause %q for a kill in a non-Kubernetes cgroup", ev.Cause)
			}
			d.stop(t)
			return
		case <-timeout:
			t.Fatalf("no oom_kill line; logs:\n%s", d.logs.String())
		}
	}
}

func waitPressure(t *testing.T, d *daemon, below bool) event.MemoryPressure {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line := <-d.lines:
			var mp event.MemoryPressure
			if json.Unmarshal([]byte(line), &mp) != nil || mp.Type != "memory_pressure" || mp.SignalName != "allocatableMemory.available" {
				continue
			}
			if mp.BelowThreshold == below {
				t.Logf("%s", line)
				return mp
			}
		case <-timeout:
			t.Fatalf("no memory_pressure (below=%v) line; logs:\n%s", below, d.logs.String())
		}
	}
}
