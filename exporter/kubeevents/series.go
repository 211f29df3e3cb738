// SPDX-License-Identifier: Apache-2.0

package kubeevents

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/oomtrace/oomtrace/event"
)

// Limits of the series.
const (
	// seriesEvery: a series' first patch comes within this, with every
	// repeat since; each later one waits twice as long as the one
	// before, up to seriesEveryMax: a container that goes on being
	// OOM-killed for an hour costs about ten patches, not 120 (client-go's
	// own events library refreshes a series every 30 minutes).
	seriesEvery    = 30 * time.Second
	seriesEveryMax = 10 * time.Minute
	// seriesWindow: a kill this long after the last of its series starts
	// a new Event (the API server keeps Events an hour by default).
	seriesWindow = 30 * time.Minute
	// seriesMax bounds the series remembered (a tenant's pods and
	// containers are many); the oldest are forgotten first.
	seriesMax = 4096
	// instanceMax is the API's limit on reportingInstance.
	instanceMax = 128
)

// op is one call to the API: an Event to create (and the series it
// starts, if any), or a series' count to patch.
type op struct {
	create *eventsv1.Event
	series *series
	patch  *series
}

// seriesKey is what makes kills repeats of one another: one container of
// one pod, one reason.
type seriesKey struct {
	pod       types.UID
	container string
	reason    string
}

// series is an Event that repeats of its kill count in.
type series struct {
	key       seriesKey
	namespace string
	name      string    // the Event's, once created; "" until then
	uid       types.UID // the Event's, once created: each patch's precondition
	count     int32     // kills so far
	patched   int32     // the count the API has
	queued    bool      // a patch of it waits in the queue
	last      time.Time
	scheduled bool          // a patch is due
	every     time.Duration // the wait before the next patch; 0: seriesEvery
}

// startSeries remembers the Event e of a single kill as a series its
// repeats will count in; nil for a kill of no container.
func (r *Recorder) startSeries(kill event.OOMKill, reason string, e *eventsv1.Event) *series {
	k, ok := keyOf(kill, reason)
	if !ok {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.series) >= seriesMax {
		r.forgetOldestSeries()
	}
	s := &series{key: k, namespace: e.Namespace, count: 1, patched: 1, last: r.now()}
	r.series[k] = s
	return s
}

func keyOf(kill event.OOMKill, reason string) (seriesKey, bool) {
	v := kill.Victim
	if v.Pod == nil || v.Pod.UID == "" || v.Container == nil || v.Container.Name == "" {
		return seriesKey{}, false
	}
	return seriesKey{pod: types.UID(v.Pod.UID), container: v.Container.Name, reason: reason}, true
}

// repeat counts kill in the series of its kind, if there is a recent one;
// false when the kill needs an Event of its own.
func (r *Recorder) repeat(kill event.OOMKill) bool {
	// The reason alone, not the note: a repeat writes no text.
	k, ok := keyOf(kill, reasonOf(kill))
	if !ok {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.series[k]
	now := r.now()
	if s == nil || now.Sub(s.last) > seriesWindow {
		return false
	}
	s.count++
	s.last = now
	r.schedule(s)
	return true
}

// schedule makes sure a patch of s comes within seriesEvery, once it
// exists in the API. Call with mu held.
func (r *Recorder) schedule(s *series) {
	if s.scheduled || s.name == "" || s.count == s.patched {
		return
	}
	s.scheduled = true
	if s.every == 0 {
		s.every = r.seriesEvery
	}
	time.AfterFunc(s.every, func() {
		r.mu.Lock()
		s.scheduled = false
		// One write per series waits at most: the patch sends the count
		// as it is when sent.
		due := r.series[s.key] == s && s.count != s.patched && !s.queued
		s.queued = s.queued || due
		r.mu.Unlock()
		if due {
			r.enqueue(op{patch: s})
		}
	})
}

// created records the name of the Event that starts s.
func (r *Recorder) created(s *series, e *eventsv1.Event) {
	if s == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s.name, s.uid = e.Name, e.UID
	r.schedule(s) // repeats that came while it was created
}

// endSeries forgets s, whose Event could not be created: the next repeat
// makes a new one.
func (r *Recorder) endSeries(s *series) {
	if s == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.series[s.key] == s {
		delete(r.series, s.key)
	}
}

// patch sets s's count and last observation in its Event. The patch
// carries the Event's uid: the API server refuses it (a conflict) on
// another Event of the same name, one a tenant deleted and made again in
// its namespace. An Event gone (expired, deleted) or replaced ends the
// series: the next repeat makes a new one.
func (r *Recorder) patch(ctx context.Context, s *series) {
	r.mu.Lock()
	s.queued = false
	count, last, name, uid := s.count, s.last, s.name, s.uid
	r.mu.Unlock()
	patch := map[string]any{"series": eventsv1.EventSeries{Count: count, LastObservedTime: metav1.NewMicroTime(last)}}
	if uid != "" {
		patch["metadata"] = map[string]any{"uid": uid}
	}
	body, err := json.Marshal(patch)
	if err != nil {
		r.dropped.Add(1)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = r.api.PatchEvent(cctx, s.namespace, name, body)
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		r.sent.Add(1)
		s.patched = max(s.patched, count)
		s.every = min(2*s.every, r.seriesEveryMax)
		r.schedule(s) // repeats that came meanwhile
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err) || apierrors.IsInvalid(err):
		if r.series[s.key] == s {
			delete(r.series, s.key)
		}
		r.dropped.Add(1)
	default:
		// The next repeat tries again, with the count then.
		r.dropped.Add(1)
	}
}

// forgetOldestSeries drops the series whose last kill is the oldest.
// Call with mu held.
func (r *Recorder) forgetOldestSeries() {
	var oldest *series
	for _, s := range r.series {
		if oldest == nil || s.last.Before(oldest.last) {
			oldest = s
		}
	}
	if oldest != nil {
		delete(r.series, oldest.key)
	}
}

// permanent says the API refused the request itself (it exists already,
// is invalid or forbidden): trying again cannot help. Throttling and
// timeouts can.
func permanent(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	code := status.Status().Code
	return code >= 400 && code < 500 && code != http.StatusTooManyRequests && code != http.StatusRequestTimeout
}

// reportingInstance is the Events' reporting instance for node, within
// the API's 128 characters.
func reportingInstance(node string) string {
	s := Controller + "-" + node
	if len(s) > instanceMax {
		s = s[:instanceMax]
	}
	return s
}
