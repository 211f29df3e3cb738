// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter/kubeevents"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
	"github.com/oomtrace/oomtrace/internal/kernfile"
	"github.com/oomtrace/oomtrace/internal/kube/clusterview"
	"github.com/oomtrace/oomtrace/internal/kube/evictionmsg"
)

// TestCluster runs oomtrace's DaemonSet from deploy/ in a real single-node
// cluster and checks what it reports against what the kubelet and the API
// say, scenario by scenario. One cluster serves them all; the kubelet is
// restarted with another configuration between phases, as an operator
// would, and oomtrace's pod is restarted to read it.
func TestCluster(t *testing.T) {
	testenv.RequirePrivileged(t)
	image, archive := imageUnderTest(t)
	total := memTotal(t)
	// Phase 1: the kubelet enforces node allocatable with a kubepods
	// limit of 1 GiB (everything else reserved for the system), and a hard
	// threshold of 300Mi on memory.available and so on allocatable.
	const kubepodsLimit = 1 << 30
	c := Start(t, KubeletConfig{
		EvictionHard:         map[string]string{"memory.available": "300Mi"},
		SystemReservedMemory: total - kubepodsLimit,
	}, archive)
	c.Namespace(t, "shop")
	// Installed as the README says: kubectl apply -k on the v1 node, helm
	// install on the v2 node (the same objects: make test-helm compares
	// them); each is upgraded and uninstalled the same way below.
	var o *Oomtrace
	var m *Monitoring
	monitored := time.Now()
	if c.Runtime.Memcg.V1 {
		o = c.Deploy(t, "../../../deploy", image)
		// An operator's Prometheus, as the Prometheus Operator configures
		// it for the shipped PodMonitor and PrometheusRule.
		m = startMonitoring(t, c)
	} else {
		o = c.HelmInstall(t, HelmBinary(t, HelmEnv), image)
		o.WaitReady(t)
	}
	t.Logf("oomtrace's pod %s is Ready", o.Pod.Name)
	ok := t.Run("deployed", func(t *testing.T) { testDeployed(t, c, o, kubepodsLimit) })
	ok = ok && t.Run("admission_policy", func(t *testing.T) { testAdmissionPolicy(t, c, o) })
	ok = ok && t.Run("container_limit", func(t *testing.T) { testContainerLimit(t, c, o) })
	ok = ok && t.Run("pod_level_limit", func(t *testing.T) { testWhoseLimit(t, c, o) })
	ok = ok && t.Run("leak_warning", func(t *testing.T) { testLeakWarning(t, c, o) })
	if c.Runtime.Memcg.V1 {
		ok = ok && t.Run("page_cache_quiet", func(t *testing.T) { testPageCacheQuiet(t, c, o) })
	}
	if c.Runtime.Memcg.V1 {
		ok = ok && t.Run("worker_process_kill", func(t *testing.T) { testWorkerProcessKill(t, c, o) })
		ok = ok && t.Run("prometheus_alerts", func(t *testing.T) { testPrometheusAlerts(t, c, m, monitored) })
	} else {
		// cgroup v2: the kubelet sets memory.oom.group on every container.
		ok = ok && t.Run("group_kill", func(t *testing.T) { testGroupKill(t, c, o) })
		ok = ok && t.Run("group_kill_flood", func(t *testing.T) { testGroupKillFlood(t, c, o) })
		ok = ok && t.Run("limit_lowered", func(t *testing.T) { testLimitLowered(t, c, o) })
		ok = ok && t.Run("pod_limit_lowered_by_resize", func(t *testing.T) { testPodLimitLoweredByResize(t, c, o) })
	}
	ok = ok && t.Run("init_container_limit", func(t *testing.T) { testInitContainerLimit(t, c, o) })
	userKillsChecked := time.Now()
	ok = ok && t.Run("userspace_kills", func(t *testing.T) { testUserspaceKills(t, c, o) })
	if testenv.SystemdNode() {
		// The killers of the node's own userland.
		ok = ok && t.Run("earlyoom", func(t *testing.T) { testEarlyoom(t, c, o) })
		ok = ok && t.Run("systemd_oomd", func(t *testing.T) { testSystemdOomd(t, c, o) })
	}
	// The tenant's attack is about the API and the agent's bounds, the
	// same on any cgroup version; under emulation its 8,000-label pod
	// makes every answer of the runtime slower than the agent's CRI
	// timeout (2 s), and kills are named by their cgroup path alone, as
	// on any node whose runtime is that slow. It runs where the CPU is
	// real.
	if Slowdown() == 1 {
		ok = ok && t.Run("hostile_tenant", func(t *testing.T) { testHostileTenant(t, c, o) })
	}
	ok = ok && t.Run("log_lines", func(t *testing.T) { testLogLines(t, c, o) })
	ok = ok && t.Run("kernel_before_kubelet", func(t *testing.T) { testKernelBeforeKubelet(t, c, o) })
	ok = ok && t.Run("allocatable_eviction", func(t *testing.T) { testAllocatableEviction(t, c, o, kubepodsLimit) })
	// Every pod deleted, evicted or killed by the kernel since: none is a
	// user-space kill.
	ok = ok && t.Run("no_userspace_kills", func(t *testing.T) {
		checkNoUserspaceKills(t, o.Events(t).Since(userKillsChecked), "batch", "batch-talos", "greedy", "stalled")
	})
	if c.Runtime.Memcg.V1 {
		ok = ok && t.Run("rollout_restart", func(t *testing.T) { testRolloutRestart(t, c, o, o.RolloutRestart) })
		// Last of the phase: the crash-looping namespace rolls the agent
		// out twice (a flag on, then off), and its log starts afresh.
		if Slowdown() == 1 {
			ok = ok && t.Run("refusal_storm", func(t *testing.T) { testRefusalStorm(t, c, o) })
			ok = ok && t.Run("crash_looping_namespace", func(t *testing.T) { testCrashLoopingNamespace(t, c, o) })
		}
	} else {
		// The README's helm upgrade, one flag changed: the same rolling
		// update.
		ok = ok && t.Run("helm_upgrade", func(t *testing.T) {
			words, err := ReadmeCommand("helm upgrade ")
			if err != nil {
				t.Fatal(err)
			}
			testRolloutRestart(t, c, o, func(t *testing.T) {
				o.HelmUpgrade(t, words[1:]...)
				if args := o.Pod.Spec.Containers[0].Args; !slices.Contains(args, "--metrics.retention=2h") {
					t.Errorf("the upgraded pod's args %q have no --metrics.retention=2h", args)
				}
			})
		})
	}
	if !ok {
		return
	}
	if testenv.SystemdNode() {
		// Phase 1b, on the node with swap: the kubelet with LimitedSwap
		// and MemoryQoS's memoryThrottlingFactor and TieredReservation,
		// swap on for this phase alone (the evictions after measure
		// memory without it).
		ok = t.Run("swap_and_memory_high", func(t *testing.T) {
			run(t, "modprobe", "zram")
			zram := run(t, "zramctl", "--find", "--size", "1G")
			defer run(t, "zramctl", "--reset", zram)
			run(t, "mkswap", zram)
			run(t, "swapon", zram)
			defer run(t, "swapoff", zram)
			cfg := c.KubeletConfig
			cfg.SwapBehavior, cfg.MemoryThrottlingFactor, cfg.MemoryReservationPolicy = "LimitedSwap", 0.9, "TieredReservation"
			c.StartKubelet(t, cfg)
			testSwapAndMemoryHigh(t, c, o)
			if !t.Failed() {
				testMemoryReservation(t, c, o)
			}
			if !t.Failed() {
				testHighWarning(t, c, o)
			}
		})
		if !ok {
			return
		}
	}

	// Phase 2: no allocatable enforcement; memory.available's threshold
	// just below what the node has free, so that 1.5 GiB crosses it.
	available := nodeAvailable(t, c)
	threshold := (available - 1024*mi) / mi * mi
	c.StartKubelet(t, KubeletConfig{EvictionHard: map[string]string{"memory.available": fmt.Sprintf("%dMi", threshold/mi)}})
	o.Restart(t)
	ok = t.Run("memory_available_eviction", func(t *testing.T) { testMemoryAvailableEviction(t, c, o, threshold) })
	if !ok {
		return
	}

	// Phase 3: enforceNodeAllocatable [none], and the capabilities
	// variant of the DaemonSet rolled out over the privileged one.
	// A soft threshold on memory.available just below what the node has
	// free, with a grace period. On cgroup v2, singleProcessOOMKill: the
	// kubelet leaves oom.group unset, and a worker's kill is again the one
	// the API never shows.
	available = nodeAvailable(t, c)
	soft := (available - 1024*mi) / mi * mi
	c.StartKubelet(t, KubeletConfig{EvictionHard: map[string]string{"memory.available": "100Mi"}, EnforceNodeAllocatable: []string{"none"},
		EvictionSoft:            map[string]string{"memory.available": fmt.Sprintf("%dMi", soft/mi)},
		EvictionSoftGracePeriod: map[string]string{"memory.available": softGrace.String()},
		SingleProcessOOMKill:    !c.Runtime.Memcg.V1})
	old := o.Pod.Name
	if c.Runtime.Memcg.V1 {
		o = c.Deploy(t, "../../../deploy/capabilities", image)
	} else {
		// And without the runtime's socket: containers named from the
		// kubelet's pod statuses alone.
		o.HelmUpgrade(t, "upgrade", "oomtrace", "deploy/helm/oomtrace", "--namespace", "oomtrace", "--reuse-values",
			"--set", "variant=capabilities", "--set", "runtime=none")
	}
	if o.Pod.Name == old {
		o.Restart(t)
	}
	ok = t.Run("not_enforced_capabilities", func(t *testing.T) { testNotEnforced(t, c, o) })
	ok = ok && t.Run("soft_eviction", func(t *testing.T) { testSoftEviction(t, c, o, soft) })
	if ok && !c.Runtime.Memcg.V1 {
		ok = t.Run("worker_process_kill_single_process", func(t *testing.T) { testWorkerProcessKill(t, c, o) })
	}
	// Last: the DaemonSet deleted, as kubectl delete -k and helm uninstall
	// delete it.
	if !ok {
		return
	}
	if c.Runtime.Memcg.V1 {
		// kubectl delete -k deploy/capabilities: every object, the
		// Namespace with the monitoring objects in it among them.
		ok = t.Run("uninstall", func(t *testing.T) {
			testUninstall(t, c, o, func(t *testing.T) { c.Delete(t, KustomizeObjects(t, "../../../deploy/capabilities")...) })
		})
		// Then the README's helm commands with Helm 3, and the metrics
		// port behind TLS and basic auth.
		if ok {
			t.Run("helm3_web_config", func(t *testing.T) { testHelm3WebConfig(t, c, image) })
		}
	} else {
		t.Run("helm_uninstall", func(t *testing.T) { testUninstall(t, c, o, o.HelmUninstall) })
	}
}

