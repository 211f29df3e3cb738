// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
)

// killedBy is the pids of the OOM kills in a log, and how often each.
func killedBy(lines []string) map[int]int {
	n := map[int]int{}
	for _, l := range lines {
		if !strings.HasPrefix(l, `{"type":"oom_kill"`) {
			continue
		}
		var k event.OOMKill
		if json.Unmarshal([]byte(l), &k) == nil {
			n[int(k.Victim.PID)]++
		}
	}
	return n
}

// testRolloutRestart: a rolling update of the DaemonSet (rollout, as
// kubectl rollout restart or helm upgrade make one) while processes on
// the node are OOM-killed one after another. The old pod stops on
// SIGTERM, the hooks it pinned record through the gap, and the new pod
// takes them over: every kill is in one of the two pods' logs, and the
// kernel's count agrees (no kill unobserved).
func testRolloutRestart(t *testing.T, c *Cluster, o *Oomtrace, rollout func(*testing.T)) {
	oldPod := o.Pod.Name
	oldLog := o.Follow(t, oldPod)

	cg := memcgtest.New(t, nil, 32<<20)
	var mu sync.Mutex
	var killed []int
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			h := cg.Start(t, memcgtest.HogOptions{Bytes: 128 << 20})
			h.Cmd.Wait()
			mu.Lock()
			killed = append(killed, h.PID)
			mu.Unlock()
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(killed) }
	waitKills := func(n int) {
		for deadline := time.Now().Add(Patience(time.Minute)); count() < n; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the storm killed %d of %d in a minute", count(), n)
			}
		}
	}
	waitKills(5)
	before := count()
	rollout(t)
	during := count() - before
	newLog := o.Follow(t, o.Pod.Name)
	waitKills(count() + 10)
	close(stop)
	<-stopped

	if !oldLog.Ended(30 * time.Second) {
		t.Errorf("the old pod %s's log did not end", oldPod)
	}
	old := killedBy(oldLog.Lines())
	var missing []int
	for deadline := time.Now().Add(Patience(30 * time.Second)); ; time.Sleep(time.Second) {
		now := killedBy(newLog.Lines())
		missing = missing[:0]
		twice := 0
		for _, pid := range killed {
			switch n := old[pid] + now[pid]; {
			case n == 0:
				missing = append(missing, pid)
			case n > 1:
				twice++
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			t.Logf("%d killed, %d of them during the rollout; %d in the old pod's log, %d in the new one's, %d twice",
				len(killed), during, len(old), len(now), twice)
			break
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d kills in neither pod's log: %v\nnew pod's log:\n%s", len(missing), len(killed), missing, tail(strings.Join(newLog.Lines(), "\n"), 30))
	}
	if v, ok := Value(o.Metrics(t), "oomtrace_oom_kills_unobserved_total", nil); !ok || v != 0 {
		t.Errorf("oomtrace_oom_kills_unobserved_total %v %v, want 0", v, ok)
	}
	if logs := strings.Join(newLog.Lines(), "\n"); !strings.Contains(logs, "took over the hooks an earlier oomtrace pinned") {
		t.Errorf("the new pod did not take over the pinned hooks:\n%s", tail(logs, 30))
	}
}
