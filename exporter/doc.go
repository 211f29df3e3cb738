// Package exporter takes events out of the process. Every output has one
// method, Write, over the closed set of event types (the pipeline's Sink):
// JSON lines or text on a stream, and Metrics, the Prometheus counters of
// every event. Status reports oomtrace's own state at scrape time, and
// Handler serves both over HTTP.
package exporter