// testUninstall: the DaemonSet deleted by uninstall, as helm uninstall and
// kubectl delete -k delete it (background propagation: the DaemonSet goes
// first, then the garbage collector deletes its pod, gracefully) leaves nothing of oomtrace
// on the node: no program loaded, nothing under the pin path. Every
// restart and rollout before (rollout_restart, the variants' rollouts) kept
// them pinned. This cluster runs no garbage collector (the scenarios' pods
// name owners that do not exist, which it would delete): the test deletes
// the pod as it would, after the DaemonSet (or the namespace controller
// does, when the uninstall deleted the Namespace).
func testUninstall(t *testing.T, c *Cluster, o *Oomtrace, uninstall func(*testing.T)) {
	ctx := context.Background()
	pin := filepath.Join(c.BPFFS, "oomtrace")
	if entries, err := os.ReadDir(pin); err != nil || len(entries) == 0 {
		t.Fatalf("nothing pinned at %s before the uninstall (%v): the check would prove nothing", pin, err)
	}
	if len(testenv.OomtracePrograms()) == 0 {
		t.Fatal("no oomtrace program loaded before the uninstall: the check would prove nothing")
	}
	logs := o.Follow(t, o.Pod.Name)
	uninstall(t)
	if _, err := c.Client.AppsV1().DaemonSets("oomtrace").Get(ctx, "oomtrace", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the DaemonSet after the uninstall: %v, want it not found", err)
	}
	if err := c.Client.CoreV1().Pods("oomtrace").Delete(ctx, o.Pod.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("delete the DaemonSet's pod, as the garbage collector does: %v", err)
	}
	c.waitGone(t, "oomtrace", o.Pod.Name)
	var left []string
	entries, _ := os.ReadDir(pin)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if progs := testenv.OomtracePrograms(); len(left) > 0 || len(progs) > 0 {
		t.Errorf("after the uninstall: %v under %s, programs %v loaded; the agent's last lines:\n%s", left, pin, progs, tail(strings.Join(logs.Lines(), "\n"), 15))
	}
	uninstalled := false
	for _, l := range logs.Lines() {
		uninstalled = uninstalled || strings.Contains(l, "uninstalled: the hooks are detached")
	}
	if !uninstalled {
		t.Errorf("the agent did not say it was uninstalled; its last lines:\n%s", tail(strings.Join(logs.Lines(), "\n"), 15))
	}
}

// singleContainerLimit is the OOM domain and the cause of a kill at the
// limit of a pod's only container. The pod's cgroup has the sum of its
// containers' limits, the same, and holds the sandbox's process as well:
// which of the two the kernel finds full first depends on where the
// sandbox's memory is charged. On cgroup v2 it is the pod's (the kernel's
// own oom_control says so), on v1 the container's.
func singleContainerLimit(c *Cluster) (domain, cause string) {
	if c.Runtime.Memcg.V1 {
		return event.DomainContainer, event.CauseOOMContainer
	}
	return event.DomainPod, event.CauseOOMPod
}

// apiSaysOOMKilled checks the kubelet's word for a container the kernel
// OOM-killed: OOMKilled. With the systemd cgroup driver containerd can
// miss the kill (systemd removes the container's scope before the shim
// reads its memory.events: containerd#8893, and containerd#12714 skips
// the CRI OOM test under systemd for it) and say 137 Error: accepted
// there, and logged; oomtrace's own line, which the scenario checks, is
// then the only record that memory ended the container.
func apiSaysOOMKilled(t *testing.T, c *Cluster, term *corev1.ContainerStateTerminated, what string) {
	t.Helper()
	switch {
	case term.Reason == "OOMKilled":
	case c.Runtime.Systemd && term.Reason == "Error" && term.ExitCode == 137:
		t.Logf("API: %s ended 137 Error, not OOMKilled: containerd missed the kernel's kill under the systemd driver (containerd#8893)", what)
	default:
		t.Errorf("API: %s %s, want OOMKilled", what, jsonOf(term))
	}
}

