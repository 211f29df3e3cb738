package exporter

import (
	"container/list"
	"html"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

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

// Limits of the metrics server. Its port is on the node's address
// (hostNetwork), which every pod can reach: 8,000 idle connections took a
// server without them from 9 to 166 MB. A scrape is one short request.
const (
	// MaxConnections open at once (see LimitListener).
	MaxConnections = 64
	// ReadHeaderTimeout closes a connection that sends no request.
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout, WriteTimeout: a whole request, a whole answer.
	ReadTimeout  = 10 * time.Second
	WriteTimeout = 30 * time.Second
	// IdleTimeout closes a kept-alive connection between scrapes.
	IdleTimeout = 60 * time.Second
	// MaxHeaderBytes of a request.
	MaxHeaderBytes = 16 << 10
)

// NewServer is the metrics server of handler, with the limits above.
func NewServer(handler http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{Handler: handler, ErrorLog: errorLog,
		ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout, WriteTimeout: WriteTimeout,
		IdleTimeout: IdleTimeout, MaxHeaderBytes: MaxHeaderBytes}
}

// LimitListener holds at most n connections of l at once. At the limit,
// a new connection takes the place of the oldest that has sent nothing
// yet (a flood of silent connections cannot keep a scrape out); only when
// all n are in a request does Accept wait for one to end.
func LimitListener(l net.Listener, n int) net.Listener {
	return &limitListener{Listener: l, slots: make(chan struct{}, n), conns: list.New()}
}

type limitListener struct {
	net.Listener
	slots chan struct{}
	mu    sync.Mutex
	conns *list.List // of *limitConn, oldest first
}

func (l *limitListener) Accept() (net.Conn, error) {
	for !l.take() {
		if !l.closeOldestSilent() {
			l.slots <- struct{}{}
			break
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	lc := &limitConn{Conn: c, l: l}
	l.mu.Lock()
	lc.elem = l.conns.PushBack(lc)
	l.mu.Unlock()
	return lc, nil
}

// take takes a free slot, if there is one.
func (l *limitListener) take() bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// closeOldestSilent closes the oldest connection that has sent nothing;
// false when every one has.
func (l *limitListener) closeOldestSilent() bool {
	l.mu.Lock()
	var victim *limitConn
	for e := l.conns.Front(); e != nil; e = e.Next() {
		if c := e.Value.(*limitConn); !c.spoke.Load() {
			victim = c
			break
		}
	}
	l.mu.Unlock()
	if victim == nil {
		return false
	}
	victim.Close()
	return true
}

type limitConn struct {
	net.Conn
	l     *limitListener
	elem  *list.Element
	spoke atomic.Bool // a byte was read from it
	once  sync.Once
}

func (c *limitConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.spoke.Store(true)
	}
	return n, err
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.conns.Remove(c.elem)
		c.l.mu.Unlock()
		<-c.l.slots
	})
	return err
}
