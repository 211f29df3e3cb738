// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter/kubeevents"
	"github.com/oomtrace/oomtrace/internal/harness/critest"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/kernfile"
)

// testUserspaceKills: the OOM killers that live in user space, as they
// kill on a node. A process named earlyoom, in a cgroup of its own on the
// node, SIGKILLs a container's process with kill(2); on cgroup v2 a
// process named talos-oom writes 1 to another container's cgroup.kill,
// as Talos's OOM controller does. Each container ends 137 Error, and
// oomtrace writes one userspace_kill line naming the killer, the method,
// the pod and container and the cgroup's memory, counts it by killer and
// writes a UserspaceOOMKill Event on the pod. What the kubelet does is
// not a user-space kill: a liveness probe's restart of a container that
// ignores SIGTERM (SIGKILL after the grace period) and a forced delete of
// it (kubectl delete --force --grace-period=0) write no userspace_kill
// line, and the scenarios after this one (deletions, evictions) are
// checked for none by checkNoUserspaceKills.
func testUserspaceKills(t *testing.T, c *Cluster, o *Oomtrace) {
	begin := time.Now()
	v2 := !c.Runtime.Memcg.V1
	victims := []string{"batch"}
	if v2 {
		victims = append(victims, "batch-talos")
	}
	for i, name := range victims {
		c.createPod(t, ofDeployment(podSpec("shop", name, corev1.RestartPolicyNever, 2,
			container{name: "app", args: []string{"idle", "16"}, limit: 64 * mi}), fmt.Sprintf("6d8f7c9b%d", i)))
		defer c.deletePod(t, "shop", name)
	}
	// Restarted by its liveness probe: ignores SIGTERM, so the runtime
	// SIGKILLs it after the grace period.
	probed := podSpec("shop", "probed", corev1.RestartPolicyAlways, 2, container{name: "app", args: []string{"stubborn", "8"}, limit: 64 * mi})
	probed.Spec.Containers[0].LivenessProbe = &corev1.Probe{
		ProbeHandler:        corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/ctrbin", "fail"}}},
		InitialDelaySeconds: 2, PeriodSeconds: 2, FailureThreshold: 1, TimeoutSeconds: int32(2 * Slowdown()),
	}
	c.createPod(t, ofDeployment(probed, "7c9b6d8f5"))
	defer c.deletePod(t, "shop", "probed")

	killers := memcgtest.New(t, nil, 0)
	ctrbin := critest.BuildCtrbin(t, t.TempDir())
	kill := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(ctrbin, args...)
		cmd.Env = []string{"CTRBIN_COMM=" + name, "CTRBIN_CGROUP_PROCS=" + filepath.Join(killers.Dir, "cgroup.procs")}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %q: %v: %s", name, args, err, out)
		}
	}
	// A container's cgroup once it holds its 16 MiB.
	containerDir := func(pod string) string {
		p := c.waitPod(t, "shop", pod, "running", 60*time.Second, running)
		dir := containerCgroup(t, c, containerID(p.Status.ContainerStatuses[0].ContainerID))
		for deadline := time.Now().Add(Patience(30 * time.Second)); readUint(t, dir, c.Runtime.Memcg.V1) < uint64(16*mi); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s's container holds %d bytes, not 16 MiB", pod, readUint(t, dir, c.Runtime.Memcg.V1))
			}
		}
		return dir
	}
	// Each cgroup as the killer saw it: what the line must report.
	usage := map[string]uint64{}
	batch := containerDir("batch")
	usage["batch"] = readUint(t, batch, c.Runtime.Memcg.V1)
	pids := procsOf(t, batch)
	if len(pids) == 0 {
		t.Fatalf("no process in %s", batch)
	}
	kill("earlyoom", "kill", strconv.Itoa(pids[0]))
	if v2 {
		talos := containerDir("batch-talos")
		usage["batch-talos"] = readUint(t, talos, false)
		kill("talos-oom", "cgroupkill", filepath.Join(talos, "cgroup.kill"))
	}

	// The kubelet's own: the probe's restart, then a forced delete.
	c.waitPod(t, "shop", "probed", "restarted by its liveness probe", 2*time.Minute, func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	c.deletePod(t, "shop", "probed")

	ev := o.WaitEvents(t, "the user-space kills", time.Minute, func(ev Events) bool {
		return len(userKillsIn(ev.Since(begin), victims...)) == len(victims)
	}).Since(begin)
	wantKiller := map[string]string{"batch": "earlyoom", "batch-talos": "talos-oom"}
	wantMethod := map[string]string{"batch": event.MethodKill, "batch-talos": event.MethodCgroupKill}
	for _, k := range userKillsIn(ev, victims...) {
		v := k.Victims[0]
		pod := v.Pod.Name
		t.Logf("oomtrace: %s", jsonOf(k))
		if k.Killer.Comm != wantKiller[pod] || k.Method != wantMethod[pod] || v.Container == nil || v.Container.Name != "app" ||
			v.Pod.Namespace != "shop" || k.VictimCount != 1 || (pod == "batch" && k.KnownKiller != "earlyoom") {
			t.Errorf("%s's kill: killer %s (%s) method %s victims %d container %s; want %s, %s, app",
				pod, k.Killer.Comm, k.KnownKiller, k.Method, k.VictimCount, jsonOf(v.Container), wantKiller[pod], wantMethod[pod])
		}
		// The cgroup's memory as the kill was seen: what the test read
		// just before.
		m := k.Memory
		if m == nil || m.LimitBytes == nil || *m.LimitBytes != uint64(64*mi) || !within(int64(m.UsageBytes), int64(usage[pod]), 0.1) || (v2 && m.Pressure == nil) {
			t.Errorf("%s's kill's memory %s; the test read usage %d, limit 64 MiB", pod, jsonOf(m), usage[pod])
		}
		if ks := killsInPod(ev, pod); len(ks) > 0 {
			t.Errorf("%s: a user-space kill reported as a kernel OOM kill: %s", pod, jsonOf(ks))
		}
		// What the kubelet says: 137 Error, not OOMKilled.
		p := c.waitPod(t, "shop", pod, "terminated", time.Minute, func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Terminated != nil
		})
		if term := p.Status.ContainerStatuses[0].State.Terminated; term.ExitCode != 137 || term.Reason != "Error" {
			t.Errorf("%s: terminated %d %s, want 137 Error", pod, term.ExitCode, term.Reason)
		}
		e := c.waitKubeEvent(t, o, "shop", pod, kubeevents.ReasonUserspace)
		t.Logf("Event: %s %s: %s", e.Type, e.Reason, e.Note)
		if e.Type != corev1.EventTypeWarning || e.Regarding.UID != p.UID || !strings.Contains(e.Note, wantKiller[pod]) {
			t.Errorf("Event %s", jsonOf(e))
		}
	}
	fams := o.Metrics(t)
	for _, pod := range victims {
		if n, _ := Value(fams, "oomtrace_userspace_kills_total", map[string]string{"namespace": "shop", "pod": pod, "container": "app", "killer": map[string]string{"batch": "earlyoom", "batch-talos": "talos-oom"}[pod]}); n != 1 {
			t.Errorf("userspace_kills_total{%s} = %v, want 1", pod, n)
		}
	}
	checkNoUserspaceKills(t, ev, victims...)
}

