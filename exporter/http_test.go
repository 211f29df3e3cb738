package exporter

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestConnectionFlood: 500 connections that send nothing, as any pod can
// open to the node's metrics port. The server holds at most
// MaxConnections of them at once, closes each after ReadHeaderTimeout, and
// a scrape made during the flood is answered at once: a new connection
// takes the place of the oldest silent one.
func TestConnectionFlood(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ready atomic.Bool
	ready.Store(true)
	srv := NewServer(Handler(prometheus.NewRegistry(), "/metrics", &ready), nil)
	ll := LimitListener(l, MaxConnections).(*limitListener)
	var mu sync.Mutex
	most := 0
	srv.ConnState = func(_ net.Conn, s http.ConnState) {
		if s != http.StateNew {
			return
		}
		ll.mu.Lock()
		held := ll.conns.Len()
		ll.mu.Unlock()
		mu.Lock()
		most = max(most, held)
		mu.Unlock()
	}
	go srv.Serve(ll)
	defer srv.Close()

	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range 500 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		flood = append(flood, c)
	}
	client := &http.Client{Timeout: ReadHeaderTimeout}
	resp, err := client.Get("http://" + l.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("a scrape during the flood: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	// The first connections were closed for the newer ones.
	flood[0].SetReadDeadline(time.Now().Add(ReadHeaderTimeout * 2))
	if _, err := flood[0].Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the oldest silent connection is still open: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if most > MaxConnections {
		t.Errorf("%d connections open at once, want at most %d", most, MaxConnections)
	}
	t.Logf("at most %d connections open at once", most)
}
