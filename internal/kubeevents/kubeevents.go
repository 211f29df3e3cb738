// Package kubeevents writes a Kubernetes Event on the pod of every kernel
// OOM kill, through client-go's events.k8s.io/v1 recorder (repeats of one
// reason on one pod become a series), so that kubectl describe pod shows
// the kills the kubelet does not report.
package kubeevents

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/tools/events"

	"github.com/oomtrace/oomtrace/event"
)

// Reasons of the Events.
const (
	// ReasonProcess: a process was OOM-killed and its container ran on
	// (the kubelet reports nothing).
	ReasonProcess = "OOMKillProcess"
	// ReasonContainer: the kill ended the container (the kubelet reports
	// OOMKilled when it was the container's init).
	ReasonContainer = "OOMKillContainer"
	// ReasonUnknown: whether the container survived could not be told.
	ReasonUnknown = "OOMKill"
)

// Controller is the Events' reporting controller.
const Controller = "oomtrace"

// Recorder is a sink of OOM kills that writes them as Events.
type Recorder struct {
	broadcaster events.EventBroadcaster
	recorder    events.EventRecorder
}

// New returns a recorder that writes through client; Start sends.
func New(client eventsv1client.EventsV1Interface, node string) *Recorder {
	b := events.NewBroadcaster(&nodeSink{EventSinkImpl: events.EventSinkImpl{Interface: client}, node: node})
	return &Recorder{broadcaster: b, recorder: b.NewRecorder(runtime.NewScheme(), Controller)}
}

// Start sends the Events to the API server until ctx is done.
func (r *Recorder) Start(ctx context.Context) error {
	return r.broadcaster.StartRecordingToSinkWithContext(ctx)
}

// Shutdown stops sending; Events not sent yet are dropped.
func (r *Recorder) Shutdown() { r.broadcaster.Shutdown() }

// Write records an Event for an OOM kill in a named pod; other events and
// kills of unnamed pods are ignored. It never waits for the API.
func (r *Recorder) Write(ev event.Event) error {
	kill, ok := ev.(event.OOMKill)
	if !ok {
		return nil
	}
	pod := kill.Victim.Pod
	if pod == nil || pod.Name == "" || pod.Namespace == "" {
		return nil
	}
	reason, note := Describe(kill)
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: types.UID(pod.UID)}
	r.recorder.Eventf(ref, nil, corev1.EventTypeWarning, reason, "Killed", "%s", note)
	return nil
}

// nodeSink attributes every Event to this node: the recorder names its
// instance after the host name, which in a pod is the pod's. (The
// deprecated source fields must stay empty: events.k8s.io/v1 refuses an
// Event that sets them.)
type nodeSink struct {
	events.EventSinkImpl
	node string
}

func (s *nodeSink) Create(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	ev.ReportingInstance = Controller + "-" + s.node
	return s.EventSinkImpl.Create(ctx, ev)
}

// Describe is the reason and the note of a kill's Event: who was killed,
// in which container, at which limit, how much it held, and whether the
// container survived.
func Describe(k event.OOMKill) (reason, note string) {
	v := k.Victim
	container := "its container"
	if v.Container != nil && v.Container.Name != "" {
		container = "container " + v.Container.Name
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Process %s (pid %d", v.Comm, v.TGID)
	if v.NSPID != nil && *v.NSPID != v.TGID {
		fmt.Fprintf(&b, ", %d in the container", *v.NSPID)
	}
	b.WriteString(")")
	if v.Init != nil && *v.Init {
		b.WriteString(", the container's init,")
	}
	fmt.Fprintf(&b, " was OOM-killed in %s at %s", container, limitHit(k))
	if v.RSS != nil {
		fmt.Fprintf(&b, "; it held %s (anon %s, file %s, shmem %s)", size(v.RSS.Anon+v.RSS.File+v.RSS.Shmem), size(v.RSS.Anon), size(v.RSS.File), size(v.RSS.Shmem))
	}
	switch {
	case k.ContainerSurvived != nil && *k.ContainerSurvived:
		reason = ReasonProcess
		fmt.Fprintf(&b, ". %s runs on: the kubelet does not report this kill.", upper(container))
	case k.ContainerSurvived != nil:
		reason = ReasonContainer
		fmt.Fprintf(&b, ". The kill ended %s.", container)
	default:
		reason = ReasonUnknown
		b.WriteString(".")
	}
	return reason, b.String()
}

// limitHit names the limit of the kill's OOM domain.
func limitHit(k event.OOMKill) string {
	d := k.OOM.Domain
	if d == nil {
		return "an unknown limit"
	}
	var what string
	switch d.Kind {
	case event.DomainContainer:
		what = "the container's memory limit"
	case event.DomainPod:
		what = "the pod's memory limit"
	case event.DomainAllocatable:
		what = "the node's allocatable memory (the kubepods cgroup's limit)"
	case event.DomainSystem:
		return "the node's memory (a system-wide OOM)"
	default:
		if d.Cgroup != nil {
			what = "the memory limit of cgroup " + d.Path
		} else {
			what = "a cpuset or memory policy"
		}
	}
	if d.LimitBytes > 0 {
		what += " of " + size(d.LimitBytes)
	}
	return what
}

func size(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

func upper(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
