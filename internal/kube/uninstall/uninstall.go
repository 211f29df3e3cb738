// SPDX-License-Identifier: Apache-2.0

// Package uninstall tells, as oomtrace's pod stops, an uninstall from a
// restart. A restart or an upgrade (a rollout, a deleted pod, a drained
// node) must leave the hooks pinned, recording, for the next oomtrace to
// read; an uninstall must detach them, or they stay attached on every node
// until it reboots. The DaemonSet that owns the pod says which: it is gone
// or being deleted only in an uninstall (helm uninstall, kubectl delete -k
// deploy/), as is the pod's Namespace.
package uninstall

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomtrace/oomtrace/internal/kube/kubeapi"
)

// API is what the check reads: kubeapi.Client.
type API interface {
	Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
	DaemonSetMeta(ctx context.Context, namespace, name string) (kubeapi.ObjectMeta, error)
	NamespaceMeta(ctx context.Context, name string) (kubeapi.ObjectMeta, error)
}

// Watch is the check for one pod, set up at start.
type Watch struct {
	api            API
	namespace, pod string
	owner          metav1.OwnerReference
}

// ErrNoDaemonSet means the pod is not a DaemonSet's (oomtrace run by hand
// in a pod, or by another controller): nothing tells its uninstall.
var ErrNoDaemonSet = errors.New("the pod is not a DaemonSet's")

// Start reads the pod and its DaemonSet once, at start: the permissions
// the check needs at stop (get of the pod and of its DaemonSet), and the
// DaemonSet's identity. An error says why no uninstall can be told (the
// hooks then stay pinned at every stop).
func Start(ctx context.Context, api API, namespace, pod string) (*Watch, error) {
	p, err := api.Pod(ctx, namespace, pod)
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", namespace, pod, err)
	}
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != "DaemonSet" || ref.APIVersion != "apps/v1" {
		return nil, ErrNoDaemonSet
	}
	if _, err := api.DaemonSetMeta(ctx, namespace, ref.Name); err != nil {
		return nil, fmt.Errorf("get DaemonSet %s/%s: %w", namespace, ref.Name, err)
	}
	return &Watch{api: api, namespace: namespace, pod: pod, owner: *ref}, nil
}

// Uninstalled says, at stop, whether oomtrace is being uninstalled, and
// why. Its namespace is being deleted; the DaemonSet that owned the pod at
// start is gone or being deleted;
// or the agent may no longer read it, nor its own pod: its RBAC objects or
// its ServiceAccount were deleted with it (it could at start). A DaemonSet
// of the same name but another uid is a new one, whose pods take over: no
// uninstall. When the API cannot say (unreachable), no uninstall: a restart
// is the common case, and a later oomtrace unpin removes what stays.
func (w *Watch) Uninstalled(ctx context.Context) (bool, string, error) {
	// kubectl delete -k deploy/ and kubectl delete namespace delete the
	// Namespace first: the namespace controller then deletes its objects
	// in an order of its own, the pod perhaps before the DaemonSet and the
	// RBAC. A Namespace being deleted is an uninstall. (Without the
	// permission to read it, older manifests, the DaemonSet says.)
	if ns, err := w.api.NamespaceMeta(ctx, w.namespace); err == nil && ns.DeletionTimestamp != nil {
		return true, fmt.Sprintf("namespace %s is being deleted", w.namespace), nil
	}
	ds, err := w.api.DaemonSetMeta(ctx, w.namespace, w.owner.Name)
	switch {
	case apierrors.IsNotFound(err):
		return true, fmt.Sprintf("DaemonSet %s/%s is gone", w.namespace, w.owner.Name), nil
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return true, fmt.Sprintf("the agent may no longer read DaemonSet %s/%s (its RBAC or ServiceAccount was deleted): %v", w.namespace, w.owner.Name, err), nil
	case err != nil:
		return false, "", fmt.Errorf("get DaemonSet %s/%s: %w", w.namespace, w.owner.Name, err)
	case ds.UID != string(w.owner.UID):
		return false, "", nil
	case ds.DeletionTimestamp != nil:
		return true, fmt.Sprintf("DaemonSet %s/%s is being deleted", w.namespace, w.owner.Name), nil
	}
	return false, "", nil
}
