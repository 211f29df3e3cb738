// Package tracer loads oomtrace's eBPF programs, attaches the richest hooks the
// running kernel offers, and decodes what they send into event types.
package tracer
