// Package deploy holds the Kubernetes manifests that run oomtrace as a
// DaemonSet; its tests decode them strictly and check their invariants.
package deploy
