// SPDX-License-Identifier: Apache-2.0

// Package deploy holds the Kubernetes manifests that run oomtrace as a
// DaemonSet (kustomize directories, and the Helm chart in helm/oomtrace
// that renders the same objects); its tests decode them strictly, check
// their invariants, and (with helm, make test-helm) compare the chart's
// rendering with kustomize's.
package deploy
