// SPDX-License-Identifier: Apache-2.0

package stream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/oomtrace/oomtrace/event"
)

func sample(comm, path string) event.OOMKill {
	uid := uint32(0)
	adj := int32(-17)
	swap := uint64(0)
	return event.OOMKill{
		Type: event.TypeOOMKill,
		Time: event.Time{Time: time.Date(2026, 11, 27, 10, 0, 0, 5, time.FixedZone("X", 3600))},
		Node: "n1",
		Hook: "tp_btf/mark_victim",
		Victim: event.Victim{
			Process:     event.Process{PID: 1, TGID: 1, Comm: comm, UID: &uid, Memcg: &event.Cgroup{ID: 9, Path: path, Source: "kernel"}},
			OOMScoreAdj: &adj,
			RSS:         &event.RSS{Anon: 64 << 20, Swap: &swap},
		},
		Trigger: event.Process{PID: 2, TGID: 1, Comm: comm},
		OOM:     event.OOM{Scope: "memcg", ScopeSource: "memcg_at_limit"},
	}
}

var hostile = []string{
	"plain",
	"quote\"back\\slash",
	"new\nline\r",
	"ctl\x00\x01\x1f\x7f",
	"bad\xff\xfeutf8\xc3",
	"<html>&amp;",
	"\u2028\u2029",
}

func TestJSONHostileBytes(t *testing.T) {
	var buf bytes.Buffer
	w := NewJSON(&buf)
	for _, s := range hostile {
		if err := w.Write(sample(s, "/kubepods/"+s)); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(hostile) {
		t.Fatalf("%d lines for %d events: a string broke a line", len(lines), len(hostile))
	}
	for i, line := range lines {
		if !json.Valid([]byte(line)) {
			t.Errorf("line %d is not valid JSON: %q", i, line)
		}
		var back event.OOMKill
		if err := json.Unmarshal([]byte(line), &back); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		want := replaceInvalid(hostile[i])
		if back.Victim.Comm != want {
			t.Errorf("line %d: comm %q, want %q", i, back.Victim.Comm, want)
		}
		if !utf8.ValidString(line) {
			t.Errorf("line %d is not UTF-8", i)
		}
	}
}

func TestJSONTimeIsRFC3339NanoUTC(t *testing.T) {
	var buf bytes.Buffer
	if err := NewJSON(&buf).Write(sample("x", "/")); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if got, want := m["time"], "2026-11-27T09:00:00.000000005Z"; got != want {
		t.Errorf("time = %v, want %v", got, want)
	}
	v := m["victim"].(map[string]any)
	if v["total_vm_bytes"] != nil || v["oom_score_adj"] != -17.0 {
		t.Errorf("victim = %v: unknown values must be null, known ones kept", v)
	}
}

func TestTextOneLinePerEvent(t *testing.T) {
	var buf bytes.Buffer
	w := NewText(&buf)
	for _, s := range hostile {
		if err := w.Write(sample(s, "/p\n"+s)); err != nil {
			t.Fatal(err)
		}
	}
	sc := bufio.NewScanner(&buf)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, " oom_kill victim=1/") || !strings.Contains(line, "scope=memcg") {
			t.Errorf("line %d: %q", n, line)
		}
		n++
	}
	if n != len(hostile) {
		t.Fatalf("%d lines for %d events", n, len(hostile))
	}
}

// TestTextFields: every value in a text line has its label.
func TestTextFields(t *testing.T) {
	var buf bytes.Buffer
	ev := sample("hog", "/user.slice/a b")
	yes, no := true, false
	ev.Victim.Init, ev.ContainerSurvived = &yes, &no
	ev.OOM.Group = &event.GroupKill{Cgroup: event.Cgroup{ID: 9, Path: "/user.slice/a b"}, DecisionSeq: 41, Chosen: true}
	if err := NewText(&buf).Write(ev); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	for _, want := range []string{` victim=1/"hog" cgroup="/user.slice/a b" `, " init ", " container_survived=false ",
		` group="/user.slice/a b" group_decision=41 chosen `} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
}

// TestTextWhoseLimit: whose limit, the domain's swap and a forced kill
// are on the text line.
func TestTextWhoseLimit(t *testing.T) {
	var buf bytes.Buffer
	ev := sample("redis", "/kubepods/pod1/c1")
	swap := uint64(8 << 20)
	ev.OOM.Domain = &event.Domain{Kind: event.DomainPod, LimitSource: event.LimitFromContainers, MemcgBounds: event.MemcgBounds{SwapUsageBytes: &swap}}
	ev.OOM.ForcedBy = event.ForcedByLimitWrite
	if err := NewText(&buf).Write(ev); err != nil {
		t.Fatal(err)
	}
	if want := " limit_source=containers swap=8.0MiB forced_by=limit_write "; !strings.Contains(buf.String(), want) {
		t.Errorf("%q lacks %q", buf.String(), want)
	}
}

// TestTextOwner: a pod's workload, when known, follows its process.
func TestTextOwner(t *testing.T) {
	var buf bytes.Buffer
	ev := sample("redis", "/kubepods/pod1/c1")
	ev.Victim.Pod = &event.Pod{UID: "u", Namespace: "shop", Name: "cart-7d9f", Owner: &event.PodOwner{Kind: "Deployment", Name: "cart"}}
	ev.Victim.Container = &event.Container{ID: "c1", Name: "redis"}
	if err := NewText(&buf).Write(ev); err != nil {
		t.Fatal(err)
	}
	if want := ` victim=1/"redis" pod=shop/cart-7d9f container=redis owner=Deployment/cart `; !strings.Contains(buf.String(), want) {
		t.Errorf("%q lacks %q", buf.String(), want)
	}
}

