// SPDX-License-Identifier: Apache-2.0

// Package event defines the events oomtrace reports: the vocabulary shared by
// the tracer that produces them and the exporters that write them.
package event
