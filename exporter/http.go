// SPDX-License-Identifier: Apache-2.0

package exporter

import (
	"container/list"
	"context"
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

// Handler serves telemetryPath from reg, and the probes of ProbeHandler.
func Handler(reg *prometheus.Registry, telemetryPath string, ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(telemetryPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:          reg,
		EnableOpenMetrics: false,
	}))
	probes := ProbeHandler(ready)
	mux.Handle("/healthz", probes)
	mux.Handle("/readyz", probes)
	if telemetryPath != "/" {
		mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			// A client that went away has nothing more to be told.
			_, _ = w.Write([]byte(`<html><head><title>oomtrace</title></head><body><h1>oomtrace</h1><p><a href="` + html.EscapeString(telemetryPath) + `">Metrics</a></p></body></html>` + "\n"))
		})
	}
	return mux
}

// ProbeHandler serves /healthz (the process is up) and /readyz (ready
// reports true: the hooks are attached and events flow), and nothing else:
// the kubelet's probes, on a listener of their own that no pod can reach.
func ProbeHandler(ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready == nil || !ready.Load() {
			http.Error(w, "hooks not attached", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
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

// NewServer is the metrics server of handler, with the limits above. A
// request's handler marks its connection busy (see LimitListener), so that
// only connections that are not being answered can be displaced.
func NewServer(handler http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{Handler: markServing(handler), ErrorLog: errorLog, ConnContext: withConn,
		ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout, WriteTimeout: WriteTimeout,
		IdleTimeout: IdleTimeout, MaxHeaderBytes: MaxHeaderBytes}
}

// LimitListener holds at most n connections of l at once. Any pod can
// reach the port, and connections that each repeat a request now and then
// would otherwise hold every slot for as long as they like. At the limit,
// a new connection takes the place of one that is not being answered (it
// has sent nothing, part of a request, or is kept alive between requests):
// of the source address that holds the most connections, the one quiet
// longest. A scraper's one connection is not displaced while another
// source holds more. Only when all n are being answered (each bounded by
// WriteTimeout) does Accept wait for one to end.
func LimitListener(l net.Listener, n int) net.Listener {
	return &limitListener{Listener: l, slots: make(chan struct{}, n), conns: list.New()}
}

type limitListener struct {
	net.Listener
	slots chan struct{}
	mu    sync.Mutex
	conns *list.List // of *limitConn, in the order accepted
}

func (l *limitListener) Accept() (net.Conn, error) {
	for !l.take() {
		if !l.displaceQuietest() {
			l.slots <- struct{}{}
			break
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	lc := &limitConn{Conn: c, l: l, source: sourceOf(c.RemoteAddr())}
	lc.touch()
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

// displaceQuietest closes the connection that quietest picks; false
// when every one is being answered.
func (l *limitListener) displaceQuietest() bool {
	l.mu.Lock()
	victim := l.quietest()
	if victim != nil {
		victim.displaced = true
	}
	l.mu.Unlock()
	if victim == nil {
		return false
	}
	victim.Close()
	return true
}

// quietest picks, of the connections not being answered, one of the source
// that holds the most connections, quiet longest; nil when there is none.
// At most n connections: the count is cheap, and it runs only at the limit.
func (l *limitListener) quietest() *limitConn {
	held := make(map[string]int, l.conns.Len())
	for e := l.conns.Front(); e != nil; e = e.Next() {
		held[e.Value.(*limitConn).source]++
	}
	var victim *limitConn
	for e := l.conns.Front(); e != nil; e = e.Next() {
		c := e.Value.(*limitConn)
		if c.serving > 0 || c.displaced {
			continue
		}
		if victim == nil || held[c.source] > held[victim.source] ||
			held[c.source] == held[victim.source] && c.lastActive.Load() < victim.lastActive.Load() {
			victim = c
		}
	}
	return victim
}

type limitConn struct {
	net.Conn
	l      *limitListener
	elem   *list.Element
	source string // the remote address without its port
	// lastActive: when it was accepted, last sent a byte or last had an
	// answer written, in Unix nanoseconds.
	lastActive atomic.Int64
	// serving counts its requests being answered; displaced: chosen to
	// be closed. Both under l.mu.
	serving   int
	displaced bool
	once      sync.Once
}

// sourceOf is addr's host: one client's connections share it, whatever
// their ports.
func sourceOf(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(addr.String()); err == nil {
		return host
	}
	return addr.String()
}

func (c *limitConn) touch() { c.lastActive.Store(time.Now().UnixNano()) }

func (c *limitConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.touch()
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

// serve marks c busy while a request on it is answered; false when c was
// chosen to be closed already (the answer then fails to write).
func (c *limitConn) serve() bool {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.displaced {
		return false
	}
	c.serving++
	return true
}

func (c *limitConn) served() {
	c.touch()
	c.l.mu.Lock()
	c.serving--
	c.l.mu.Unlock()
}

type connKey struct{}

// withConn keeps a connection's limitConn in its requests' context (below
// TLS, when the server serves TLS).
func withConn(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	if lc, ok := c.(*limitConn); ok {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
}

// markServing marks the request's connection busy while next answers it.
func markServing(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lc, ok := r.Context().Value(connKey{}).(*limitConn); ok && lc.serve() {
			defer lc.served()
		}
		next.ServeHTTP(w, r)
	})
}