// testInitContainerLimit: an init container over its limit (the kubelet's
// own node e2e OOM case): the API says the init container was OOMKilled
// and the pod failed; oomtrace names the pod and the init container, and
// the killed container's id is the one the API gives.
func testInitContainerLimit(t *testing.T, c *Cluster, o *Oomtrace) {
	p := podSpec("shop", "migrate", corev1.RestartPolicyNever, 2, container{name: "app", args: []string{"idle", "8"}})
	setup := podSpec("shop", "migrate", corev1.RestartPolicyNever, 2, container{name: "schema", args: []string{"hog", "200"}, limit: 64 * mi})
	p.Spec.InitContainers = setup.Spec.Containers
	c.createPod(t, p)
	defer c.deletePod(t, "shop", "migrate")
	p = c.waitPod(t, "shop", "migrate", "failed in its init container", 2*time.Minute, func(p *corev1.Pod) bool {
		ics := p.Status.InitContainerStatuses
		return p.Status.Phase == corev1.PodFailed && len(ics) == 1 && ics[0].State.Terminated != nil
	})
	term := p.Status.InitContainerStatuses[0].State.Terminated
	apiSaysOOMKilled(t, c, term, "init container")
	id := containerID(term.ContainerID)
	ev := o.WaitEvents(t, "the init container's kill", 30*time.Second, func(ev Events) bool {
		ks := killsOf(ev, id)
		return len(ks) > 0 && ks[0].ContainerSurvived != nil
	})
	k := killsOf(ev, id)[0]
	t.Logf("oomtrace: %s", jsonOf(k))
	if v := k.Victim; v.Pod == nil || v.Pod.Name != "migrate" || v.Container == nil || v.Container.Name != "schema" || *k.ContainerSurvived ||
		k.OOM.Domain == nil || k.OOM.Domain.LimitBytes != uint64(64*mi) {
		t.Errorf("kill: pod %s container %s survived %v domain %s; want migrate's schema, ended, at 64 MiB",
			jsonOf(v.Pod), jsonOf(v.Container), jsonOf(k.ContainerSurvived), jsonOf(k.OOM.Domain))
	}
}

// testGroupKill: on cgroup v2 the kubelet sets memory.oom.group=1 on the
// container, so the kill of a worker at the container's limit kills every
// process of the container in one decision. oomtrace reports each kill as
// part of the one group kill, the container did not survive, and the API
// says OOMKilled. The kernel's own counters agree.
func testGroupKill(t *testing.T, c *Cluster, o *Oomtrace) {
	c.createPod(t, podSpec("shop", "api", corev1.RestartPolicyAlways, 2, container{name: "app", args: []string{"parent", "hog", "200"}, limit: 64 * mi}))
	defer c.deletePod(t, "shop", "api")
	p := c.waitPod(t, "shop", "api", "restarted after an OOM kill", 2*time.Minute, func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 1 && cs[0].LastTerminationState.Terminated != nil
	})
	last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated
	apiSaysOOMKilled(t, c, last, "last state (the group kill ended the container)")
	id := containerID(last.ContainerID)
	ev := o.WaitEvents(t, "the group kill of "+id, 30*time.Second, func(ev Events) bool {
		ks := killsOf(ev, id)
		return len(ks) >= 2 && ks[len(ks)-1].ContainerSurvived != nil
	})
	kills := killsOf(ev, id)
	decisions := map[uint64]int{}
	chosen := 0
	for _, k := range kills {
		t.Logf("oomtrace: %s", jsonOf(k))
		g := k.OOM.Group
		if g == nil {
			t.Errorf("kill of pid %d: no group, want the container's oom.group kill", k.Victim.TGID)
			continue
		}
		if k.Victim.Memcg == nil || g.Cgroup.ID != k.Victim.Memcg.ID || g.Cgroup.Path != k.Victim.Memcg.Path {
			t.Errorf("group cgroup %s, want the container's %s", jsonOf(g.Cgroup), jsonOf(k.Victim.Memcg))
		}
		if k.ContainerSurvived == nil || *k.ContainerSurvived {
			t.Errorf("kill of pid %d: container_survived %s, want false", k.Victim.TGID, jsonOf(k.ContainerSurvived))
		}
		decisions[g.DecisionSeq]++
		if g.Chosen {
			chosen++
			if g.DecisionSeq != k.Seq {
				t.Errorf("chosen kill seq %d, decision_seq %d", k.Seq, g.DecisionSeq)
			}
		}
	}
	// The worker and the container's init (ctrbin parent): two processes,
	// one decision, one of them chosen.
	if len(kills) != 2 || len(decisions) != 1 || chosen != 1 {
		t.Errorf("%d kills in %d decisions, %d chosen; want 2 kills of one decision, one chosen", len(kills), len(decisions), chosen)
	}
	// The pod's memory.events counts its containers' events
	// (hierarchically), the restarted containers' too: one oom_group_kill
	// per decision oomtrace reported in the pod, and at least as many
	// oom_kill as kills (the kernel counts a task again for each of its
	// threads its scan of the group meets while the task still has its
	// memory, the chosen one among them, and reports each process once).
	// Compared when the kernel's count holds still around reading
	// oomtrace's.
	podEvents := filepath.Join(c.Runtime.Memcg.Root, filepath.Dir(kills[0].Victim.Memcg.Path), "memory.events")
	var before map[string]uint64
	var inPodKills, inPodDecisions int
	deadline := time.Now().Add(Patience(time.Minute))
	for {
		before = readMemoryEvents(t, podEvents)
		ks := killsInPod(o.Events(t), "api")
		after := readMemoryEvents(t, podEvents)
		ds := map[uint64]bool{}
		for _, k := range ks {
			if k.OOM.Group != nil {
				ds[k.OOM.Group.DecisionSeq] = true
			}
		}
		inPodKills, inPodDecisions = len(ks), len(ds)
		if before["oom_group_kill"] == after["oom_group_kill"] && before["oom_group_kill"] == uint64(inPodDecisions) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod's memory.events %v: oom_group_kill never matched the %d decisions oomtrace reported", after, inPodDecisions)
		}
		time.Sleep(time.Second)
	}
	if n := before["oom_kill"]; n < uint64(inPodKills) {
		t.Errorf("pod's memory.events oom_kill %d, want at least the %d kills oomtrace reported", n, inPodKills)
	}
	// And oomtrace accounts for every further count: /proc/vmstat's
	// oom_kill has no kill oomtrace did not see.
	if v, ok := Value(o.Metrics(t), "oomtrace_oom_kills_unobserved_total", nil); !ok || v != 0 {
		t.Errorf("oomtrace_oom_kills_unobserved_total %v %v, want 0 (the group's chosen task is counted twice by the kernel)", v, ok)
	}
	// One Event per decision, not per process, each counting the group.
	// The container restarts into its limit again: every decision so far
	// may have its Event.
	c.waitKubeEvent(t, o, "shop", "api", kubeevents.ReasonContainer)
	list, err := c.Client.EventsV1().Events("shop").List(context.Background(), metav1.ListOptions{FieldSelector: "regarding.name=api"})
	if err != nil {
		t.Fatal(err)
	}
	inPod := map[uint64]bool{}
	for _, k := range killsInPod(o.Events(t), "api") {
		if k.OOM.Group != nil {
			inPod[k.OOM.Group.DecisionSeq] = true
		}
	}
	ours := 0
	for _, e := range list.Items {
		if e.ReportingController != kubeevents.Controller {
			continue // the kubelet's
		}
		ours++
		t.Logf("Event %s: %s", e.Reason, e.Note)
		if !strings.Contains(e.Note, "One decision of the kernel (memory.oom.group of container app) killed 2 processes.") {
			t.Errorf("Event note %q, want the group of 2", e.Note)
		}
	}
	if ours == 0 || ours > len(inPod) {
		t.Errorf("%d Events on pod api for %d group kills, want one per group kill", ours, len(inPod))
	}
}

