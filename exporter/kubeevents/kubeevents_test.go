// SPDX-License-Identifier: Apache-2.0

package kubeevents

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/oomtrace/oomtrace/event"
)

func kill(survived *bool, init bool) event.OOMKill {
	nsPID := uint32(7)
	if init {
		nsPID = 1
	}
	return event.OOMKill{
		Victim: event.Victim{Process: event.Process{PID: 4242, TGID: 4242, Comm: "gunicorn",
			Container: &event.Container{Name: "web"}, Pod: &event.Pod{Name: "shop-1", Namespace: "shop"}},
			NSPID: &nsPID, Init: &init, RSS: &event.RSS{Anon: 60 << 20, File: 1 << 20}},
		OOM:               event.OOM{Domain: &event.Domain{Kind: event.DomainContainer, LimitBytes: 64 << 20}},
		ContainerSurvived: survived,
	}
}

func TestDescribe(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		name   string
		k      event.OOMKill
		reason string
		says   []string
	}{
		{"worker killed, container runs on", kill(&yes, false), ReasonProcess,
			[]string{"Process gunicorn (pid 4242, 7 in the container) was OOM-killed in container web at the container's memory limit of 64.0 MiB",
				"it held 61.0 MiB (anon 60.0 MiB, file 1.0 MiB, shmem 0 B)", "Container web runs on: the kubelet does not report this kill."}},
		{"init killed", kill(&no, true), ReasonContainer,
			[]string{"(pid 4242, 1 in the container), the container's init, was OOM-killed", "The kill ended container web."}},
		{"not checked", kill(nil, false), ReasonUnknown, []string{"was OOM-killed in container web"}},
	}
	for _, c := range cases {
		reason, note := Describe(c.k)
		if reason != c.reason {
			t.Errorf("%s: reason %s, want %s", c.name, reason, c.reason)
		}
		for _, s := range c.says {
			if !strings.Contains(note, s) {
				t.Errorf("%s: note %q does not say %q", c.name, note, s)
			}
		}
		if len(note) > 1024 {
			t.Errorf("%s: note of %d bytes; the API takes at most 1024", c.name, len(note))
		}
	}
	// The pod's workload, when the cluster view knows it.
	owned := kill(&yes, false)
	owned.Victim.Pod = &event.Pod{UID: "u", Name: "web-5c8d", Namespace: "shop", Owner: &event.PodOwner{Kind: "Deployment", Name: "web"}}
	if _, note := Describe(owned); !strings.Contains(note, "was OOM-killed in container web (Deployment web) at") {
		t.Errorf("owned: %q does not name the Deployment", note)
	}
	// Other limits, said plainly.
	k := kill(&yes, false)
	for kind, says := range map[string]string{
		event.DomainPod:         "at the pod's memory limit",
		event.DomainAllocatable: "at the node's allocatable memory",
		event.DomainSystem:      "at the node's memory (a system-wide OOM)",
	} {
		k.OOM.Domain.Kind = kind
		if _, note := Describe(k); !strings.Contains(note, says) {
			t.Errorf("%s: %q does not say %q", kind, note, says)
		}
	}
}

// TestDescribeWhoseLimit: a kill at the pod cgroup says whose limit it
// was; swap and a lowered limit are said too.
func TestDescribeWhoseLimit(t *testing.T) {
	yes := true
	u := func(v uint64) *uint64 { return &v }
	k := kill(&yes, false)
	k.OOM.Domain = &event.Domain{Kind: event.DomainPod, LimitBytes: 64 << 20, LimitSource: event.LimitFromContainers}
	k.Victim.Container.MemoryLimitBytes = u(64 << 20)
	k.Victim.Pod.ContainersMemoryLimitBytes = u(64 << 20)
	if _, note := Describe(k); !strings.Contains(note, "at container web's memory limit of 64.0 MiB, enforced on the pod cgroup;") {
		t.Errorf("one container's limit: %q", note)
	}
	k.Victim.Pod.ContainersMemoryLimitBytes = u(96 << 20)
	k.OOM.Domain.LimitBytes = 96 << 20
	if _, note := Describe(k); !strings.Contains(note, "at the sum of its containers' memory limits of 96.0 MiB, enforced on the pod cgroup;") {
		t.Errorf("two containers' limits: %q", note)
	}
	k.OOM.Domain.LimitSource = event.LimitFromPodSpec
	if _, note := Describe(k); !strings.Contains(note, "at the pod-level memory limit (spec.resources) of 96.0 MiB;") {
		t.Errorf("pod-level limit: %q", note)
	}
	k.OOM.Domain = &event.Domain{Kind: event.DomainContainer, LimitBytes: 128 << 20, LimitSource: event.LimitFromContainer,
		MemcgBounds: event.MemcgBounds{SwapUsageBytes: u(30 << 20), SwapLimitBytes: u(32 << 20)}}
	k.Victim.RSS.Swap = u(29 << 20)
	k.OOM.ForcedBy, k.Trigger.Comm = event.ForcedByLimitWrite, "runc"
	_, note := Describe(k)
	for _, says := range []string{"and 29.0 MiB swapped out", "the limit's cgroup had 30.0 MiB in swap of its 32.0 MiB swap limit",
		"the limit had just been lowered below the usage (runc wrote memory.max)"} {
		if !strings.Contains(note, says) {
			t.Errorf("%q does not say %q", note, says)
		}
	}
	checkNote(t, note)
}

