package kubeevents

import (
	"strings"
	"testing"

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
