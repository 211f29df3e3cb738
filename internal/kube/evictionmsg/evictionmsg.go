// SPDX-License-Identifier: Apache-2.0

// Package evictionmsg reads the kubelet's eviction messages: the starved
// resource, the threshold, what was available, each offending container
// and the offending pod.
package evictionmsg

import (
	"regexp"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/oomtrace/oomtrace/event"
)

// The kubelet's eviction message (pkg/kubelet/eviction/helpers.go) is made
// of fragments, each ending in ". ":
//
//	The node was low on resource: memory. Threshold quantity: 100Mi, available: 71068Ki. Container hog was using 1860192Ki, request is 0, has larger consumption of memory.
//
// A pod with a pod-level memory request (PodLevelResources, beta and on
// by default since 1.34) gets a pod fragment before its containers':
//
//	Pod web-1 was using 300Mi, request is 256Mi, has larger consumption of memory.
var (
	nodeLowRe   = regexp.MustCompile(`The node was low on resource: ([^.\s]+)\.`)
	thresholdRe = regexp.MustCompile(`Threshold quantity: ([^,\s]+), available: (\S+?)\.(?:\s|$)`)
	containerRe = regexp.MustCompile(`Container (\S+) was using (\S+), request is (\S+), has larger consumption of ([^.\s]+)\.`)
	podRe       = regexp.MustCompile(`(?:^|\s)Pod (\S+) was using (\S+), request is (\S+), has larger consumption of ([^.\s]+)\.`)
	// quantityRe is a resource quantity of at most 20 digits and a
	// two-digit exponent: ParseQuantity takes 1e2400999999 and then
	// computes ten to that power, for minutes.
	quantityRe = regexp.MustCompile(`^[+-]?[0-9]{1,20}(\.[0-9]{1,20})?([numkMGTPE]|[KMGTPE]i|[eE][+-]?[0-9]{1,2})?$`)
)

// Message is what a kubelet eviction message says.
type Message struct {
	StarvedResource string
	ThresholdBytes  *int64
	AvailableBytes  *int64
	Containers      []event.OffendingContainer
	Pod             *event.OffendingPod // the pod fragment; nil: none
}

// Parse reads the kubelet's eviction message. Fragments it
// does not recognise are skipped; quantities it cannot read are null.
func Parse(msg string) Message {
	var m Message
	if g := nodeLowRe.FindStringSubmatch(msg); g != nil {
		m.StarvedResource = g[1]
	}
	if g := thresholdRe.FindStringSubmatch(msg); g != nil {
		m.ThresholdBytes, m.AvailableBytes = quantity(g[1]), quantity(g[2])
	}
	if g := podRe.FindStringSubmatch(msg); g != nil {
		m.Pod = &event.OffendingPod{Name: g[1], UsageBytes: quantity(g[2]), RequestBytes: quantity(g[3])}
	}
	for _, g := range containerRe.FindAllStringSubmatch(msg, -1) {
		m.Containers = append(m.Containers, event.OffendingContainer{Name: g[1], UsageBytes: quantity(g[2]), RequestBytes: quantity(g[3])})
	}
	return m
}

func quantity(s string) *int64 {
	if !quantityRe.MatchString(s) {
		return nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return nil
	}
	v, ok := q.AsInt64()
	if !ok {
		// Fractions of a byte (100m) round up, as the kubelet's own Value() does.
		v = q.Value()
	}
	return &v
}
