// Package exporter writes events out of the process: JSON lines or text on a
// stream.
package exporter
