// SPDX-License-Identifier: Apache-2.0

package event

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestStringIsJSON: %+v of an event with pointer fields prints their
// values, as the JSON line would, never an address.
func TestStringIsJSON(t *testing.T) {
	uid, rss := uint32(0), uint64(4096)
	ev := OOMKill{Type: TypeOOMKill, Time: Time{Time: time.Unix(1_800_000_000, 0).UTC()},
		Victim: Victim{Process: Process{PID: 7, UID: &uid, Memcg: &Cgroup{ID: 9, Path: "/a"}}, RSS: &RSS{Anon: rss, Swap: &rss}},
		OOM:    OOM{Domain: &Domain{Kind: DomainContainer}, Decision: &Decision{ChosenPID: 7}}}
	want, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v", "%s"} {
		if got := fmt.Sprintf(format, ev); got != string(want) {
			t.Errorf("%s: %s\nwant %s", format, got, want)
		}
	}
	for _, part := range []any{ev.Victim, ev.Victim.Memcg, ev.OOM, *ev.OOM.Decision, ev.Victim.Process} {
		if s := fmt.Sprintf("%+v", part); strings.Contains(s, "0x") || !json.Valid([]byte(s)) {
			t.Errorf("%T printed as %s", part, s)
		}
	}
}
