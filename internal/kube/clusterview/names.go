// SPDX-License-Identifier: Apache-2.0

package clusterview

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/oomtrace/oomtrace/internal/cri"
)

// containerIndex indexes the pod cache by the runtime's ids of the pod's
// containers, as the kubelet's status has them.
const containerIndex = "container"

// statuses are every container status of a pod: init (sidecars
// included), regular and ephemeral.
func statuses(p *corev1.Pod) [][]corev1.ContainerStatus {
	return [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses}
}

// podContainerIDs are the runtime ids a pod's status names: each
// container's current one and the one it last ended with.
func podContainerIDs(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	var ids []string
	for _, list := range statuses(p) {
		for _, cs := range list {
			for _, full := range statusIDs(cs) {
				if id := runtimeID(full); id != "" {
					ids = append(ids, id)
				}
			}
		}
	}
	return ids, nil
}

// statusIDs are the container ids, as the runtime's scheme and id
// (containerd://<id>), that a container's status names, "" where it names
// none: the current one, the one its state ended with, the one it last
// ended with.
func statusIDs(cs corev1.ContainerStatus) [3]string {
	ended := func(t *corev1.ContainerStateTerminated) string {
		if t == nil {
			return ""
		}
		return t.ContainerID
	}
	return [3]string{cs.ContainerID, ended(cs.State.Terminated), ended(cs.LastTerminationState.Terminated)}
}

// Lookup names a container by its runtime id as the kubelet's status of
// a pod on this node names it (the id, the container's name, its pod and
// the pod's labels): containers have names without the runtime's socket,
// or when the runtime does not answer. The status is the kubelet's to
// write; a pod's own fields name nothing here. A container whose status
// the kubelet has not written yet (its first second), or a pod's sandbox,
// is not known. It satisfies enrich.Resolver.
func (w *Watcher) Lookup(_ context.Context, id string, _ time.Time) (cri.Container, bool) {
	pods := w.podCache.Load()
	if pods == nil || id == "" {
		return cri.Container{}, false
	}
	objs, err := (*pods).ByIndex(containerIndex, id)
	if err != nil {
		return cri.Container{}, false
	}
	for _, obj := range objs {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Spec.NodeName != w.opts.Node {
			continue
		}
		for _, list := range statuses(p) {
			for _, cs := range list {
				for _, full := range statusIDs(cs) {
					if runtimeID(full) != id {
						continue
					}
					return cri.Container{
						ID: id, Name: cs.Name, Runtime: runtimeName(full),
						PodUID: string(p.UID), PodName: p.Name, PodNamespace: p.Namespace,
						PodLabels: p.Labels, PodLabelsTruncated: p.Annotations[labelsTruncated] != "",
					}, true
				}
			}
		}
	}
	return cri.Container{}, false
}

// runtimeName is the scheme of a status's container id
// (containerd://<id>, cri-o://<id>).
func runtimeName(s string) string {
	name, _, ok := strings.Cut(s, "://")
	if !ok {
		return ""
	}
	return name
}
