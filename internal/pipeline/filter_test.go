// SPDX-License-Identifier: Apache-2.0

package pipeline

import (
	"testing"

	"github.com/oomtrace/oomtrace/event"
)

func TestFilter(t *testing.T) {
	in := func(ns, name string) event.Process {
		return event.Process{Pod: &event.Pod{Namespace: ns, Name: name}}
	}
	host := event.Process{}
	cases := []struct {
		name       string
		namespaces []string
		pods       []string
		p          event.Process
		want       bool
	}{
		{"no filter, host", nil, nil, host, true},
		{"no filter, pod", nil, nil, in("shop", "cart"), true},
		{"namespace match", []string{"shop", "web"}, nil, in("web", "x"), true},
		{"namespace miss", []string{"shop"}, nil, in("web", "x"), false},
		{"namespace, host process", []string{"shop"}, nil, host, false},
		{"pod by name", nil, []string{"cart"}, in("shop", "cart"), true},
		{"pod by namespace/name", nil, []string{"shop/cart"}, in("shop", "cart"), true},
		{"pod in other namespace", nil, []string{"web/cart"}, in("shop", "cart"), false},
		{"namespace and pod", []string{"shop"}, []string{"cart"}, in("shop", "cart"), true},
		{"namespace but not pod", []string{"shop"}, []string{"cart"}, in("shop", "db"), false},
	}
	for _, c := range cases {
		if got := NewFilter(c.namespaces, c.pods).Process(c.p); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	f := NewFilter([]string{"shop"}, nil)
	ev := event.OOMKill{Victim: event.Victim{Process: in("web", "a")}, Trigger: in("shop", "b")}
	if !f.OOMKill(ev) {
		t.Error("a kill triggered from a kept namespace must be kept")
	}
	if f.CommitRefusal(event.CommitRefusal{Process: in("web", "a")}) {
		t.Error("refusal outside the namespace kept")
	}
}
