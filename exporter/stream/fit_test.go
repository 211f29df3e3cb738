// SPDX-License-Identifier: Apache-2.0

package stream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/oomtrace/oomtrace/event"
)

// validLine fails the test when line is not valid under the lines' JSON
// Schema (docs/events.schema.json).
func validLine(t *testing.T, line string) {
	t.Helper()
	schema, err := jsonschema.NewCompiler().Compile("../../docs/events.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(v); err != nil {
		t.Errorf("%v\n%.300s", err, line)
	}
}

// hostileLabels are 64 labels of 8 KiB in all, every byte of their values
// one JSON escapes as six (\u0001): 48 KiB of a line from one pod.
func hostileLabels() map[string]string {
	labels := map[string]string{}
	for i := range event.MaxLabels {
		labels[fmt.Sprintf("k%02d", i)] = strings.Repeat("\x01", event.MaxLabelBytes/event.MaxLabels-3)
	}
	return labels
}

func hostileProcess(path string) event.Process {
	return event.Process{PID: 7, TGID: 7, Comm: "app", Memcg: &event.Cgroup{ID: 9, Path: path, Source: event.CgroupFromKernel},
		Container: &event.Container{ID: "c1", Name: "app"},
		Pod:       &event.Pod{UID: "u1", Name: "web", Namespace: "shop", Labels: hostileLabels()}}
}

// TestLinesFit16KiB: every line fits containerd's 16 KiB log line, however
// long a tenant makes its pod's labels (escaped), its cgroup path, or an
// eviction's message and lists; what was cut says so, the rest is whole,
// and the event passed in is not modified (its maps are shared).
func TestLinesFit16KiB(t *testing.T) {
	long := "/kubepods/burstable/podu1/" + strings.Repeat("\x02deep/", 700)
	victim := hostileProcess(long)
	other := hostileProcess(long + "x")
	other.Pod.Labels = hostileLabels()
	kill := event.OOMKill{Type: event.TypeOOMKill, Time: event.Time{Time: time.Now()}, Node: "n1", Seq: 3,
		Victim: event.Victim{Process: victim}, Trigger: other,
		OOM:        event.OOM{Scope: event.ScopeMemcg, Domain: &event.Domain{Kind: event.DomainContainer, Cgroup: victim.Memcg}},
		PostMortem: &event.PostMortem{Cgroup: long, TopTasks: make([]event.TaskMemory, 200)}}
	refusal := event.CommitRefusal{Type: event.TypeCommitRefusal, Node: "n1", Process: victim, Syscall: "mmap", Count: 1}
	eviction := event.Eviction{Type: event.TypeEviction, Node: "n1", Pod: *victim.Pod, Message: strings.Repeat("\x03", event.MaxMessageBytes),
		KernelSignals: make([]event.SignalRef, 1000), ContainerExits: make([]event.ContainerExit, 300)}
	userKill := event.UserspaceKill{Type: event.TypeUserspaceKill, Node: "n1", Method: event.MethodCgroupKill, Killer: other,
		Victims: []event.Process{victim, victim, victim, victim, victim, victim}, VictimCount: 6}
	small := event.OOMKill{Type: event.TypeOOMKill, Node: "n1", Victim: event.Victim{Process: event.Process{PID: 1, Pod: &event.Pod{Name: "p", Labels: map[string]string{"app": "x"}}}}}

	var out bytes.Buffer
	j := NewJSON(&out)
	for _, ev := range []event.Event{kill, refusal, eviction, userKill, small} {
		if err := j.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.SplitAfter(out.String(), "\n")
	lines = lines[:len(lines)-1]
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5", len(lines))
	}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("line %d: %v", i, err)
			continue
		}
		validLine(t, l)
		cut := m["truncated"] == true
		if len(l) > MaxLineBytes || cut != (i < 4) {
			t.Errorf("line %d (%s): %d bytes, truncated %v; want at most %d, truncated only if it had to be", i, m["type"], len(l), cut, MaxLineBytes)
		}
	}
	// What was cut says so; what was not is there.
	var k event.OOMKill
	if err := json.Unmarshal([]byte(lines[0]), &k); err != nil {
		t.Fatal(err)
	}
	if p := k.Victim.Pod; p == nil || p.Name != "web" || p.Namespace != "shop" || !p.LabelsTruncated || k.Victim.Container.Name != "app" || k.Seq != 3 {
		t.Errorf("cut kill: victim %s", jsonLine(t, k.Victim))
	}
	var e event.Eviction
	if err := json.Unmarshal([]byte(lines[2]), &e); err != nil {
		t.Fatal(err)
	}
	if e.Pod.Name != "web" || !e.Pod.LabelsTruncated || len(e.KernelSignals) >= 1000 || len(e.Message) >= event.MaxMessageBytes {
		t.Errorf("cut eviction: pod %s, %d signals, message of %d bytes", e.Pod.Name, len(e.KernelSignals), len(e.Message))
	}
	var u event.UserspaceKill
	if err := json.Unmarshal([]byte(lines[3]), &u); err != nil {
		t.Fatal(err)
	}
	if len(u.Victims) == 0 || u.Victims[0].Pod == nil || u.Victims[0].Pod.Name != "web" || u.VictimCount != 6 {
		t.Errorf("cut user-space kill: %d victims (count %d)", len(u.Victims), u.VictimCount)
	}
	if !strings.Contains(lines[4], `"labels":{"app":"x"}`) {
		t.Errorf("a small line was changed: %s", lines[4])
	}
	// The events written are as they were.
	if len(kill.Victim.Pod.Labels) != event.MaxLabels || kill.Victim.Pod.LabelsTruncated || kill.Truncated || len(kill.PostMortem.TopTasks) != 200 ||
		kill.Victim.Memcg.Path != long || len(eviction.KernelSignals) != 1000 || len(userKill.Victims) != 6 || userKill.Victims[0].Pod.LabelsTruncated {
		t.Error("writing a line modified the event")
	}
}