func TestBytesIEC(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 64 << 20: "64.0MiB", 3 << 30: "3.0GiB"} {
		if got := bytesIEC(n); got != want {
			t.Errorf("bytesIEC(%d) = %q, want %q", n, got, want)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, bytes.ErrTooLarge }

func TestWriteErrorsSurface(t *testing.T) {
	if err := NewJSON(failWriter{}).Write(sample("x", "/")); err == nil {
		t.Error("JSON: write error swallowed")
	}
	if err := NewText(failWriter{}).Write(sample("x", "/")); err == nil {
		t.Error("text: write error swallowed")
	}
}

// replaceInvalid replaces each byte that is not part of valid UTF-8 with
// U+FFFD, as encoding/json does.
func replaceInvalid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\ufffd")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func sampleRefusal(comm string) event.CommitRefusal {
	uid := uint32(0)
	return event.CommitRefusal{
		Type: event.TypeCommitRefusal, Time: event.Time{Time: time.Unix(1_800_000_000, 0)}, Node: "n",
		Hook:    "tracepoint/syscalls/sys_exit_mmap",
		Process: event.Process{PID: 7, TGID: 7, Comm: comm, UID: &uid, Memcg: &event.Cgroup{ID: 1, Path: "/a\n" + comm, Source: "kernel"}},
		Syscall: "mmap", RequestBytes: 1 << 45, Reason: "commit", ClassifiedBy: "mode0:request>ram+swap",
		Overcommit: event.Overcommit{Mode: 0, Ratio: 50, CommitLimitBytes: 12 << 30, CommittedBytes: 1 << 30},
		Count:      99999, Repeated: true,
	}
}

func TestCommitRefusalLines(t *testing.T) {
	var j, x bytes.Buffer
	jw, tw := NewJSON(&j), NewText(&x)
	for _, s := range hostile {
		if err := jw.Write(sampleRefusal(s)); err != nil {
			t.Fatal(err)
		}
		if err := tw.Write(sampleRefusal(s)); err != nil {
			t.Fatal(err)
		}
	}
	for i, line := range strings.Split(strings.TrimSuffix(j.String(), "\n"), "\n") {
		var back event.CommitRefusal
		if err := json.Unmarshal([]byte(line), &back); err != nil {
			t.Fatalf("line %d: %v: %q", i, err, line)
		}
		if back.Count != 99999 || !back.Repeated || back.Reason != "commit" || back.Overcommit.CommitLimitBytes != 12<<30 {
			t.Errorf("line %d round trip: %+v", i, back)
		}
	}
	lines := strings.Split(strings.TrimSuffix(x.String(), "\n"), "\n")
	if len(lines) != len(hostile) {
		t.Fatalf("%d text lines for %d events", len(lines), len(hostile))
	}
	for _, line := range lines {
		if !strings.Contains(line, " commit_refusal process=7/") || !strings.Contains(line, "reason=commit(mode0:request>ram+swap) count=99999 repeated") {
			t.Errorf("text line: %q", line)
		}
	}
}

func TestKubeletEventLines(t *testing.T) {
	avail, threshold := int64(-3<<20), int64(100<<20)
	since := 310.0
	for _, s := range hostile {
		ev := event.Eviction{Type: event.TypeEviction, Time: event.Time{Time: time.Unix(1, 0)}, Node: "n",
			Pod: event.Pod{UID: "u", Name: s, Namespace: "ns"}, Cause: event.CauseKubeletEviction, Source: "event", Message: s,
			StarvedResource: "memory", AvailableBytes: &avail, ThresholdBytes: &threshold,
			OffendingContainers: []event.OffendingContainer{{Name: s}}}
		nc := event.NodeCondition{Type: event.TypeNodeCondition, Condition: "MemoryPressure", Status: "False", PreviousStatus: "True", Reason: s, SincePreviousSeconds: &since}
		mp := event.MemoryPressure{Type: event.TypeMemoryPressure, SignalName: "memory.available", MemorySignal: event.MemorySignal{AvailableBytes: avail, ThresholdBytes: new(uint64), BelowThreshold: true}}

		var text bytes.Buffer
		tw := NewText(&text)
		if tw.Write(ev) != nil || tw.Write(nc) != nil || tw.Write(mp) != nil {
			t.Fatal("text write failed")
		}
		lines := strings.Split(strings.TrimSuffix(text.String(), "\n"), "\n")
		if len(lines) != 3 || !strings.Contains(lines[0], " eviction pod=") || !strings.Contains(lines[0], "available=-3.0MiB") ||
			!strings.Contains(lines[1], "MemoryPressure=False (was True) after=310s") || !strings.Contains(lines[2], "memory.available below") {
			t.Errorf("%q: text lines %q", s, lines)
		}

		var js bytes.Buffer
		jw := NewJSON(&js)
		if jw.Write(ev) != nil || jw.Write(nc) != nil || jw.Write(mp) != nil {
			t.Fatal("json write failed")
		}
		// Three writes, three lines, each one object of its own type:
		// hostile text never splits a line or joins two.
		sc := bufio.NewScanner(&js)
		var types []string
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m["type"] == nil {
				t.Errorf("%q: not a JSON event: %s (%v)", s, sc.Text(), err)
				continue
			}
			types = append(types, m["type"].(string))
		}
		if want := []string{event.TypeEviction, event.TypeNodeCondition, event.TypeMemoryPressure}; !slices.Equal(types, want) {
			t.Errorf("%q: JSON lines of types %v, want %v", s, types, want)
		}
	}
}
