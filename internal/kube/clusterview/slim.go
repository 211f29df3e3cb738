// SPDX-License-Identifier: Apache-2.0

package clusterview

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomtrace/oomtrace/event"
)

// The informers keep only what this package reads, with tenants' strings
// bounded: a pod of a megabyte of labels or annotations costs its few
// hundred bytes here. Each function is idempotent (client-go may call a
// transform again on what it returned) and passes anything else (a
// tombstone) through.

// slimPod keeps a pod's identity, bounded labels, node, priority and the
// status an eviction is read from.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	labels, truncated := event.BoundLabels(p.Labels)
	meta := metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion, Labels: labels}
	if ref := metav1.GetControllerOf(p); ref != nil {
		// Only the controller's kind and name are read (Owner).
		meta.OwnerReferences = []metav1.OwnerReference{{Kind: bounded(ref.Kind), Name: bounded(ref.Name), Controller: ref.Controller}}
	}
	if truncated || p.Annotations[labelsTruncated] != "" {
		// The pod's own annotations are dropped: this one is ours.
		meta.Annotations = map[string]string{labelsTruncated: "true"}
	}
	out := &corev1.Pod{
		ObjectMeta: meta,
		Spec: corev1.PodSpec{
			NodeName: p.Spec.NodeName, Priority: p.Spec.Priority, TerminationGracePeriodSeconds: p.Spec.TerminationGracePeriodSeconds,
			Resources:      memoryLimitOnly(p.Spec.Resources),
			Containers:     slimContainers(p.Spec.Containers),
			InitContainers: slimContainers(p.Spec.InitContainers),
		},
		Status: corev1.PodStatus{
			Phase: p.Status.Phase, Reason: bounded(p.Status.Reason), Message: bounded(p.Status.Message), QOSClass: p.Status.QOSClass,
		},
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.DisruptionTarget {
			c.Reason, c.Message = bounded(c.Reason), bounded(c.Message)
			out.Status.Conditions = append(out.Status.Conditions, c)
		} else if !c.LastTransitionTime.IsZero() {
			// Only its time is read (evictionTime).
			out.Status.Conditions = append(out.Status.Conditions, corev1.PodCondition{Type: c.Type, LastTransitionTime: c.LastTransitionTime})
		}
	}
	// Names and ids of every container (Lookup), exits of the regular ones
	// (evictions).
	out.Status.ContainerStatuses = slimStatuses(p.Status.ContainerStatuses)
	out.Status.InitContainerStatuses = slimStatuses(p.Status.InitContainerStatuses)
	out.Status.EphemeralContainerStatuses = slimStatuses(p.Status.EphemeralContainerStatuses)
	return out, nil
}

// memoryLimitOnly keeps a resources stanza's memory limit, the one
// figure a kill is explained with (whose limit the kernel enforced).
func memoryLimitOnly(r *corev1.ResourceRequirements) *corev1.ResourceRequirements {
	if r == nil {
		return nil
	}
	q, ok := r.Limits[corev1.ResourceMemory]
	if !ok {
		return nil
	}
	return &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: q}}
}

// slimContainers keeps each container's name, memory limit and, for an
// init container, its restart policy (a sidecar's is Always): what the
// kubelet sums into the pod cgroup's limit. The API server bounds how
// many containers a pod has.
func slimContainers(in []corev1.Container) []corev1.Container {
	var out []corev1.Container
	for _, c := range in {
		sc := corev1.Container{Name: bounded(c.Name), RestartPolicy: c.RestartPolicy}
		if r := memoryLimitOnly(&c.Resources); r != nil {
			sc.Resources = *r
		}
		out = append(out, sc)
	}
	return out
}

func slimStatuses(in []corev1.ContainerStatus) []corev1.ContainerStatus {
	var out []corev1.ContainerStatus
	for _, cs := range in {
		out = append(out, corev1.ContainerStatus{
			Name: bounded(cs.Name), ContainerID: bounded(cs.ContainerID),
			Resources:            memoryLimitOnly(cs.Resources),
			State:                corev1.ContainerState{Terminated: slimTerminated(cs.State.Terminated)},
			LastTerminationState: corev1.ContainerState{Terminated: slimTerminated(cs.LastTerminationState.Terminated)},
		})
	}
	return out
}

// labelsTruncated is the one annotation of a slimmed pod: it had more
// labels than it keeps (the event says so, labels_truncated).
const labelsTruncated = "oomtrace/labels-truncated"

func slimTerminated(t *corev1.ContainerStateTerminated) *corev1.ContainerStateTerminated {
	if t == nil {
		return nil
	}
	return &corev1.ContainerStateTerminated{ExitCode: t.ExitCode, Signal: t.Signal, Reason: bounded(t.Reason), ContainerID: bounded(t.ContainerID)}
}

// slimNode keeps the Node's name and MemoryPressure condition.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	out := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion}}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeMemoryPressure {
			c.Reason, c.Message = bounded(c.Reason), bounded(c.Message)
			out.Status.Conditions = append(out.Status.Conditions, c)
		}
	}
	return out, nil
}

// bounded is an API string cut to event.MaxMessageBytes, without control
// characters.
func bounded(s string) string {
	return event.BoundText(s, event.MaxMessageBytes)
}
