// Package exporter takes events out of the process. Every output is a
// Sink, one method over the closed set of event types: JSON lines or text
// on a stream, the bounded Queue in front of a slow one (it never stalls
// the tracer: it drops and counts), and Metrics, the Prometheus counters of
// every event. Status reports oomtrace's own state at scrape time, and
// Handler serves both over HTTP.
package exporter
