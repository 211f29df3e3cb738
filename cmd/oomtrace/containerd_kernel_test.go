// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/critest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// TestContainerdEndToEnd runs the binary against a real containerd: kills in
// two pods, one namespace kept by --filter.namespace. The kept kill is
// written with its pod and container; both are counted with their labels.
func TestContainerdEndToEnd(t *testing.T) {
	testenv.RequirePrivileged(t)
	rt := critest.Start(t)
	d := startDaemon(t, "--cri.endpoint", rt.Socket, "--filter.namespace", "shop", "--refusals=false", "--kubeconfig", "none")
	if !strings.Contains(d.logs.String(), "naming containers through CRI") {
		t.Errorf("CRI not in use:\n%s", d.logs.String())
	}

	shop := rt.RunPod(t, critest.PodOptions{Name: "cart-7d9f", Namespace: "shop"})
	kept := shop.StartContainer(t, critest.ContainerOptions{Name: "redis", Args: []string{"hog", "400"}, MemoryLimit: 48 << 20, OOMScoreAdj: 900})
	web := rt.RunPod(t, critest.PodOptions{Name: "api-5c8b", Namespace: "web"})
	dropped := web.StartContainer(t, critest.ContainerOptions{Name: "app", Args: []string{"hog", "400"}, MemoryLimit: 48 << 20, OOMScoreAdj: 900})
	rt.WaitExited(t, kept, 30*time.Second)
	rt.WaitExited(t, dropped, 30*time.Second)

	series := func(ns, pod, ctr string) string {
		return `oomtrace_container_deaths_total{cause="kernel_oom_container",container="` + ctr + `",limit="container",namespace="` + ns + `",owner="",pod="` + pod + `"}`
	}
	// The metrics see both kills, filter or not.
	deadline := time.Now().Add(startTimeout)
	for scrapeCounter(t, d.base+"/metrics", series("shop", "cart-7d9f", "redis")) != 1 ||
		scrapeCounter(t, d.base+"/metrics", series("web", "api-5c8b", "app")) != 1 {
		if time.Now().After(deadline) {
			_, body := get(t, d.base+"/metrics")
			t.Fatalf("kills not counted with their pods:\n%s\nlogs:\n%s", body, d.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	var keptLine string
	timeout := time.After(10 * time.Second)
	for keptLine == "" {
		select {
		case line := <-d.lines:
			var ev event.OOMKill
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("not JSON: %q", line)
			}
			if ev.Victim.Container == nil {
				continue // a kill elsewhere on this machine
			}
			switch ev.Victim.Container.ID {
			case dropped:
				t.Errorf("filtered-out namespace written: %s", line)
			case kept:
				keptLine = line
				if ev.Victim.Container.Name != "redis" || ev.Victim.Container.Runtime != "containerd" ||
					ev.Victim.Pod == nil || ev.Victim.Pod.Name != "cart-7d9f" || ev.Victim.Pod.Namespace != "shop" ||
					ev.Victim.Pod.UID != shop.UID || ev.Victim.Pod.QoS != "burstable" || ev.OOM.Domain.Kind != "container" ||
					ev.Cause != "kernel_oom_container" || ev.NodeMemory == nil || ev.NodeMemory.MemoryAvailable == nil {
					t.Errorf("attribution: %s", line)
				}
				// These containers share their pod's pid namespace (CRI's
				// default for a container): the pause process is 1, and the
				// hog, the container's first process, is its init by its
				// parent, the shim, outside the container.
				if ev.Victim.Init == nil || !*ev.Victim.Init || ev.Victim.NSPID == nil || *ev.Victim.NSPID == 1 || ev.Victim.ParentMemcgID == 0 {
					t.Errorf("init: %s", line)
				}
			}
		case <-timeout:
			t.Fatalf("no line for the kept kill; logs:\n%s", d.logs.String())
		}
	}
	t.Log(keptLine)
	d.stop(t)
	if n := logValue(t, d.logs.String(), "filtered"); n < 1 {
		t.Errorf("filtered=%d in the shutdown log, want at least 1", n)
	}
}
