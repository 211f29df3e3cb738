// SPDX-License-Identifier: Apache-2.0

// Package tracer loads oomtrace's eBPF programs, attaches the richest hooks the
// running kernel offers, pins them so that they outlive the process (a later
// process takes them over without a gap), and decodes what they send into
// event types.
package tracer