// checkNoUserspaceKills fails on any userspace_kill line but of the pods
// named: the kubelet's and the runtime's kills (deletions, rollouts,
// evictions, probes' restarts) are none.
func checkNoUserspaceKills(t *testing.T, ev Events, except ...string) {
	t.Helper()
	for _, k := range ev.UserKills {
		if len(userKillsIn(Events{UserKills: []event.UserspaceKill{k}}, except...)) == 0 {
			t.Errorf("a userspace_kill no user-space killer made: %s", jsonOf(k))
		}
	}
}

// userKillsIn are the user-space kills of processes in the pods named.
func userKillsIn(ev Events, pods ...string) []event.UserspaceKill {
	var out []event.UserspaceKill
	for _, k := range ev.UserKills {
		if len(k.Victims) > 0 && k.Victims[0].Pod != nil {
			for _, p := range pods {
				if k.Victims[0].Pod.Name == p {
					out = append(out, k)
				}
			}
		}
	}
	return out
}

// readUint reads a container cgroup's memory usage.
func readUint(t *testing.T, dir string, v1 bool) uint64 {
	t.Helper()
	name := "memory.current"
	if v1 {
		name = "memory.usage_in_bytes"
	}
	n, err := kernfile.ReadUint(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// testEarlyoom: Debian's earlyoom, as its unit runs it (earlyoom.service,
// a dynamic user with CAP_KILL), with a threshold between what the node
// has free and what it has once a BestEffort pod holds 500 MiB: it
// terminates the pod's process (the highest oom_score on the node) and
// no other, since the node has enough again. oomtrace names earlyoom,
// its unit, the pod and the container. The systemd node only.
func testEarlyoom(t *testing.T, c *Cluster, o *Oomtrace) {
	begin := time.Now()
	before := meminfo(t)
	c.createPod(t, podSpec("shop", "greedy", corev1.RestartPolicyNever, 2, container{name: "app", args: []string{"idle", "500"}}))
	defer c.deletePod(t, "shop", "greedy")
	p := c.waitPod(t, "shop", "greedy", "running", time.Minute, running)
	dir := containerCgroup(t, c, containerID(p.Status.ContainerStatuses[0].ContainerID))
	for deadline := time.Now().Add(Patience(time.Minute)); readUint(t, dir, false) < uint64(500*mi); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("greedy holds %d bytes, not 500 MiB", readUint(t, dir, false))
		}
	}
	percent := (before["MemAvailable"] - uint64(250*mi)) * 100 / before["MemTotal"]
	t.Logf("MemAvailable %d MiB of %d before the pod, %d MiB with it: earlyoom -m %d",
		before["MemAvailable"]/uint64(mi), before["MemTotal"]/uint64(mi), meminfo(t)["MemAvailable"]/uint64(mi), percent)
	args := fmt.Sprintf("EARLYOOM_ARGS=\"-m %d -s 100 -r 1 --prefer '^ctrbin$' --avoid '^(kube-apiserver|etcd|kubelet|containerd|oomtrace|systemd|dbus-daemon|clustertest.test)'\"\n", percent)
	if err := os.WriteFile("/etc/default/earlyoom", []byte(args), 0o644); err != nil {
		t.Fatal(err)
	}
	systemctl(t, "unmask", "earlyoom.service")
	systemctl(t, "start", "earlyoom.service")
	defer systemctl(t, "stop", "earlyoom.service")

	ev := o.WaitEvents(t, "earlyoom's kill", 2*time.Minute, func(ev Events) bool {
		return len(userKillsIn(ev.Since(begin), "greedy")) > 0
	}).Since(begin)
	systemctl(t, "stop", "earlyoom.service")
	k := userKillsIn(ev, "greedy")[0]
	t.Logf("oomtrace: %s", jsonOf(k))
	v := k.Victims[0]
	if k.KnownKiller != "earlyoom" || k.Killer.Comm != "earlyoom" || k.Killer.Unit != "earlyoom.service" || k.Method != event.MethodKill ||
		v.Container == nil || v.Container.Name != "app" || k.Memory == nil || k.Memory.UsageBytes < uint64(500*mi) {
		t.Errorf("earlyoom's kill: killer %s (%s, unit %s) method %s container %s memory %s",
			k.Killer.Comm, k.KnownKiller, k.Killer.Unit, k.Method, jsonOf(v.Container), jsonOf(k.Memory))
	}
	c.waitKubeEvent(t, o, "shop", "greedy", kubeevents.ReasonUserspace)
	fams := o.Metrics(t)
	if n, _ := Value(fams, "oomtrace_userspace_kills_total", map[string]string{"pod": "greedy", "killer": "earlyoom"}); n != 1 {
		t.Errorf("userspace_kills_total{greedy, earlyoom} = %v, want 1", n)
	}
	checkNoUserspaceKills(t, ev, "greedy")
}

