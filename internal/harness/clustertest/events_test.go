// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
)

// TestEventsSince keeps what came at or after the scenario's start, cut to
// its second (the API's times have whole seconds).
func TestEventsSince(t *testing.T) {
	begin := time.Date(2026, 12, 3, 1, 0, 10, 500_000_000, time.UTC)
	at := func(d time.Duration) event.Time { return event.Time{Time: begin.Truncate(time.Second).Add(d)} }
	ev := Events{
		Kills:     []event.OOMKill{{Time: at(-time.Second)}, {Time: at(0)}},
		Evictions: []event.Eviction{{Time: at(time.Second)}},
		Pressure:  []event.MemoryPressure{{Time: at(-time.Millisecond)}},
		Nodes:     []event.NodeCondition{{Time: at(0), Status: "True"}, {Time: at(2 * time.Second), Status: "False"}},
		Lines:     []string{"a", "b"},
	}
	got := ev.Since(begin)
	if len(got.Kills) != 1 || len(got.Evictions) != 1 || len(got.Pressure) != 0 || len(got.Nodes) != 2 || len(got.Lines) != 2 {
		t.Errorf("since %v: %d kills, %d evictions, %d crossings, %d conditions, %d lines; want 1, 1, 0, 2, 2",
			begin, len(got.Kills), len(got.Evictions), len(got.Pressure), len(got.Nodes), len(got.Lines))
	}
}
