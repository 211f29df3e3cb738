// SPDX-License-Identifier: Apache-2.0

package kubeevents

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// clock is a settable clock for the recorder.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// startWithEvent starts a recorder on a settable clock, its series patched
// every 50 ms, and has it write the Event of a first kill in pod uid-1.
func startWithEvent(t *testing.T) (*fakeAPI, *Recorder, *clock) {
	t.Helper()
	api := &fakeAPI{}
	r, c := startRecorder(t, api)
	r.Write(podKill("uid-1", c.now()))
	waitFor(t, "the Event", func() bool { return len(api.events()) == 1 })
	return api, r, c
}

// startRecorder starts a recorder of api on a settable clock, its series
// patched every 50 ms.
func startRecorder(t *testing.T, api *fakeAPI) (*Recorder, *clock) {
	r := New(api, "node-a")
	c := &clock{t: time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)}
	r.now, r.seriesEvery = c.now, 50*time.Millisecond
	r.Start(context.Background())
	t.Cleanup(r.Shutdown)
	return r, c
}

// TestSeries: the repeats of a kill in one container are one Event whose
// series counts them, patched once for all the repeats that came within
// the patch interval; past the series window a new Event starts.
func TestSeries(t *testing.T) {
	api, r, c := startWithEvent(t)
	for range 4 {
		c.add(time.Second)
		r.Write(podKill("uid-1", c.now()))
	}
	// One patch, within seriesEvery, with the count of all five.
	waitFor(t, "the series' patch", func() bool { return len(api.patched()) == 1 })
	p := api.patched()[0]
	var body struct {
		Series struct {
			Count            int32  `json:"count"`
			LastObservedTime string `json:"lastObservedTime"`
		} `json:"series"`
	}
	if err := json.Unmarshal([]byte(p.body), &body); err != nil || p.name != api.events()[0].Name || p.namespace != "shop" ||
		body.Series.Count != 5 || !strings.HasPrefix(body.Series.LastObservedTime, "2026-12-02T08:00:04") {
		t.Errorf("patch %+v (%v), want count 5 of %s", p, err, api.events()[0].Name)
	}
	if len(api.events()) != 1 || r.Sent() != 2 || r.Dropped() != 0 {
		t.Errorf("%d Events, sent %d dropped %d; want 1 Event, 2 writes", len(api.events()), r.Sent(), r.Dropped())
	}
	// Another container of the pod, or another reason: an Event of its own.
	other := podKill("uid-1", c.now())
	other.Victim.Container.Name = "sidecar"
	r.Write(other)
	waitFor(t, "the sidecar's Event", func() bool { return len(api.events()) == 2 })
	// Past the window: a new Event.
	c.add(seriesWindow + time.Minute)
	r.Write(podKill("uid-1", c.now()))
	waitFor(t, "a new Event after the window", func() bool { return len(api.events()) == 3 })
}

// TestSeriesRepeatsWhileCreating: repeats that come while the series'
// Event is still being created are patched once it exists.
func TestSeriesRepeatsWhileCreating(t *testing.T) {
	api := &fakeAPI{block: make(chan struct{})}
	r, c := startRecorder(t, api)
	r.Write(podKill("uid-1", c.now()))
	for range 3 {
		c.add(time.Second)
		r.Write(podKill("uid-1", c.now()))
	}
	close(api.block)
	waitFor(t, "the series' patch", func() bool { return len(api.patched()) == 1 })
	if len(api.events()) != 1 || !strings.Contains(api.patched()[0].body, `"count":4`) {
		t.Errorf("%d Events, patch %+v: want one Event and its count 4", len(api.events()), api.patched())
	}
}

// TestSeriesPatchedOnce: a series with no new repeat is not patched again,
// however long it waits.
func TestSeriesPatchedOnce(t *testing.T) {
	api, r, c := startWithEvent(t)
	c.add(time.Second)
	r.Write(podKill("uid-1", c.now()))
	waitFor(t, "the series' patch", func() bool { return len(api.patched()) == 1 })
	// Ten patch intervals (they double from 50 ms: 100, 200, 400 ms ...).
	time.Sleep(2 * time.Second)
	if n := len(api.patched()); n != 1 {
		t.Errorf("%d patches of a series with one repeat, want 1: %+v", n, api.patched())
	}
}

