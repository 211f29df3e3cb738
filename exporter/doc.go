// Package exporter takes events out of the process: JSON lines or text on a
// stream behind a bounded queue that never stalls the tracer, and counters
// and gauges for Prometheus over HTTP.
package exporter
