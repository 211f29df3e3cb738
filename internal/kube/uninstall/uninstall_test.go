// SPDX-License-Identifier: Apache-2.0

package uninstall

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/oomtrace/oomtrace/internal/kube/kubeapi"
)

// fakeAPI answers with a pod owned by ref and a DaemonSet whose metadata
// or error the test sets.
type fakeAPI struct {
	ref    *metav1.OwnerReference
	podErr error
	ds     kubeapi.ObjectMeta
	dsErr  error
	ns     kubeapi.ObjectMeta
	nsErr  error
}

func (f *fakeAPI) NamespaceMeta(context.Context, string) (kubeapi.ObjectMeta, error) {
	return f.ns, f.nsErr
}

func (f *fakeAPI) Pod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	if f.podErr != nil {
		return nil, f.podErr
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if f.ref != nil {
		p.OwnerReferences = []metav1.OwnerReference{*f.ref}
	}
	return p, nil
}

func (f *fakeAPI) DaemonSetMeta(context.Context, string, string) (kubeapi.ObjectMeta, error) {
	return f.ds, f.dsErr
}

func owner(kind string) *metav1.OwnerReference {
	yes := true
	return &metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: "oomtrace", UID: "ds-1", Controller: &yes}
}

func TestUninstalled(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "daemonsets"}
	now := metav1.Now()
	for _, tt := range []struct {
		name  string
		ds    kubeapi.ObjectMeta
		dsErr error
		want  bool
		err   bool
		ns    kubeapi.ObjectMeta
		nsErr error
	}{
		{"uninstall: the namespace is being deleted, the DaemonSet not yet", kubeapi.ObjectMeta{UID: "ds-1"}, nil, true, false, kubeapi.ObjectMeta{DeletionTimestamp: &now}, nil},
		{"restart: the namespace may not be read (older RBAC)", kubeapi.ObjectMeta{UID: "ds-1"}, nil, false, false, kubeapi.ObjectMeta{}, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "oomtrace", errors.New("no"))},
		{"restart: the DaemonSet is there", kubeapi.ObjectMeta{UID: "ds-1"}, nil, false, false, kubeapi.ObjectMeta{}, nil},
		{"uninstall: the DaemonSet is gone", kubeapi.ObjectMeta{}, apierrors.NewNotFound(gr, "oomtrace"), true, false, kubeapi.ObjectMeta{}, nil},
		{"uninstall: the DaemonSet is being deleted", kubeapi.ObjectMeta{UID: "ds-1", DeletionTimestamp: &now}, nil, true, false, kubeapi.ObjectMeta{}, nil},
		{"uninstall: the RBAC went first", kubeapi.ObjectMeta{}, apierrors.NewForbidden(gr, "oomtrace", errors.New("no")), true, false, kubeapi.ObjectMeta{}, nil},
		{"uninstall: the ServiceAccount went first", kubeapi.ObjectMeta{}, apierrors.NewUnauthorized("token"), true, false, kubeapi.ObjectMeta{}, nil},
		{"replaced: a new DaemonSet of the same name takes over", kubeapi.ObjectMeta{UID: "ds-2", DeletionTimestamp: &now}, nil, false, false, kubeapi.ObjectMeta{}, nil},
		{"the API cannot say", kubeapi.ObjectMeta{}, errors.New("connection refused"), false, true, kubeapi.ObjectMeta{}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeAPI{ref: owner("DaemonSet"), ds: kubeapi.ObjectMeta{UID: "ds-1"}}
			w, err := Start(context.Background(), api, "oomtrace", "oomtrace-abc")
			if err != nil {
				t.Fatal(err)
			}
			api.ds, api.dsErr, api.ns, api.nsErr = tt.ds, tt.dsErr, tt.ns, tt.nsErr
			got, why, err := w.Uninstalled(context.Background())
			if got != tt.want || (err != nil) != tt.err || got != (why != "") {
				t.Errorf("Uninstalled = %v %q %v, want %v (error: %v)", got, why, err, tt.want, tt.err)
			}
		})
	}
}

// TestStart: no check without a DaemonSet owning the pod, or without the
// permissions it needs at stop (then the hooks always stay pinned, rather
// than a missing permission unpinning them at every restart).
func TestStart(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	for _, tt := range []struct {
		name string
		api  *fakeAPI
	}{
		{"a Deployment's pod", &fakeAPI{ref: owner("Deployment")}},
		{"a bare pod", &fakeAPI{}},
		{"no get of the pod", &fakeAPI{ref: owner("DaemonSet"), podErr: apierrors.NewForbidden(gr, "x", errors.New("no"))}},
		{"no get of the DaemonSet", &fakeAPI{ref: owner("DaemonSet"), dsErr: apierrors.NewForbidden(gr, "x", errors.New("no"))}},
	} {
		if w, err := Start(context.Background(), tt.api, "oomtrace", "p"); err == nil || w != nil {
			t.Errorf("%s: Start = %v, %v; want an error", tt.name, w, err)
		}
	}
}
