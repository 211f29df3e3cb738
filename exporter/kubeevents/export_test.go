// SPDX-License-Identifier: Apache-2.0

package kubeevents

// What only the tests read.

// Left is how many kills LeaveEndedContainersToKubelet left to the kubelet.
func (r *Recorder) Left() uint64 { return r.left.Load() }

// Throttled is how many writes waited for the node's bound.
func (r *Recorder) Throttled() uint64 { return r.throttled.Load() }