// readMemoryEvents reads a cgroup v2 memory.events file.
func readMemoryEvents(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return kernfile.ParseKeyValues(b)
}

// testDeployed: the pod serves metrics, found the node's signals where the
// kubelet's config says, and watches the API.
func testDeployed(t *testing.T, c *Cluster, o *Oomtrace, kubepodsLimit int64) {
	if o.Pod.Spec.Containers[0].SecurityContext == nil || !*o.Pod.Spec.Containers[0].SecurityContext.Privileged {
		t.Error("the default DaemonSet runs privileged")
	}
	fams := o.Metrics(t)
	if v, ok := Value(fams, "oomtrace_hook_info", map[string]string{"event": "oom_victim"}); !ok || v != 1 {
		t.Errorf("oomtrace_hook_info{event=oom_victim}: %v %v", v, ok)
	}
	th, ok := Value(fams, "oomtrace_node_memory_eviction_threshold_bytes", map[string]string{"signal": "allocatableMemory.available"})
	if !ok || th != 300*float64(mi) {
		t.Errorf("allocatable threshold %v %v, want 300Mi from the kubelet's config", th, ok)
	}
	// The agent must outlive a bad node: its heap is kept below its
	// container's limit. (Its oom_score_adj cannot be checked here: the
	// kubelet asks -997 for a system-node-critical pod, and this machine
	// grants no one CAP_SYS_RESOURCE, which lowering it takes.)
	// Ready means the hooks are attached; the cluster view syncs on its
	// own time (a while, under emulation).
	wants := []string{"cluster view synced", "naming containers through CRI", "kubepods=" + filepath.Join(c.Runtime.Memcg.Root, c.Kubepods()),
		"Go heap kept below 90% of the container's memory limit"}
	var logs string
	for deadline := time.Now().Add(Patience(10 * time.Second)); ; time.Sleep(time.Second) {
		logs = o.Logs(t)
		missing := slices.DeleteFunc(slices.Clone(wants), func(w string) bool { return strings.Contains(logs, w) })
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("log lacks %q:\n%s", missing, tail(logs, 30))
			break
		}
	}
}

// testContainerLimit: a container over its own limit. The kubelet says
// OOMKilled and restarts it; oomtrace names the pod and container, and the
// killed container's id is the one the API says was OOMKilled.
func testContainerLimit(t *testing.T, c *Cluster, o *Oomtrace) {
	// As a Deployment's pod: its ReplicaSet owns it (no controller runs
	// them here: the reference is written as the ReplicaSet would).
	cart := podSpec("shop", "cart", corev1.RestartPolicyAlways, 30, container{name: "redis", args: []string{"hog", "200"}, limit: 64 * mi})
	c.createPod(t, ofDeployment(cart, "7d9f5c6b8"))
	defer c.deletePod(t, "shop", "cart")
	p := c.waitPod(t, "shop", "cart", "restarted after an OOM kill", 2*time.Minute, func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 1 && cs[0].LastTerminationState.Terminated != nil
	})
	last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated
	apiSaysOOMKilled(t, c, last, "last state")
	if last.ExitCode != 137 {
		t.Errorf("API: last state %+v, want exit 137", last)
	}
	id := containerID(last.ContainerID)
	ev := o.WaitEvents(t, "the kill of "+id, 30*time.Second, func(ev Events) bool { return len(killsOf(ev, id)) > 0 })
	kills := killsOf(ev, id)
	if len(kills) != 1 {
		t.Errorf("%d kills of container %s, want 1 (the API says one OOMKilled exit)", len(kills), id)
	}
	k := kills[0]
	v := k.Victim
	wantDomain, wantCause := singleContainerLimit(c)
	if v.Pod == nil || v.Pod.Name != "cart" || v.Pod.Namespace != "shop" || string(p.UID) != v.Pod.UID || v.Container.Name != "redis" ||
		v.Container.Runtime != "containerd" || k.Cause != wantCause || k.OOM.Domain == nil || k.OOM.Domain.Kind != wantDomain {
		t.Errorf("kill %s, want shop/cart redis, %s limit", jsonOf(k), wantDomain)
	}
	if k.OOM.Domain.LimitBytes != uint64(64*mi) {
		t.Errorf("domain limit %d, want 64 MiB", k.OOM.Domain.LimitBytes)
	}
	if v.Pod == nil || v.Pod.Owner.String() != "Deployment/cart" {
		t.Errorf("pod %s: want the owner Deployment/cart", jsonOf(v.Pod))
	}
	// The hog is the container's init: the kill ended the container, as
	// the API says, and the Event on the pod says so too.
	if v.Init == nil || !*v.Init || v.NSPID == nil || *v.NSPID != 1 || k.ContainerSurvived == nil || *k.ContainerSurvived {
		t.Errorf("init %s ns_pid %s container_survived %s, want the init (1), not survived", jsonOf(v.Init), jsonOf(v.NSPID), jsonOf(k.ContainerSurvived))
	}
	e := c.waitKubeEvent(t, o, "shop", "cart", kubeevents.ReasonContainer)
	checkContainersLimit(t, c, p, k, e.Note)
	if !strings.Contains(e.Note, "the container's init") || !strings.Contains(e.Note, "The kill ended container redis.") || !strings.Contains(e.Note, "(Deployment cart)") {
		t.Errorf("Event note %q", e.Note)
	}
	fams := o.Metrics(t)
	if n, _ := Value(fams, "oomtrace_container_deaths_total", map[string]string{"pod": "cart", "container": "redis", "cause": wantCause, "owner": "Deployment/cart"}); n < 1 {
		t.Errorf("container_deaths_total{cart,redis} = %v", n)
	}
	if n, _ := Value(fams, "oomtrace_oom_kills_total", map[string]string{"pod": "cart", "container": "redis", "init": "true"}); n < 1 {
		t.Errorf("oom_kills_total{cart,redis,init=true} = %v", n)
	}
}

