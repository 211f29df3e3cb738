package exporter

import (
	"html"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves telemetryPath from reg, /healthz (the process is up) and
// /readyz (ready reports true: the hooks are attached and events flow).
func Handler(reg *prometheus.Registry, telemetryPath string, ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(telemetryPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:          reg,
		EnableOpenMetrics: false,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready == nil || !ready.Load() {
			http.Error(w, "hooks not attached", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	if telemetryPath != "/" {
		mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(`<html><head><title>oomtrace</title></head><body><h1>oomtrace</h1><p><a href="` + html.EscapeString(telemetryPath) + `">Metrics</a></p></body></html>` + "\n"))
		})
	}
	return mux
}