// testSystemdOomd: systemd-oomd, Debian's, watching the BestEffort pods'
// slice (ManagedOOMMemoryPressure=kill, a limit of 20% for 5 s) while a
// pod's container writes over a working set three times its memory.high
// with swap: it thrashes, its tasks stall on memory, the slice's
// pressure passes the limit, and systemd-oomd kills the container's
// cgroup (memory.oom.group, which the kubelet sets). oomtrace names systemd-oomd, its unit, the pod, the
// container and the pressure. The systemd node only.
func testSystemdOomd(t *testing.T, c *Cluster, o *Oomtrace) {
	begin := time.Now()
	dropin := "/etc/systemd/oomd.conf.d/oomtrace-test.conf"
	if err := os.MkdirAll(filepath.Dir(dropin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dropin, []byte("[OOM]\nDefaultMemoryPressureDurationSec=5s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dropin)
	systemctl(t, "restart", "systemd-oomd.service")
	// Swap (zram) for the scenario: systemd-oomd kills only where
	// reclaim runs, and without swap a container's anonymous memory is
	// never reclaimed (the node's files are on tmpfs).
	run(t, "modprobe", "zram")
	zram := run(t, "zramctl", "--find", "--size", "1G")
	defer run(t, "zramctl", "--reset", zram)
	run(t, "mkswap", zram)
	run(t, "swapon", zram)
	defer run(t, "swapoff", zram)
	c.createPod(t, podSpec("shop", "stalled", corev1.RestartPolicyNever, 2, container{name: "app", args: []string{"churn", "160"}}))
	defer c.deletePod(t, "shop", "stalled")
	p := c.waitPod(t, "shop", "stalled", "running", time.Minute, running)
	dir := containerCgroup(t, c, containerID(p.Status.ContainerStatuses[0].ContainerID))
	// Its working set of 160 MiB in 48: the kubelet gave it no swap
	// (NoSwap); the test does, and a memory.high it thrashes under.
	for name, value := range map[string]string{"memory.swap.max": "max", "memory.high": fmt.Sprint(48 * mi)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0); err != nil {
			t.Fatal(err)
		}
	}
	systemctl(t, "set-property", "--runtime", "kubepods-besteffort.slice", "ManagedOOMMemoryPressure=kill", "ManagedOOMMemoryPressureLimit=20%")
	defer systemctl(t, "set-property", "--runtime", "kubepods-besteffort.slice", "ManagedOOMMemoryPressure=auto")

	ev := o.WaitEvents(t, "systemd-oomd's kill", 3*time.Minute, func(ev Events) bool {
		return len(userKillsIn(ev.Since(begin), "stalled")) > 0
	}).Since(begin)
	k := userKillsIn(ev, "stalled")[0]
	t.Logf("oomtrace: %s", jsonOf(k))
	v := k.Victims[0]
	if k.KnownKiller != "systemd-oomd" || k.Killer.Unit != "systemd-oomd.service" || k.Method != event.MethodKill || k.Signal != "SIGKILL" ||
		v.Container == nil || v.Container.Name != "app" || k.Memory == nil || k.Memory.Pressure == nil || k.Memory.Pressure.SomeAvg10 < 20 {
		t.Errorf("systemd-oomd's kill: killer %s (%s, unit %s) method %s signal %s container %s memory %s",
			k.Killer.Comm, k.KnownKiller, k.Killer.Unit, k.Method, k.Signal, jsonOf(v.Container), jsonOf(k.Memory))
	}
	e := c.waitKubeEvent(t, o, "shop", "stalled", kubeevents.ReasonUserspace)
	t.Logf("Event: %s", e.Note)
	// systemd-oomd's own word: the xattr it leaves on the cgroup it killed.
	if out, err := exec.Command("journalctl", "--no-pager", "-q", "-u", "systemd-oomd", "--since", begin.Format("2006-01-02 15:04:05")).CombinedOutput(); err == nil {
		t.Logf("systemd-oomd's journal:\n%s", out)
	}
	checkNoUserspaceKills(t, ev, "stalled")
}

// run runs a command of the node and returns its output, trimmed.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func systemctl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("systemctl", args...).CombinedOutput(); err != nil {
		t.Fatalf("systemctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// meminfo is /proc/meminfo in bytes.
func meminfo(t *testing.T) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	m, err := kernfile.ParseMeminfo(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
