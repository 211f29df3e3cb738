// SPDX-License-Identifier: Apache-2.0

// Package exporter counts events for Prometheus and serves oomtrace's
// metrics: Metrics, the counters of every event, is an output like the
// others (one method, Write, over the closed set of event types: the
// pipeline's Sink); Status reports oomtrace's own state at scrape time,
// and Handler serves both over HTTP. The lines on stdout are
// exporter/stream's, the Events on pods exporter/kubeevents'.
package exporter
