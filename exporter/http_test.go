// SPDX-License-Identifier: Apache-2.0

package exporter

import (
	"bufio"
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

	"github.com/oomtrace/oomtrace/internal/harness/testenv"
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

// floodServer serves handler through NewServer and LimitListener on a
// loopback port, as the agent does; it returns the address.
func floodServer(t *testing.T, handler http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(handler, nil)
	go srv.Serve(LimitListener(l, MaxConnections))
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// scrapeWithin scrapes /metrics at addr n times, each from its own
// connection; every one must be answered within timeout.
func scrapeWithin(t *testing.T, addr string, n int, timeout time.Duration) {
	t.Helper()
	for i := range n {
		client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatalf("scrape %d of %d: %v", i+1, n, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape %d of %d: %s", i+1, n, resp.Status)
		}
	}
}

// TestKeepAliveFlood: MaxConnections connections that each repeat GET
// /healthz and then idle hold every slot of a server that displaces only
// silent connections: Accept waits for IdleTimeout, scrapes time out, and
// the kubelet's liveness probe fails. A connection that is not being
// answered is displaceable however much it spoke: every scrape is answered
// at once, whether the tenant speaks every 50 s (as the kubelet's probe
// timeout cannot outwait) or all the time, from its own address or the
// scraper's.
func TestKeepAliveFlood(t *testing.T) {
	for _, tt := range []struct {
		name   string
		source string
		period time.Duration
	}{
		{"other source, every 50s", "127.0.0.2", 50 * time.Second},
		{"scraper's source, every 50s", "127.0.0.1", 50 * time.Second},
		{"other source, every 10ms", "127.0.0.2", 10 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ready atomic.Bool
			ready.Store(true)
			addr := floodServer(t, Handler(prometheus.NewRegistry(), "/metrics", &ready))
			dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tt.source)}, Timeout: time.Second}
			testenv.HoldConnections(t, dialer, addr, MaxConnections, tt.period)
			scrapeWithin(t, addr, 10, 2*time.Second)
		})
	}
}

// TestScrapeInFlightKept: a scrape whose answer is being written is not
// displaced by a flood of new connections that arrives meanwhile.
func TestScrapeInFlightKept(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	addr := floodServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			once.Do(func() { close(entered) })
			<-release
		}
		w.Write([]byte("ok\n"))
	}))
	got := make(chan error, 1)
	go func() {
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Get("http://" + addr + "/slow")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		got <- err
	}()
	<-entered
	flood(t, &net.Dialer{}, addr, 5*MaxConnections)
	close(release)
	if err := <-got; err != nil {
		t.Errorf("the scrape in flight during the flood: %v", err)
	}
}

// TestFloodDisplacesItsOwnSource: a flood of connections from one address
// displaces its own, not a scraper's from another address that has not sent
// its request yet (a slow network, or TLS still in its handshake).
func TestFloodDisplacesItsOwnSource(t *testing.T) {
	addr, scraper := scraperOf(t)
	flood(t, &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}, addr, 5*MaxConnections)
	if code, err := testenv.Request(scraper, bufio.NewReader(scraper), "/metrics", 2*time.Second); err != nil || code != http.StatusOK {
		t.Fatalf("the scraper's connection was displaced by another source's flood: %d %v", code, err)
	}
}

// scraperOf serves the metrics as the agent does and opens a scraper's
// connection to them, closed when the test ends.
func scraperOf(t *testing.T) (string, net.Conn) {
	t.Helper()
	addr := floodServer(t, Handler(prometheus.NewRegistry(), "/metrics", nil))
	scraper, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { scraper.Close() })
	return addr, scraper
}

// flood opens n connections to addr with dialer, closed when the test
// ends, and returns once the server has accepted the last (so every one
// has been held, displacing others); the last has sent a request.
func flood(t *testing.T, dialer *net.Dialer, addr string, n int) {
	t.Helper()
	var last net.Conn
	for range n {
		c, err := dialer.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		last = c
	}
	if _, err := testenv.Request(last, bufio.NewReader(last), "/healthz", 2*time.Second); err != nil {
		t.Fatalf("the flood's last connection: %v", err)
	}
}

// TestFloodDisplacesTheQuietest: at the limit, the connection displaced is
// the one quiet longest, not the oldest: a scraper's kept-alive connection
// that asks again and again outlives the idle ones opened after it.
func TestFloodDisplacesTheQuietest(t *testing.T) {
	addr, scraper := scraperOf(t)
	br := bufio.NewReader(scraper)
	scrape := func() error {
		_, err := testenv.Request(scraper, br, "/metrics", 2*time.Second)
		return err
	}
	if err := scrape(); err != nil {
		t.Fatal(err)
	}
	// The other slots but the one Accept keeps for the next connection,
	// opened after the scraper's and silent since.
	for range MaxConnections - 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(50 * time.Millisecond)
	if err := scrape(); err != nil { // the scraper is the latest to speak
		t.Fatal(err)
	}
	// New connections displace the idle ones, quiet longest, first.
	flood(t, &net.Dialer{}, addr, MaxConnections/2)
	if err := scrape(); err != nil {
		t.Errorf("the scraper's kept-alive connection, the latest to speak, was displaced: %v", err)
	}
}