func jsonLine(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTriggerInVictimCgroup: a kill whose trigger ran in the victim's own
// cgroup (most kills) names the victim's container and pod once, with
// labels; the trigger says in_victim_cgroup. A trigger elsewhere is
// written whole.
func TestTriggerInVictimCgroup(t *testing.T) {
	victim := hostileProcess("/kubepods/podu1/c1")
	victim.Pod.Labels = map[string]string{"app": "web"}
	same := victim
	same.PID = 8
	elsewhere := victim
	elsewhere.Memcg = &event.Cgroup{ID: 10, Path: "/kubepods/podu1/c2"}
	for _, c := range []struct {
		trigger event.Process
		want    string
	}{
		{same, `"trigger":{"pid":8,"tgid":7,"comm":"app","memcg":{"id":9,"path":"/kubepods/podu1/c1","source":"kernel"},"cgroup2_id":0,"container":null,"pod":null,"in_victim_cgroup":true}`},
		{elsewhere, `"trigger":{"pid":7,"tgid":7,"comm":"app","memcg":{"id":10,"path":"/kubepods/podu1/c2","source":""},"cgroup2_id":0,"container":{"id":"c1","name":"app","runtime":""},"pod":{"uid":"u1","name":"web","namespace":"shop","qos":"","labels":{"app":"web"}}}`},
	} {
		var out bytes.Buffer
		kill := event.OOMKill{Type: event.TypeOOMKill, Victim: event.Victim{Process: victim}, Trigger: c.trigger}
		if err := NewJSON(&out).Write(kill); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), c.want) || strings.Count(out.String(), `"labels"`) != 1+strings.Count(c.want, `"labels"`) {
			t.Errorf("line %s\nwant %s", out.String(), c.want)
		}
		if kill.Trigger.Pod == nil {
			t.Error("writing the line modified the event")
		}
		validLine(t, out.String())
	}
}