// testWorkerProcessKill: a worker process OOM-killed at its container's
// limit while the container's init runs on. The API never hears of it (no
// restart, no OOMKilled); oomtrace reports the kill, says the container
// survived, and writes an Event on the pod that kubectl describe shows.
func testWorkerProcessKill(t *testing.T, c *Cluster, o *Oomtrace) {
	// A supervisor whose worker is OOM-killed twice: two kills, one Event.
	c.createPod(t, ofDeployment(podSpec("shop", "web", corev1.RestartPolicyAlways, 2, container{name: "app", args: []string{"respawn", "2", "hog", "200"}, limit: 64 * mi}), "5f7c9d8b6"))
	defer c.deletePod(t, "shop", "web")
	ev := o.WaitEvents(t, "the worker's two kills in web", 2*time.Minute, func(ev Events) bool {
		ks := killsInPod(ev, "web")
		return len(ks) >= 2 && ks[0].ContainerSurvived != nil && ks[1].ContainerSurvived != nil
	})
	k := killsInPod(ev, "web")[0]
	v := k.Victim
	t.Logf("oomtrace: %s", jsonOf(k))
	_, cause := singleContainerLimit(c)
	if v.Container == nil || v.Container.Name != "app" || v.Init == nil || *v.Init || v.NSPID == nil || *v.NSPID <= 1 ||
		k.ContainerSurvived == nil || !*k.ContainerSurvived || k.Cause != cause {
		t.Errorf("kill: container %s init %s ns_pid %s container_survived %s cause %s; want app's worker, survived",
			jsonOf(v.Container), jsonOf(v.Init), jsonOf(v.NSPID), jsonOf(k.ContainerSurvived), k.Cause)
	}
	// What the API says: nothing happened.
	time.Sleep(Patience(3 * time.Second)) // the kubelet's status update after the kill, if it made one
	p := c.waitPod(t, "shop", "web", "running", 30*time.Second, running)
	cs := p.Status.ContainerStatuses[0]
	if cs.RestartCount != 0 || cs.LastTerminationState.Terminated != nil || cs.State.Running == nil || containerID(cs.ContainerID) != v.Container.ID {
		t.Errorf("API: %s, want the same container running, never restarted", jsonOf(cs))
	}
	// The repeat counts in the first kill's Event: its series, patched
	// within 30 s (kubectl describe: OOMKillProcess (x2 over ...)).
	e := c.waitKubeEventSeries(t, o, "shop", "web", kubeevents.ReasonProcess, 2)
	t.Logf("Event: %s %s from %s, series %s: %s", e.Type, e.Reason, e.ReportingInstance, jsonOf(e.Series), e.Note)
	if e.Type != corev1.EventTypeWarning || e.ReportingController != kubeevents.Controller || e.ReportingInstance != kubeevents.Controller+"-"+NodeName ||
		e.Regarding.UID != p.UID || !strings.Contains(e.Note, fmt.Sprintf("pid %d", v.TGID)) || !strings.Contains(e.Note, "runs on: the kubelet does not report this kill") {
		t.Errorf("Event %s", jsonOf(e))
	}
	fams := o.Metrics(t)
	if n, _ := Value(fams, "oomtrace_oom_kills_total", map[string]string{"pod": "web", "container": "app", "init": "false"}); n < 1 {
		t.Errorf("oom_kills_total{web,app,init=false} = %v", n)
	}
	if n, ok := Value(fams, "oomtrace_container_deaths_total", map[string]string{"pod": "web", "container": "app"}); ok {
		t.Errorf("container_deaths_total{web,app} = %v: the container did not die", n)
	}
}

func killsOf(ev Events, containerID string) []event.OOMKill {
	return killsWhere(ev, func(v event.Victim) bool { return v.Container != nil && v.Container.ID == containerID })
}

func killsInPod(ev Events, pod string) []event.OOMKill {
	return killsWhere(ev, func(v event.Victim) bool { return v.Pod != nil && v.Pod.Name == pod })
}

func killsWhere(ev Events, victim func(event.Victim) bool) []event.OOMKill {
	var out []event.OOMKill
	for _, k := range ev.Kills {
		if victim(k.Victim) {
			out = append(out, k)
		}
	}
	return out
}

// testKernelBeforeKubelet: an allocation fast enough to reach the kubepods
// limit before the kubelet's eviction pass sees it. The kernel kills
// (OOMKilled); oomtrace says the node was below the allocatable threshold
// when it happened.
func testKernelBeforeKubelet(t *testing.T, c *Cluster, o *Oomtrace) {
	c.createPod(t, podSpec("shop", "burst", corev1.RestartPolicyNever, 30, container{name: "loader", args: []string{"hog", "1200"}}))
	defer c.deletePod(t, "shop", "burst")
	p := c.waitPod(t, "shop", "burst", "terminated", 2*time.Minute, func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].State.Terminated != nil
	})
	term := p.Status.ContainerStatuses[0].State.Terminated
	msg, evicted := clusterview.EvictedBy(p)
	if !evicted {
		apiSaysOOMKilled(t, c, term, "burst's container")
	}
	ev := o.WaitEvents(t, "the kill in burst", 30*time.Second, func(ev Events) bool { return len(killsInPod(ev, "burst")) > 0 })
	k := killsInPod(ev, "burst")[0]
	// The kubelet looks every 10 s. When its pass falls within the
	// allocation (the pass right after its start, when it is 10 s from
	// the pod's start), it evicts the pod too. Either the kernel had just
	// OOM-killed loader, or the kubelet came first and the kernel killed
	// loader while it was being stopped, still allocating: either way
	// oomtrace's eviction links that kill (seconds_before below 0 when
	// after).
	if evicted {
		t.Logf("the kubelet evicted burst too: %s", msg)
		ev := o.WaitEvents(t, "the eviction of burst", 30*time.Second, func(ev Events) bool { return evictionOf(ev, "burst") != nil })
		e := evictionOf(ev, "burst")
		var linked *event.KillRef
		for i, l := range e.KernelOOMKills {
			if l.PID == k.Victim.PID && l.Container == "loader" && l.Cause == event.CauseOOMDuringPressure {
				linked = &e.KernelOOMKills[i]
			}
		}
		if linked == nil {
			t.Errorf("the eviction of burst does not link the kill of pid %d: %s", k.Victim.PID, jsonOf(e))
		} else {
			t.Logf("linked: the kill %.3f s before the eviction's Event time", linked.SecondsBefore)
		}
	}
	if k.OOM.Domain == nil || k.OOM.Domain.Kind != event.DomainAllocatable || k.OOM.Domain.Path != c.Kubepods() {
		t.Errorf("domain %+v, want allocatable at %s", k.OOM.Domain, c.Kubepods())
	}
	if k.Cause != event.CauseOOMDuringPressure {
		t.Errorf("cause %s, want %s (node memory %s)", k.Cause, event.CauseOOMDuringPressure, jsonOf(k.NodeMemory))
	}
	// (A container the kubelet stopped for its eviction may be reported
	// without its id: ContainerStatusUnknown.)
	if id := containerID(term.ContainerID); (id != "" || !evicted) && k.Victim.Container.ID != id {
		t.Errorf("victim container %s, API says %s", k.Victim.Container.ID, id)
	}
}

