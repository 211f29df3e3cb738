// SPDX-License-Identifier: Apache-2.0

package evictionmsg

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func p(v int64) *int64 { return &v }

func eq(a, b *int64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name, msg        string
		resource         string
		threshold, avail *int64
		containers       []string
		usages, requests []*int64
	}{
		{"kubelet memory, one container",
			"The node was low on resource: memory. Threshold quantity: 100Mi, available: 71068Ki. Container hog was using 1860192Ki, request is 0, has larger consumption of memory. ",
			"memory", p(100 << 20), p(71068 << 10), []string{"hog"}, []*int64{p(1860192 << 10)}, []*int64{p(0)}},
		{"two containers, decimal quantities",
			"The node was low on resource: memory. Threshold quantity: 1.5Gi, available: 512Mi. Container app was using 2Gi, request is 500M, has larger consumption of memory. Container sidecar was using 300Mi, request is 100Mi, has larger consumption of memory. ",
			"memory", p(1610612736), p(512 << 20), []string{"app", "sidecar"}, []*int64{p(2 << 30), p(300 << 20)}, []*int64{p(500_000_000), p(100 << 20)}},
		{"trimmed trailing space",
			"The node was low on resource: memory. Threshold quantity: 100Mi, available: 99Mi.",
			"memory", p(100 << 20), p(99 << 20), nil, nil, nil},
		{"ephemeral storage",
			"The node was low on resource: ephemeral-storage. Threshold quantity: 10%, available: 3Gi. Container prometheus was using 20Ki, request is 0, has larger consumption of ephemeral-storage. ",
			"ephemeral-storage", nil, p(3 << 30), []string{"prometheus"}, []*int64{p(20 << 10)}, []*int64{p(0)}},
		{"node condition", "The node had condition: [DiskPressure]. ", "", nil, nil, nil, nil, nil},
		// ParseQuantity takes the exponent, and Value then computes ten to
		// its power for minutes: not read.
		{"huge exponent", "The node was low on resource: memory. Threshold quantity: 1e2400999999, available: 1e3. ",
			"memory", nil, p(1000), nil, nil, nil},
		{"empty", "", "", nil, nil, nil, nil, nil},
	}
	// The pod fragment (pod-level request), as the kubelet's podMessageFmt
	// writes it before the containers' (helpers.go, v1.37.2).
	m := Parse("The node was low on resource: memory. Threshold quantity: 300Mi, available: 290236Ki. Pod web-1 was using 300Mi, request is 256Mi, has larger consumption of memory. Container app was using 250Mi, request is 0, has larger consumption of memory. ")
	if m.Pod == nil || m.Pod.Name != "web-1" || !eq(m.Pod.UsageBytes, p(300<<20)) || !eq(m.Pod.RequestBytes, p(256<<20)) ||
		len(m.Containers) != 1 || m.Containers[0].Name != "app" {
		t.Errorf("pod fragment: pod %+v, containers %+v", m.Pod, m.Containers)
	}
	// A container named "Pod…" is a container; no pod fragment, no pod.
	m = Parse("The node was low on resource: memory. Container Pod was using 1Mi, request is 0, has larger consumption of memory. ")
	if m.Pod != nil || len(m.Containers) != 1 {
		t.Errorf("container named Pod: pod %+v, containers %+v", m.Pod, m.Containers)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Parse(tt.msg)
			if m.StarvedResource != tt.resource || !eq(m.ThresholdBytes, tt.threshold) || !eq(m.AvailableBytes, tt.avail) {
				t.Errorf("resource %q threshold %v available %v", m.StarvedResource, m.ThresholdBytes, m.AvailableBytes)
			}
			if len(m.Containers) != len(tt.containers) {
				t.Fatalf("containers %+v, want %v", m.Containers, tt.containers)
			}
			for i, c := range m.Containers {
				if c.Name != tt.containers[i] || !eq(c.UsageBytes, tt.usages[i]) || !eq(c.RequestBytes, tt.requests[i]) {
					t.Errorf("container %d: %s %v %v", i, c.Name, c.UsageBytes, c.RequestBytes)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("The node was low on resource: memory. Threshold quantity: 100Mi, available: 71068Ki. Container hog was using 1860192Ki, request is 0, has larger consumption of memory. ")
	f.Add("Threshold quantity: 1e400, available: -5. Container x was using 9999999999999999999999Ei, request is 0.0001m, has larger consumption of memory.")
	f.Add("The node had condition: [MemoryPressure]. ")
	f.Add("The node was low on resource: memory. Pod web-1 was using 300Mi, request is 256Mi, has larger consumption of memory. ")
	f.Fuzz(func(t *testing.T, msg string) {
		m := Parse(msg)
		if m.StarvedResource != "" && !strings.Contains(msg, m.StarvedResource) {
			t.Fatalf("resource %q not in %q", m.StarvedResource, msg)
		}
		if m.Pod != nil && !strings.Contains(msg, "Pod "+m.Pod.Name+" ") {
			t.Fatalf("pod %q not in %q", m.Pod.Name, msg)
		}
		for _, c := range m.Containers {
			if !strings.Contains(msg, "Container "+c.Name+" ") {
				t.Fatalf("container %q not in %q", c.Name, msg)
			}
			if utf8.ValidString(msg) && !utf8.ValidString(c.Name) {
				t.Fatalf("invalid UTF-8 name from valid message")
			}
		}
	})
}
