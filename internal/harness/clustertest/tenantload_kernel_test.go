// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter"
	"github.com/oomtrace/oomtrace/exporter/kubeevents"
)

// Loads of the tenant's that other pods' kills must go through.
const (
	stormRate    = 5000 // refused processes a second
	stormSeconds = 60
	steadyKills  = 20 // kills of another pod's worker during the storm
	crashPods    = 100
)

// containerLog is what a container wrote to its stdout so far.
func (c *Cluster) containerLog(t *testing.T, ns, pod, ctr string) string {
	t.Helper()
	rc, err := c.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: ctr}).Stream(context.Background())
	if err != nil {
		return ""
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

// testRefusalStorm: the tenant's container forks 5,000 processes a second
// for a minute, each refused a mapping once (each a key of its own to
// aggregate, a line of its own without a bound); meanwhile a worker of
// another namespace's pod is OOM-killed 20 times. Every one of the 20
// kills is in the JSON lines, the metrics and its Event's series; the
// tenant's refusals are counted exactly, under its pod, in a bounded
// number of lines.
func testRefusalStorm(t *testing.T, c *Cluster, o *Oomtrace) {
	c.Namespace(t, tenantNamespace)
	// The agent's log is followed, not read at the end: the kubelet
	// rotates it at 10 MiB, and the suite's earlier lines (8,000 labels)
	// fill that.
	follow := o.Follow(t, o.Pod.Name)
	c.createPod(t, podSpec(tenantNamespace, "storm", corev1.RestartPolicyNever, 2,
		container{name: "storm", args: []string{"storm", strconv.Itoa(stormRate), strconv.Itoa(stormSeconds)}}))
	defer c.deletePod(t, tenantNamespace, "storm")
	c.waitPod(t, tenantNamespace, "storm", "running", time.Minute, running)
	// The worker waits 2 s before each allocation: 20 kills over the storm.
	c.createPod(t, podSpec("shop", "steady", corev1.RestartPolicyNever, 2,
		container{name: "app", args: []string{"respawn", strconv.Itoa(steadyKills), "hog", "200", "2000"}, limit: 64 * mi}))
	defer c.deletePod(t, "shop", "steady")

	var refused int
	re := regexp.MustCompile(`storm: (\d+) processes refused in (\S+)`)
	deadline := time.Now().Add(Patience(time.Duration(stormSeconds)*time.Second + 2*time.Minute))
	for {
		if m := re.FindStringSubmatch(c.containerLog(t, tenantNamespace, "storm", "storm")); m != nil {
			refused, _ = strconv.Atoi(m[1])
			t.Logf("the storm: %s refused processes in %s (%.0f a second)", m[1], m[2], float64(refused)/float64(stormSeconds))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the storm did not end")
		}
		time.Sleep(2 * time.Second)
	}
	// A fork of the storm's process costs about a millisecond on this
	// machine's two cores beside the cluster: about 850 a second, not
	// 5,000. Below a few hundred the storm would not be one.
	if rate := refused / stormSeconds; rate < stormRate {
		t.Logf("this machine forked %d refused processes a second, not %d", rate, stormRate)
		if rate < 400 {
			t.Errorf("the storm made %d refused processes a second: too few to be a storm", rate)
		}
	}

	// Every refusal counted, under the tenant's pod.
	labels := map[string]string{"namespace": tenantNamespace, "pod": "storm", "container": "storm"}
	for deadline := time.Now().Add(Patience(time.Minute)); ; time.Sleep(time.Second) {
		n := sum(o.Metrics(t), "oomtrace_commit_refusals_total", labels)
		if n == refused {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("commit_refusals_total{pod=storm} = %d, want the %d refused", n, refused)
			break
		}
	}
	// The other pod's 20 kills: lines, metrics, its Event's series.
	steadyLines := func() int {
		n := 0
		for _, l := range follow.Lines() {
			var k event.OOMKill
			if strings.HasPrefix(l, `{"type":"oom_kill"`) && json.Unmarshal([]byte(l), &k) == nil && k.Victim.Pod != nil && k.Victim.Pod.Name == "steady" {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(Patience(2 * time.Minute)); steadyLines() < steadyKills && time.Now().Before(deadline); {
		time.Sleep(time.Second)
	}
	if n := steadyLines(); n != steadyKills {
		t.Errorf("%d kill lines of the steady pod, want %d", n, steadyKills)
	}
	if n := sum(o.Metrics(t), "oomtrace_oom_kills_total", map[string]string{"namespace": "shop", "pod": "steady", "container": "app"}); n != steadyKills {
		t.Errorf("oom_kills_total{pod=steady} = %d, want %d", n, steadyKills)
	}
	c.waitKubeEventSeries(t, o, "shop", "steady", kubeevents.ReasonProcess, steadyKills)

	// The tenant's lines: a burst, then about two a second, adding up.
	lines, counted := 0, uint64(0)
	for _, l := range follow.Lines() {
		var r event.CommitRefusal
		if !strings.HasPrefix(l, `{"type":"commit_refusal"`) || json.Unmarshal([]byte(l), &r) != nil || r.Process.Pod == nil || r.Process.Pod.Name != "storm" {
			continue
		}
		lines++
		counted += r.Count
	}
	t.Logf("the storm's %d refusals: %d lines", refused, lines)
	if bound := 20 + 3*stormSeconds; lines > bound || counted != uint64(refused) {
		t.Errorf("the storm: %d lines counting %d refusals; want at most %d, counting %d", lines, counted, bound, refused)
	}
}

// maxSeries is the agent's --metrics.max-series while the crash-looping
// namespace runs: fewer than its pods.
const maxSeries = 50

// testCrashLoopingNamespace: a namespace of 100 pods whose containers are
// OOM-killed as they start, again and again (CrashLoopBackOff), keeps the
// node's Event writes busy; another namespace's first kill still has its
// Event within 30 s. With --metrics.max-series below the pods' number,
// each per-pod metric stays under the cap, the rest counted in its
// overflow series, every kill still counted.
func testCrashLoopingNamespace(t *testing.T, c *Cluster, o *Oomtrace) {
	ctx := context.Background()
	const ns = "crashloop"
	flag := fmt.Sprintf("--metrics.max-series=%d", maxSeries)
	o.EditArgs(t, func(args []string) []string { return append(args, flag) })
	defer o.EditArgs(t, func(args []string) []string { return slices.DeleteFunc(args, func(a string) bool { return a == flag }) })
	c.Namespace(t, ns)
	var uids []string
	defer func() {
		zero := int64(0)
		c.Client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		for i := range crashPods {
			c.waitGone(t, ns, fmt.Sprintf("oom-%03d", i))
		}
		// Gone from the API is not yet torn down on the node: the next
		// scenarios time the kubelet's stops, which 100 pods' teardown
		// (shims, sandboxes, cgroups) would slow. Wait for their cgroups.
		for deadline := time.Now().Add(Patience(2 * time.Minute)); time.Now().Before(deadline); time.Sleep(time.Second) {
			left := 0
			for _, uid := range uids {
				for _, qos := range []string{"guaranteed", "burstable", "besteffort"} {
					if _, err := os.Stat(filepath.Join(c.Runtime.Memcg.Root, c.PodCgroup(qos, uid))); err == nil {
						left++
					}
				}
			}
			if left == 0 {
				return
			}
		}
		t.Logf("some of the crash-looping pods' cgroups are still there after 2 minutes")
	}()
	// A request of 1 MiB each: the kubelet admits a pod only if the
	// requests fit the node's allocatable (1 GiB here).
	for i := range crashPods {
		p := c.createPod(t, podSpec(ns, fmt.Sprintf("oom-%03d", i), corev1.RestartPolicyAlways, 0, container{name: "hog", args: []string{"hog", "64"}, limit: 16 * mi, request: mi}))
		uids = append(uids, string(p.UID))
	}
	inNamespace := func(ev Events) int {
		n := 0
		for _, k := range ev.Kills {
			if k.Victim.Pod != nil && k.Victim.Pod.Namespace == ns {
				n++
			}
		}
		return n
	}
	// The Event writes are past the node's burst (25) when half the pods
	// have been killed.
	o.WaitEvents(t, "the crash-looping namespace's kills", 5*time.Minute, func(ev Events) bool { return inNamespace(ev) >= crashPods/2 })

	c.Namespace(t, "quiet")
	c.createPod(t, podSpec("quiet", "first", corev1.RestartPolicyNever, 2, container{name: "app", args: []string{"hog", "200"}, limit: 64 * mi}))
	defer c.deletePod(t, "quiet", "first")
	ev := o.WaitEvents(t, "the quiet namespace's first kill", 2*time.Minute, func(ev Events) bool { return len(killsInPod(ev, "first")) > 0 })
	kill := killsInPod(ev, "first")[0]
	e := c.waitKubeEvent(t, o, "quiet", "first", kubeevents.ReasonContainer)
	written := e.CreationTimestamp.Time
	if d := written.Sub(kill.Time.Time); d > 30*time.Second {
		t.Errorf("the quiet namespace's first kill's Event was written %v after the kill, want within 30 s", d.Round(time.Second))
	} else {
		t.Logf("the quiet namespace's first kill's Event was written %v after the kill, with %d kills of the crash-looping namespace", d.Round(100*time.Millisecond), inNamespace(o.Events(t)))
	}
	// The cap: at most maxSeries series and the overflow one, every kill
	// counted, the refused ones said.
	// The pods crash on meanwhile: the lines before the scrape and a
	// moment after bound the kills it counted (a kill is counted just
	// before its line is written).
	linesBefore := len(o.Events(t).Kills) // this pod's: since the args changed
	fams := o.Metrics(t)
	time.Sleep(2 * time.Second)
	linesAfter := len(o.Events(t).Kills)
	all := Series(fams, "oomtrace_oom_kills_total", nil)
	total, overflow := 0.0, 0.0
	for _, m := range all {
		total += m.GetCounter().GetValue()
		for _, l := range m.GetLabel() {
			if l.GetName() == "pod" && l.GetValue() == exporter.Overflow {
				overflow += m.GetCounter().GetValue()
			}
		}
	}
	refused, _ := Value(fams, "oomtrace_metrics_series_refused_total", map[string]string{"metric": "oomtrace_oom_kills_total"})
	t.Logf("oom_kills_total: %d series, %v kills (%v in the overflow series, %v refused); %d to %d kill lines", len(all), total, overflow, refused, linesBefore, linesAfter)
	if len(all) > maxSeries+1 || overflow == 0 || refused != overflow || int(total) < linesBefore || int(total) > linesAfter {
		t.Errorf("oom_kills_total: %d series (cap %d and the overflow), %v kills with %v in the overflow series (%v refused), want %d to %d, the kill lines",
			len(all), maxSeries, total, overflow, refused, linesBefore, linesAfter)
	}

	list, err := c.Client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		ours := 0
		for _, e := range list.Items {
			if e.ReportingController == kubeevents.Controller {
				ours++
			}
		}
		t.Logf("oomtrace's Events in the crash-looping namespace: %d", ours)
	}
}