// testAllocatableEviction: a pod whose small container is OOM-killed again
// and again at its limit, and whose SIGTERM-ignoring cache container then
// takes the node's allocatable memory below the kubelet's threshold. The
// kubelet evicts it and spares the neighbour; oomtrace's eviction links the
// earlier kills, shows the kubelet's stop as the kernel saw it, and the
// signal it sampled agrees with the kubelet's message.
func testAllocatableEviction(t *testing.T, c *Cluster, o *Oomtrace, kubepodsLimit int64) {
	begin := time.Now() // this scenario's events only: ev.Since(begin)
	c.createPod(t, podSpec("shop", "etl", corev1.RestartPolicyAlways, 2,
		container{name: "leaky", args: []string{"hog", "200"}, limit: 64 * mi},
		container{name: "cache", args: []string{"stubborn", "720", "25000"}}))
	p := c.waitPod(t, "shop", "etl", "evicted", 3*time.Minute, func(p *corev1.Pod) bool { _, ok := clusterview.EvictedBy(p); return ok })
	c.waitPod(t, "shop", "etl", "stopped", time.Minute, func(p *corev1.Pod) bool {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Terminated == nil {
				return false
			}
		}
		return true
	})
	defer c.deletePod(t, "shop", "etl")
	msg, _ := clusterview.EvictedBy(p)
	kubelet := evictionmsg.Parse(msg)
	t.Logf("kubelet: %s", msg)
	if kubelet.ThresholdBytes == nil || *kubelet.ThresholdBytes != 300*mi || kubelet.AvailableBytes == nil {
		t.Fatalf("kubelet message %q: want threshold 300Mi and available", msg)
	}
	ev := o.WaitEvents(t, "the eviction of etl", time.Minute, func(ev Events) bool { return evictionOf(ev, "etl") != nil })
	e := evictionOf(ev, "etl")
	t.Logf("oomtrace: %s", jsonOf(e))
	if e.Source != clusterview.SourcePodStatus || e.StarvedResource != "memory" || e.ThresholdBytes == nil || *e.ThresholdBytes != 300*mi ||
		*e.AvailableBytes != *kubelet.AvailableBytes || e.Pod.UID != string(p.UID) || e.Pod.QoS != "burstable" {
		t.Errorf("eviction %s", jsonOf(e))
	}
	if len(e.OffendingContainers) == 0 || e.OffendingContainers[0].Name != "cache" {
		t.Errorf("offending containers %+v, want cache", e.OffendingContainers)
	}
	// The repeated kills of leaky, linked.
	restarts := int32(0)
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "leaky" {
			restarts = cs.RestartCount
		}
	}
	if len(e.KernelOOMKills) < 2 || int32(len(e.KernelOOMKills)) > restarts+1 {
		t.Errorf("%d kernel kills linked, want at least 2 and at most the API's %d restarts (+1)", len(e.KernelOOMKills), restarts)
	}
	// (A kill after the eviction, during the pod's stop, is linked too,
	// with seconds_before below 0: leaky, still allocating, can be killed
	// just after the kubelet's pass.)
	for _, k := range e.KernelOOMKills {
		if k.Container != "leaky" || k.Cause != event.CauseOOMContainer {
			t.Errorf("linked kill %+v", k)
		}
	}
	// The kubelet's stop as the kernel saw it: SIGTERM to cache, ignored,
	// SIGKILL after the 2 s grace period; the pause process's SIGKILL is
	// the sandbox's, not a container's.
	var term, kill, pause *event.SignalRef
	for i, s := range e.KernelSignals {
		switch {
		case s.Container == "cache" && s.Signal == "SIGTERM" && term == nil:
			term = &e.KernelSignals[i]
		case s.Container == "cache" && s.Signal == "SIGKILL":
			kill = &e.KernelSignals[i]
		case s.Sandbox && s.Signal == "SIGKILL":
			pause = &e.KernelSignals[i]
		}
		if !s.Sandbox && len(s.Container) == 64 {
			t.Errorf("signal to an unnamed container %s: %+v", s.Container, s)
		}
		if s.Sandbox && s.Container != "" {
			t.Errorf("sandbox signal names a container: %+v", s)
		}
	}
	if term == nil || kill == nil || pause == nil {
		t.Fatalf("kernel signals %s: want cache's SIGTERM and SIGKILL and the sandbox's SIGKILL", jsonOf(e.KernelSignals))
	}
	if d := kill.SecondsAfter - term.SecondsAfter; d < 1.9 || d > 5 {
		t.Errorf("SIGKILL %.3f s after SIGTERM, want the 2 s grace period", d)
	}
	cacheExit := false
	for _, ce := range e.ContainerExits {
		cacheExit = cacheExit || ce.Name == "cache"
		switch {
		case ce.Reason == clusterview.ReasonContainerStatusUnknown && ce.Signal != "":
			t.Errorf("container %s: signal %s for the kubelet's made-up exit code", ce.Name, ce.Signal)
		case ce.Name == "cache" && ce.Reason != clusterview.ReasonContainerStatusUnknown && ce.Signal != "SIGKILL":
			t.Errorf("cache's exit %+v, want SIGKILL", ce)
		}
	}
	if !cacheExit {
		t.Errorf("container_exits %s has no exit of cache, the container the kubelet stopped", jsonOf(e.ContainerExits))
	}
	// The node's signal when the kubelet decided: below its threshold, and
	// what the kubelet said was available within 5% of the capacity.
	nm := e.NodeMemory
	if nm == nil || nm.AllocatableMemoryAvailable == nil {
		t.Fatalf("eviction without allocatable node memory: %s", jsonOf(nm))
	}
	a := nm.AllocatableMemoryAvailable
	if !a.BelowThreshold || a.CapacityBytes != uint64(kubepodsLimit) || a.CapacitySource != "kubepods_limit" || *a.ThresholdBytes != uint64(300*mi) {
		t.Errorf("allocatable at the eviction %s: want below 300Mi of the 1 GiB kubepods limit", jsonOf(a))
	}
	if d := a.AvailableBytes - *kubelet.AvailableBytes; d > kubepodsLimit/20 || d < -kubepodsLimit/20 {
		t.Errorf("oomtrace sampled %d MiB available, the kubelet %d MiB: more than 5%% of capacity apart", a.AvailableBytes>>20, *kubelet.AvailableBytes>>20)
	}
	// The crossing was reported no later than the kubelet's second plus
	// one sampling interval.
	// (This scenario's crossing: one an earlier scenario left in the log
	// would be in time too.)
	var crossing *event.MemoryPressure
	mine := ev.Since(begin)
	for i, mp := range mine.Pressure {
		if mp.SignalName == "allocatableMemory.available" && mp.BelowThreshold && !mp.Time.After(e.Time.Add(2*time.Second)) {
			crossing = &mine.Pressure[i]
		}
	}
	if crossing == nil {
		t.Errorf("no memory_pressure crossing of allocatableMemory.available between the scenario's start %v and %v: %s", begin, e.Time.Add(2*time.Second), jsonOf(mine.Pressure))
	}
	// MemoryPressure: True, then False once the transition period (30 s)
	// has passed without a crossing; both in this scenario.
	ev = o.WaitEvents(t, "MemoryPressure True then False", 2*time.Minute, func(ev Events) bool {
		ev = ev.Since(begin)
		return len(ev.Nodes) >= 2 && ev.Nodes[len(ev.Nodes)-1].Status == "False"
	}).Since(begin)
	up := ev.Nodes[len(ev.Nodes)-2]
	if up.Status != "True" || up.Condition != "MemoryPressure" {
		t.Errorf("node conditions %s", jsonOf(ev.Nodes))
	}
	fams := o.Metrics(t)
	if n, _ := Value(fams, "oomtrace_container_deaths_total", map[string]string{"pod": "etl", "container": "cache", "cause": event.CauseKubeletEviction}); n != 1 {
		t.Errorf("container_deaths_total{etl,cache,kubelet_eviction} = %v, want 1", n)
	}
	if n, _ := Value(fams, "oomtrace_node_condition_transitions_total", map[string]string{"condition": "MemoryPressure", "status": "True"}); n < 1 {
		t.Errorf("node_condition_transitions_total{MemoryPressure,True} = %v", n)
	}
	for _, mp := range ev.Pressure {
		if mp.SinceSeconds != nil && *mp.SinceSeconds != event.Seconds(time.Duration(*mp.SinceSeconds*1e9)) {
			t.Errorf("since_seconds %v is not rounded to the microsecond", *mp.SinceSeconds)
		}
	}
}

func evictionOf(ev Events, pod string) *event.Eviction {
	for i := range ev.Evictions {
		if ev.Evictions[i].Pod.Name == pod {
			return &ev.Evictions[i]
		}
	}
	return nil
}