// TestHostileNames: a process, container and cgroup named by a tenant
// with a newline, a terminal escape and invalid UTF-8, and a cgroup path of
// 4 KiB of multi-byte characters: the note has no control character, is
// valid UTF-8 and within the API's 1024 bytes.
func TestHostileNames(t *testing.T) {
	k := kill(nil, false)
	k.Victim.Comm = "x\n\x1b[2Jroot\xff"
	k.Victim.Container.Name = "web\r\nOOMKilled: no"
	k.OOM.Domain = &event.Domain{Kind: event.DomainOther, Cgroup: &event.Cgroup{Path: "/" + strings.Repeat("é", 2048) + "\x07"}}
	_, note := Describe(k)
	checkNote(t, note)
	if !strings.Contains(note, "x\uFFFD\uFFFD[2Jroot\uFFFD") {
		t.Errorf("note %q does not show the name with its control bytes replaced", note)
	}
}

func checkNote(t *testing.T, note string) {
	t.Helper()
	if len(note) > 1024 || !utf8.ValidString(note) {
		t.Errorf("note of %d bytes, valid UTF-8 %v", len(note), utf8.ValidString(note))
	}
	for _, r := range note {
		if (r < 0x20 && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) || unicode.Is(unicode.Cf, r) {
			t.Errorf("note %q has control or format character %U", note, r)
			break
		}
	}
}

// FuzzDescribe: whatever names a tenant gives its process, container and
// cgroups, the note is valid UTF-8 without control characters (nor bidi
// or zero-width ones, which reorder or hide text in a terminal), within the
// API's limit once bounded as Write bounds it.
func FuzzDescribe(f *testing.F) {
	f.Add("gunicorn", "web", "/kubepods/pod/x", uint32(7), true, uint64(64<<20))
	f.Add("x\n\x1b[2J", "\xff\xfe", strings.Repeat("é", 600), uint32(1), false, uint64(0))
	f.Add("\u202Eavaj", "we\u200Bb", "/kubepods/\u2066x\u2069", uint32(2), true, uint64(1))
	f.Fuzz(func(t *testing.T, comm, container, path string, nsPID uint32, survived bool, limit uint64) {
		k := kill(&survived, nsPID == 1)
		k.Victim.NSPID = &nsPID
		k.Victim.Comm, k.Victim.Container.Name = comm, container
		k.OOM.Domain = &event.Domain{Kind: event.DomainOther, Cgroup: &event.Cgroup{Path: path}, LimitBytes: limit}
		_, note := Describe(k)
		checkNote(t, event.BoundText(note, noteMax))
	})
}

// TestDescribePressure: the warning says whose memory, how much of it
// cannot be reclaimed against the limit, the page cache, how soon at the
// limit and why; the kill that follows says the episode before it.
func TestDescribePressure(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	f := func(v float64) *float64 { return &v }
	p := event.CgroupPressure{Type: event.TypeCgroupPressure, State: event.PressureStarted,
		Container: &event.Container{Name: "app"}, Pod: &event.Pod{Name: "leaky", Namespace: "shop", UID: "u"},
		Episode: event.PressureEpisode{Reasons: []string{event.PressureNearLimit, event.PressureAboveHigh}, HighEvents: 12},
		Memory:  event.PressureSample{UsageBytes: 60 << 20, LimitBytes: u(64 << 20), HighBytes: u(56 << 20), FileBytes: 2 << 20, SecondsToLimit: f(6.4)}}
	note := DescribePressure(p)
	for _, says := range []string{"Container app is running short of memory before any kill: 58.0 MiB it cannot reclaim of its 64.0 MiB limit (page cache 2.0 MiB)",
		"at the limit in about 6 s", "over its memory.high of 56.0 MiB 12 times"} {
		if !strings.Contains(note, says) {
			t.Errorf("%q does not say %q", note, says)
		}
	}
	checkNote(t, note)

	yes := true
	k := kill(&yes, false)
	k.Pressure = &event.PressureEpisode{DurationSeconds: 40, Reasons: []string{event.PressureNearLimit}, MaxEvents: 7}
	if _, note := Describe(k); !strings.Contains(note, "it had been under memory pressure for 40 s first (near_limit, 7 charges at the limit)") {
		t.Errorf("the kill's note %q does not say the episode", note)
	}
}
