// SPDX-License-Identifier: Apache-2.0

package clusterview

import (
	"context"
	"math"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

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
					c := cri.Container{
						ID: id, Name: cs.Name, Runtime: runtimeName(full),
						PodUID: string(p.UID), PodName: p.Name, PodNamespace: p.Namespace,
						PodLabels: p.Labels, PodLabelsTruncated: p.Annotations[labelsTruncated] != "",
					}
					memoryLimits(&c, p, cs)
					return c, true
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

// MemoryLimits sets the memory limits of container c (by its pod's uid
// and its name) from the pod's spec and status: known from the pod's
// creation on, before the kubelet writes the container's status, which
// Lookup needs. False when the pod is not known. It satisfies
// enrich.LimitResolver.
func (w *Watcher) MemoryLimits(c *cri.Container) bool {
	if c.PodUID == "" {
		return false
	}
	p := w.podByUID(types.UID(c.PodUID))
	if p == nil {
		return false
	}
	var status corev1.ContainerStatus
	for _, list := range statuses(p) {
		for _, cs := range list {
			if cs.Name == c.Name {
				status = cs
			}
		}
	}
	status.Name = c.Name
	memoryLimits(c, p, status)
	return true
}

// memoryLimits sets c's memory limits from its pod's spec and status.
func memoryLimits(c *cri.Container, p *corev1.Pod, cs corev1.ContainerStatus) {
	c.PodMemoryLimit = memoryLimit(p.Spec.Resources)
	if cs.Resources != nil {
		c.StatusMemoryLimit = memoryLimit(cs.Resources)
	}
	// What the kubelet makes the pod cgroup's limit without a pod-level
	// one (ResourceConfigForPod): the regular and sidecar containers'
	// sum, or the largest init container's if that is more; none unless
	// every container has a limit.
	var sum, initMax uint64
	all := len(p.Spec.Containers) > 0
	for _, ctr := range p.Spec.Containers {
		l := memoryLimit(&ctr.Resources)
		if ctr.Name == cs.Name {
			c.MemoryLimit = l
		}
		if l == nil {
			all = false
			continue
		}
		sum = saturatingAdd(sum, *l)
	}
	for _, ctr := range p.Spec.InitContainers {
		l := memoryLimit(&ctr.Resources)
		if ctr.Name == cs.Name {
			c.MemoryLimit = l
		}
		if l == nil {
			all = false
			continue
		}
		if ctr.RestartPolicy != nil && *ctr.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sum = saturatingAdd(sum, *l)
		} else {
			initMax = max(initMax, *l)
		}
	}
	if all {
		total := max(sum, initMax)
		c.ContainersMemoryLimit = &total
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodResizeInProgress {
			c.ResizeInProgress = true
		}
	}
}

// saturatingAdd is a + b, or the largest uint64: a tenant's limits of
// exbibytes do not wrap around to a small sum.
func saturatingAdd(a, b uint64) uint64 {
	if a+b < a {
		return math.MaxUint64
	}
	return a + b
}

// memoryLimit is a resources stanza's memory limit in bytes, nil if none.
func memoryLimit(r *corev1.ResourceRequirements) *uint64 {
	if r == nil {
		return nil
	}
	q, ok := r.Limits[corev1.ResourceMemory]
	if !ok || q.Sign() <= 0 {
		return nil
	}
	v := uint64(q.Value())
	return &v
}