// summary is the part of the kubelet's /stats/summary the tests read.
type summary struct {
	Node struct {
		Memory struct {
			AvailableBytes  int64 `json:"availableBytes"`
			WorkingSetBytes int64 `json:"workingSetBytes"`
		} `json:"memory"`
	} `json:"node"`
	Pods []struct {
		PodRef struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"podRef"`
		Memory *struct {
			// Time is when the kubelet's stats provider (cAdvisor,
			// every 10 to 15 s) last read the pod cgroup.
			Time            string `json:"time"`
			WorkingSetBytes *int64 `json:"workingSetBytes"`
		} `json:"memory"`
	} `json:"pods"`
}

func (c *Cluster) summary(t *testing.T) summary {
	t.Helper()
	b, err := c.KubeletGet(context.Background(), "/stats/summary")
	if err != nil {
		t.Fatal(err)
	}
	var s summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitStats waits for the kubelet's summary to have a pod's memory.
func (c *Cluster) waitStats(t *testing.T, ns, name string) {
	t.Helper()
	deadline := time.Now().Add(Patience(time.Minute))
	for time.Now().Before(deadline) {
		for _, p := range c.summary(t).Pods {
			if p.PodRef.Namespace == ns && p.PodRef.Name == name && p.Memory != nil && p.Memory.WorkingSetBytes != nil {
				return
			}
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("the kubelet has no memory stats of %s/%s", ns, name)
}

// nodeAvailable is memory.available as the kubelet's summary API says.
func nodeAvailable(t *testing.T, c *Cluster) int64 {
	t.Helper()
	return c.summary(t).Node.Memory.AvailableBytes
}

// testMemoryAvailableEviction: a BestEffort pod takes memory.available
// below the kubelet's threshold; every container exits 0 on the SIGTERM,
// so the pod ends Succeeded, with no reason Evicted, only the
// DisruptionTarget condition: both the API's shape and oomtrace's report
// are checked. The signal agrees with the kubelet's summary and message.
func testMemoryAvailableEviction(t *testing.T, c *Cluster, o *Oomtrace, threshold int64) {
	begin := time.Now() // this scenario's node conditions only
	// oomtrace's memory.available against the kubelet's summary, read
	// side by side.
	kubelet := nodeAvailable(t, c)
	ours, ok := Value(o.Metrics(t), "oomtrace_node_memory_available_bytes", map[string]string{"signal": "memory.available"})
	t.Logf("memory.available: kubelet's summary %d MiB, oomtrace %d MiB", kubelet>>20, int64(ours)>>20)
	if !ok || !within(int64(ours), kubelet, 0.03) {
		t.Errorf("memory.available: oomtrace %v, kubelet %d: more than 3%% apart", ours, kubelet)
	}
	// A small neighbour the eviction must spare: it uses less than it
	// requests, and the kubelet evicts pods over their requests first (but
	// pods it has no stats for before all: wait for them. Seen here: while
	// another pod's container was in an OOM-kill restart loop, the kubelet
	// had no stats for such a neighbour and evicted it first).
	c.createPod(t, podSpec("shop", "neighbour", corev1.RestartPolicyAlways, 30, container{name: "app", args: []string{"idle", "16"}, request: 48 * mi}))
	c.waitPod(t, "shop", "neighbour", "running", time.Minute, running)
	c.waitStats(t, "shop", "neighbour")
	p, msg := c.evictHog(t, "bulk", 0)
	defer c.deletePod(t, "shop", "bulk")
	if n := c.waitPod(t, "shop", "neighbour", "running", 5*time.Second, func(p *corev1.Pod) bool { return true }); n.Status.Phase != corev1.PodRunning {
		t.Errorf("the neighbour was not spared: %+v", n.Status)
	}
	ev := o.WaitEvents(t, "the eviction of bulk", time.Minute, func(ev Events) bool { return evictionOf(ev, "bulk") != nil })
	e := evictionOf(ev, "bulk")
	kmsg := evictionmsg.Parse(msg)
	if e.ThresholdBytes == nil || *e.ThresholdBytes != threshold || kmsg.AvailableBytes == nil || *e.AvailableBytes != *kmsg.AvailableBytes {
		t.Errorf("eviction %s, want threshold %d", jsonOf(e), threshold)
	}
	// The kubelet's stats and oomtrace's sample are not read at the same
	// instant, and the loader is still allocating: 3% apart at most, the
	// slowdown times that under emulation, where the loader allocates that
	// much slower (seen: 6.2% at a slowdown of 3).
	tolerance := 0.03 * float64(Slowdown())
	if nm := e.NodeMemory; nm == nil || nm.MemoryAvailable == nil || !nm.MemoryAvailable.BelowThreshold ||
		!within(nm.MemoryAvailable.AvailableBytes, *kmsg.AvailableBytes, tolerance) {
		t.Errorf("memory.available at the eviction %s, kubelet said %d: want below, within %.0f%%", jsonOf(e.NodeMemory), *kmsg.AvailableBytes, 100*tolerance)
	}
	// The loader exits 0 on SIGTERM, within the hard eviction's 2 s grace
	// period where the CPU is real: the kernel sees the kubelet's SIGTERM
	// and no SIGKILL, the API a 0 exit and the pod Succeeded. Under
	// emulation, handing back 1.5 GiB takes longer than the grace period:
	// the runtime's SIGKILL may come (to a task already exiting, whose
	// SIGKILL changes nothing) and the kubelet may not learn the exit
	// before it gives up on the container; then the pod fails Evicted, and
	// the API's exit is not 0. Each case is checked as it happened, API
	// and kernel against each other.
	var loader []string
	for _, sr := range e.KernelSignals {
		if sr.Container == "loader" {
			loader = append(loader, sr.Signal)
		}
	}
	var exit *event.ContainerExit
	for i := range e.ContainerExits {
		if e.ContainerExits[i].Name == "loader" {
			exit = &e.ContainerExits[i]
		}
	}
	exitedZero := exit != nil && exit.ExitCode != nil && *exit.ExitCode == 0 && exit.Signal == ""
	stopped := slices.Equal(loader, []string{"SIGTERM"}) || Slowdown() > 1 && slices.Equal(loader, []string{"SIGTERM", "SIGKILL"})
	switch {
	case p.Status.Phase == corev1.PodSucceeded && p.Status.Reason == "":
		if !exitedZero || !stopped {
			t.Errorf("pod Succeeded: loader's exit %s, kernel signals %v (all: %s); want 0 on the kubelet's SIGTERM, no SIGKILL (under emulation: one that came late)", jsonOf(exit), loader, jsonOf(e.KernelSignals))
		}
	case Slowdown() > 1 && p.Status.Phase == corev1.PodFailed && p.Status.Reason == "Evicted":
		t.Logf("under emulation the loader did not exit within the 2 s grace period: loader's exit %s, kernel signals %v", jsonOf(exit), loader)
		if exitedZero || !stopped {
			t.Errorf("pod Failed Evicted: loader's exit %s, kernel signals %v (all: %s); want an exit other than 0, the kubelet's SIGTERM first, at most its SIGKILL after", jsonOf(exit), loader, jsonOf(e.KernelSignals))
		}
	default:
		t.Errorf("API: phase %s reason %q; the kubelet 1.37 leaves a pod whose containers exit 0 Succeeded without reason", p.Status.Phase, p.Status.Reason)
	}
	fams := o.Metrics(t)
	if n, _ := Value(fams, "oomtrace_container_deaths_total", map[string]string{"pod": "bulk", "container": "loader", "cause": event.CauseKubeletEviction}); n != 1 {
		t.Errorf("container_deaths_total{bulk,loader,kubelet_eviction} = %v, want 1", n)
	}
	// This eviction's MemoryPressure, True then back to False (an earlier
	// scenario's would do without this one's).
	o.WaitEvents(t, "MemoryPressure True, then back to False", 2*time.Minute, func(ev Events) bool {
		n := ev.Since(begin).Nodes
		return len(n) >= 2 && n[len(n)-2].Status == "True" && n[len(n)-1].Status == "False"
	})
}

// evictHog runs a BestEffort pod in shop whose container "loader" takes
// 1.5 GiB and exits 0 on SIGTERM, and waits until the kubelet evicted it:
// the pod and the kubelet's eviction message.
func (c *Cluster) evictHog(t *testing.T, name string, podRequest int64) (*corev1.Pod, string) {
	t.Helper()
	spec := podSpec("shop", name, corev1.RestartPolicyAlways, 30, container{name: "loader", args: []string{"hog", "1536"}})
	if podRequest > 0 {
		// A pod-level request (PodLevelResources): the kubelet's
		// message then has a pod clause.
		spec.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceMemory: *resource.NewQuantity(podRequest, resource.BinarySI)}}
	}
	c.createPod(t, spec)
	p := c.waitPod(t, "shop", name, "evicted", 3*time.Minute, func(p *corev1.Pod) bool {
		_, ok := clusterview.EvictedBy(p)
		return ok && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed)
	})
	msg, _ := clusterview.EvictedBy(p)
	t.Logf("kubelet: phase %s reason %q: %s", p.Status.Phase, p.Status.Reason, msg)
	return p, msg
}

// softGrace is the soft threshold's grace period in the soft eviction.
const softGrace = 10 * time.Second

// testSoftEviction: a pod takes memory.available below the kubelet's soft
// threshold and stays there; the kubelet evicts it once the grace period
// has passed. oomtrace read the soft threshold from the kubelet's config:
// the eviction carries the kubelet's threshold, and the node signal at the
// eviction says it is below the soft threshold (not the hard one) and for
// how long the kubelet waits.
func testSoftEviction(t *testing.T, c *Cluster, o *Oomtrace, soft int64) {
	const podRequest = 32 * mi
	_, msg := c.evictHog(t, "batch", podRequest)
	defer c.deletePod(t, "shop", "batch")
	kmsg := evictionmsg.Parse(msg)
	if kmsg.ThresholdBytes == nil || *kmsg.ThresholdBytes != soft {
		t.Fatalf("the kubelet's message %q: want the soft threshold %d", msg, soft)
	}
	// The pod clause: its usage (over a GiB) against its pod-level request.
	if kmsg.Pod == nil || kmsg.Pod.Name != "batch" || kmsg.Pod.RequestBytes == nil || *kmsg.Pod.RequestBytes != podRequest ||
		kmsg.Pod.UsageBytes == nil || *kmsg.Pod.UsageBytes < 1024*mi {
		t.Errorf("the kubelet's message %q: no pod clause of batch's usage against its request %d", msg, int64(podRequest))
	}
	ev := o.WaitEvents(t, "the eviction of batch", time.Minute, func(ev Events) bool { return evictionOf(ev, "batch") != nil })
	e := evictionOf(ev, "batch")
	t.Logf("oomtrace: %s", jsonOf(e))
	if e.ThresholdBytes == nil || *e.ThresholdBytes != soft {
		t.Errorf("eviction threshold %s, want the soft %d", jsonOf(e.ThresholdBytes), soft)
	}
	if kmsg.Pod != nil && (e.OffendingPod == nil || jsonOf(e.OffendingPod) != jsonOf(kmsg.Pod)) {
		t.Errorf("eviction offending_pod %s, want the kubelet's %s", jsonOf(e.OffendingPod), jsonOf(kmsg.Pod))
	}
	nm := e.NodeMemory
	if nm == nil || nm.MemoryAvailable == nil {
		t.Fatalf("eviction without memory.available: %s", jsonOf(e))
	}
	m := nm.MemoryAvailable
	if m.SoftThresholdBytes == nil || int64(*m.SoftThresholdBytes) != soft || m.SoftGracePeriod != softGrace.String() || !m.BelowSoftThreshold || m.BelowThreshold {
		t.Errorf("memory.available at the eviction %s: want below the soft threshold %d (grace %v), not the hard one", jsonOf(m), soft, softGrace)
	}
	if th, ok := Value(o.Metrics(t), "oomtrace_node_memory_eviction_threshold_bytes", map[string]string{"signal": "memory.available"}); !ok || th != 100*float64(mi) {
		t.Errorf("hard threshold metric %v %v, want 100Mi", th, ok)
	}
}

// testNotEnforced: with enforceNodeAllocatable [none] the kubelet has no
// allocatable threshold, and neither has oomtrace (here the capabilities
// variant, not privileged).
func testNotEnforced(t *testing.T, c *Cluster, o *Oomtrace) {
	if sc := o.Pod.Spec.Containers[0].SecurityContext; sc == nil || sc.Privileged == nil || *sc.Privileged {
		t.Fatalf("the capabilities variant runs privileged: %+v", sc)
	}
	fams := o.Metrics(t)
	if _, ok := Value(fams, "oomtrace_node_memory_eviction_threshold_bytes", map[string]string{"signal": "allocatableMemory.available"}); ok {
		t.Error("an allocatable threshold without enforcement")
	}
	c.createPod(t, podSpec("shop", "cart2", corev1.RestartPolicyNever, 30, container{name: "redis", args: []string{"hog", "200"}, limit: 64 * mi}))
	defer c.deletePod(t, "shop", "cart2")
	ev := o.WaitEvents(t, "the kill in cart2", 2*time.Minute, func(ev Events) bool { return len(killsInPod(ev, "cart2")) > 0 })
	for _, mp := range ev.Pressure {
		if mp.SignalName == "allocatableMemory.available" {
			t.Errorf("memory_pressure for allocatable without a threshold: %s", jsonOf(mp))
		}
	}
	k := killsInPod(ev, "cart2")[0]
	nm := k.NodeMemory
	if nm == nil || nm.AllocatableMemoryAvailable == nil || nm.AllocatableMemoryAvailable.ThresholdBytes != nil || nm.AllocatableMemoryAvailable.BelowThreshold ||
		nm.MemoryAvailable == nil || *nm.MemoryAvailable.ThresholdBytes != uint64(100*mi) {
		t.Errorf("node memory %s: want no allocatable threshold, memory.available<100Mi; oomtrace's log:\n%s", jsonOf(nm), tail(withoutRefusals(o.Logs(t)), 40))
	}
	if _, cause := singleContainerLimit(c); k.Victim.Container == nil || k.Victim.Container.Name != "redis" || k.Cause != cause ||
		k.Victim.Pod == nil || k.Victim.Pod.Name != "cart2" {
		t.Errorf("kill %s, want redis of cart2, %s", jsonOf(k), cause)
	}
	if slices.Contains(o.Pod.Spec.Containers[0].Args, "--cri.endpoint=none") {
		// The chart's runtime=none: no socket, no mount of the host's /run.
		if logs := o.Logs(t); !strings.Contains(logs, "naming containers from the kubelet's pod statuses") || strings.Contains(logs, "naming containers through CRI") {
			t.Errorf("runtime=none: want containers named from the pod statuses only; oomtrace's log:\n%s", tail(withoutRefusals(logs), 20))
		}
	}
	// What is read from the host's cgroups, also in a cgroup namespace of
	// the agent's own (a non-privileged container's on v2).
	if k.PostMortem == nil || k.PostMortem.Memory == nil || k.ContainerSurvived == nil {
		t.Errorf("kill %s: want a post-mortem with memory and container_survived", jsonOf(k))
	}
	// The kubelet left the node's tunables alone (checked again at teardown).
	if v, _ := os.ReadFile("/proc/sys/vm/overcommit_memory"); strings.TrimSpace(string(v)) != c.sysctls["vm.overcommit_memory"] {
		t.Errorf("vm.overcommit_memory is %s", v)
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