// TestSeriesOutlivesTheBurst: a container OOM-killed again and again is
// not silenced after the burst of 25 new Events: its repeats go on
// counting in its series.
func TestSeriesOutlivesTheBurst(t *testing.T) {
	api, r, c := startWithEvent(t)
	for range 300 {
		r.Write(podKill("uid-1", c.now()))
	}
	waitFor(t, "the series' patch", func() bool { return len(api.patched()) == 1 })
	if !strings.Contains(api.patched()[0].body, `"count":301`) || r.Dropped() != 0 {
		t.Errorf("patch %+v, dropped %d; want count 301, nothing dropped", api.patched(), r.Dropped())
	}
}

// TestSeriesBacksOff: each patch of a series that goes on waits twice as
// long as the one before, up to seriesEveryMax.
func TestSeriesBacksOff(t *testing.T) {
	api, r, c := startWithEvent(t)
	r.seriesEveryMax = 200 * time.Millisecond
	every := func() time.Duration {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, s := range r.series {
			return s.every
		}
		return 0
	}
	for i, want := range []time.Duration{100, 200, 200} {
		c.add(time.Second)
		r.Write(podKill("uid-1", c.now()))
		waitFor(t, "a patch", func() bool { return len(api.patched()) == i+1 })
		waitFor(t, "the next wait", func() bool { return every() == want*time.Millisecond })
	}
	if !strings.Contains(api.patched()[2].body, `"count":4`) {
		t.Errorf("last patch %+v, want count 4", api.patched()[2])
	}
}

// TestNoRetryOnRefusal: an Event the API refuses (forbidden, invalid,
// exists) is not sent again; a transient failure is.
func TestNoRetryOnRefusal(t *testing.T) {
	for _, c := range []struct {
		name  string
		err   error
		calls int
	}{
		{"forbidden", apierrors.NewForbidden(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}, "x", nil), 1},
		{"invalid", apierrors.NewBadRequest("invalid"), 1},
		{"exists", apierrors.NewAlreadyExists(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}, "x"), 1},
		{"throttled", apierrors.NewTooManyRequests("slow down", 1), attempts},
	} {
		api := &fakeAPI{fail: attempts, failErr: c.err}
		r := New(api, "node-a")
		r.retry = time.Millisecond
		r.Start(context.Background())
		r.Write(podKill("uid-1", time.Now()))
		waitFor(t, "the drop", func() bool { return r.Dropped() == 1 })
		api.mu.Lock()
		calls := api.calls
		api.mu.Unlock()
		if calls != c.calls {
			t.Errorf("%s: %d calls, want %d", c.name, calls, c.calls)
		}
		r.Shutdown()
	}
}

func TestReportingInstanceBounded(t *testing.T) {
	if got := reportingInstance(strings.Repeat("n", 253)); len(got) != instanceMax || !strings.HasPrefix(got, Controller+"-nnn") {
		t.Errorf("reportingInstance of a 253-character node: %d characters", len(got))
	}
	if got := reportingInstance("node-a"); got != "oomtrace-node-a" {
		t.Errorf("reportingInstance(node-a) = %q", got)
	}
}

// TestSeriesPatchNamesTheEventsUID: a series' patch carries the uid of the
// Event it created, a precondition the API server checks: a tenant that
// deletes that Event and makes another of the same name in its namespace
// gets no patch of oomtrace's on it (a conflict). The refusal ends the
// series; the next repeat makes an Event of its own.
func TestSeriesPatchNamesTheEventsUID(t *testing.T) {
	api, r, c := startWithEvent(t)
	uid := api.events()[0].UID
	if uid == "" {
		t.Fatal("the fake API gave the Event no uid")
	}
	c.add(time.Second)
	r.Write(podKill("uid-1", c.now()))
	waitFor(t, "the patch", func() bool { return len(api.patched()) == 1 })
	var body struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(api.patched()[0].body), &body); err != nil || body.Metadata.UID != string(uid) {
		t.Errorf("patch %s (%v): want metadata.uid %s", api.patched()[0].body, err, uid)
	}

	// The Event was replaced: the API refuses the patch with a conflict.
	conflict := apierrors.NewConflict(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}, api.events()[0].Name,
		errors.New("Precondition failed: UID in precondition"))
	api.mu.Lock()
	api.patchErr = conflict
	api.mu.Unlock()
	c.add(time.Second)
	r.Write(podKill("uid-1", c.now()))
	waitFor(t, "the refused patch", func() bool { return len(api.patched()) == 2 })
	waitFor(t, "the series ended", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.series) == 0
	})
	c.add(time.Second)
	r.Write(podKill("uid-1", c.now()))
	waitFor(t, "a new Event", func() bool { return len(api.events()) == 2 })
}
