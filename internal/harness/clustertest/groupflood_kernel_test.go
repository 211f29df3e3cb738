// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"context"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomtrace/oomtrace/exporter"
	"github.com/oomtrace/oomtrace/exporter/kubeevents"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// swarmProcs is how many processes the tenant's container runs when one
// decision of the kernel kills it whole.
const swarmProcs = 1300

// testGroupKillFlood: on a cgroup v2 node the kubelet sets
// memory.oom.group on every container, so one decision kills a container
// whole. A tenant's container of 1,300 processes is killed so, and a pod
// of another namespace is OOM-killed 200 ms into that decision; all the
// while every slot of the metrics port is held by kept-alive connections
// that speak every 50 s. The other pod's kill is named, counted and has
// its Event; the group is one decision with its count (a few events, the
// chosen one's folded count, the metrics and the pod's one Event adding
// up to every process); no kill record is lost; every scrape is
// answered and the agent is never restarted.
func testGroupKillFlood(t *testing.T, c *Cluster, o *Oomtrace) {
	ctx := context.Background()
	restarts := o.Restarts(t)
	lostBefore, _ := Value(o.Metrics(t), "oomtrace_events_lost_total", map[string]string{"kind": "oom_kill"})
	heldSince := time.Now()
	testenv.HoldConnections(t, &net.Dialer{Timeout: 5 * time.Second}, NodeIP+":9808", exporter.MaxConnections, 50*time.Second)
	defer func() {
		if wait := livenessRestartsAfter + 10*time.Second - time.Since(heldSince); wait > 0 {
			time.Sleep(wait)
		}
		client := &http.Client{Timeout: Patience(2 * time.Second)}
		for i := range 3 {
			resp, err := client.Get("http://" + NodeIP + ":9808/metrics")
			if err != nil {
				t.Errorf("scrape %d while every connection slot is held: %v", i+1, err)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if n := o.Restarts(t); n != restarts {
			t.Errorf("oomtrace's container restarted %d times", n-restarts)
		}
		t.Logf("%d kept-alive connections held the metrics port for %v", exporter.MaxConnections, time.Since(heldSince).Round(time.Second))
	}()

	c.Namespace(t, tenantNamespace)
	// Both pods are burstable (a limit, no request).
	qosEvents := filepath.Join(c.Runtime.Memcg.Root, c.QoSCgroup("burstable"), "memory.events")
	qosKillsBefore := readMemoryEvents(t, qosEvents)["oom_kill"]
	c.createPod(t, podSpec("shop", "bystander", corev1.RestartPolicyNever, 2, container{name: "app", args: []string{"armed", "200"}, limit: 64 * mi}))
	defer c.deletePod(t, "shop", "bystander")
	// Kernel stacks and page tables of 1,300 processes fit in 256 MiB;
	// the parent's 400 MiB then do not.
	c.createPod(t, podSpec(tenantNamespace, "swarm", corev1.RestartPolicyNever, 2, container{name: "swarm", args: []string{"swarm", strconv.Itoa(swarmProcs), "400"}, limit: 256 * mi}))
	defer c.deletePod(t, tenantNamespace, "swarm")
	by := c.waitPod(t, "shop", "bystander", "running", 2*time.Minute, running)
	bystanderCg := containerCgroup(t, c, containerID(by.Status.ContainerStatuses[0].ContainerID))
	sw := c.waitPod(t, tenantNamespace, "swarm", "running", 2*time.Minute, running)
	swarmCg := containerCgroup(t, c, containerID(sw.Status.ContainerStatuses[0].ContainerID))

	// 200 ms into the group's decision, the other pod goes over its limit.
	deadline := time.Now().Add(Patience(3 * time.Minute))
	for readMemoryEvents(t, filepath.Join(swarmCg, "memory.events"))["oom_group_kill"] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no group kill of the swarm in %v (%d processes in it)", Patience(3*time.Minute), len(procsOf(t, swarmCg)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	for _, pid := range procsOf(t, bystanderCg) {
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			t.Fatalf("fire the bystander (pid %d): %v", pid, err)
		}
	}

	ev := o.WaitEvents(t, "the bystander's kill and the swarm's decision", 2*time.Minute, func(ev Events) bool {
		if len(killsInPod(ev, "bystander")) == 0 {
			return false
		}
		for _, k := range killsInPod(ev, "swarm") {
			if k.OOM.Group != nil && k.OOM.Group.Chosen {
				return true
			}
		}
		return false
	})
	k := killsInPod(ev, "bystander")[0]
	if k.Victim.Pod.Namespace != "shop" || k.Victim.Container == nil || k.Victim.Container.Name != "app" {
		t.Errorf("the bystander's kill: %s", jsonOf(k.Victim))
	}
	lines := killsInPod(ev, "swarm")
	var folded uint64
	decisions := map[uint64]bool{}
	for _, s := range lines {
		if s.OOM.Group == nil {
			t.Errorf("a kill of the swarm not of a group: %s", jsonOf(s))
			continue
		}
		decisions[s.OOM.Group.DecisionSeq] = true
		folded += s.OOM.Group.Folded
	}
	killed := uint64(len(lines)) + folded
	t.Logf("the swarm's decision: %d lines, %d folded; %d killed", len(lines), folded, killed)
	if len(decisions) != 1 || len(lines) > 8 || killed < swarmProcs+1 {
		t.Errorf("the swarm: %d decisions, %d lines, %d killed; want one decision of at most 8 lines killing at least %d", len(decisions), len(lines), killed, swarmProcs+1)
	}
	// The container's and the pod's cgroups are gone with them; their QoS
	// class's counts their events (hierarchically), the bystander's too.
	var bystanderKilled uint64
	for _, b := range killsInPod(ev, "bystander") {
		bystanderKilled++
		if b.OOM.Group != nil {
			bystanderKilled += b.OOM.Group.Folded
		}
	}
	if kernel := readMemoryEvents(t, qosEvents)["oom_kill"] - qosKillsBefore; killed+bystanderKilled > kernel {
		t.Errorf("%d kills reported (%d of the swarm), the kernel counted %d", killed+bystanderKilled, killed, kernel)
	}

	fams := o.Metrics(t)
	if n := sum(fams, "oomtrace_oom_kills_total", map[string]string{"namespace": "shop", "pod": "bystander", "container": "app"}); n != 1 {
		t.Errorf("oom_kills_total{pod=bystander} = %d, want 1", n)
	}
	if n := sum(fams, "oomtrace_oom_kills_total", map[string]string{"namespace": tenantNamespace, "pod": "swarm", "container": "swarm"}); uint64(n) != killed {
		t.Errorf("oom_kills_total{pod=swarm} = %d, want the %d reported", n, killed)
	}
	if lost, _ := Value(fams, "oomtrace_events_lost_total", map[string]string{"kind": "oom_kill"}); lost != lostBefore {
		t.Errorf("%v kill records lost", lost-lostBefore)
	}

	c.waitKubeEvent(t, o, "shop", "bystander", kubeevents.ReasonContainer)
	e := c.waitKubeEvent(t, o, tenantNamespace, "swarm", kubeevents.ReasonContainer)
	m := regexp.MustCompile(`killed (\d+) processes`).FindStringSubmatch(e.Note)
	if m == nil || m[1] != strconv.FormatUint(killed, 10) {
		t.Errorf("the swarm's Event %q: want it to say the %d killed", e.Note, killed)
	}
	list, err := c.Client.EventsV1().Events(tenantNamespace).List(ctx, metav1.ListOptions{FieldSelector: "regarding.name=swarm"})
	if err != nil {
		t.Fatal(err)
	}
	ours := 0
	for _, e := range list.Items {
		if e.ReportingController == kubeevents.Controller {
			ours++
		}
	}
	if ours != 1 {
		t.Errorf("%d Events of oomtrace's on the swarm, want one for its one decision", ours)
	}
}

// containerCgroup is the directory of the container's cgroup in the
// memory hierarchy: the one named after its id (cgroupfs or systemd).
func containerCgroup(t *testing.T, c *Cluster, id string) string {
	t.Helper()
	var found string
	root := filepath.Join(c.Runtime.Memcg.Root, c.Kubepods())
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || found != "" {
			return nil
		}
		if strings.Contains(d.Name(), id) {
			found = p
			return fs.SkipAll
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no cgroup of container %s below %s", id, root)
	}
	return found
}

// procsOf are the processes in a cgroup.
func procsOf(t *testing.T, cg string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
