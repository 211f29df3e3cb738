// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// HoldConnections opens n kept-alive connections to addr with dialer, each
// repeating GET /healthz every period and reconnecting when the server
// closes it, until the test ends: what any pod can do to a port on the
// node's address. It returns once every connection has had its first
// answer; each connection's failures are its own (it reconnects), not the
// test's.
func HoldConnections(t testing.TB, dialer *net.Dialer, addr string, n int, period time.Duration) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); wg.Wait() })
	var first sync.WaitGroup
	for range n {
		wg.Add(1)
		first.Add(1)
		go func() {
			defer wg.Done()
			answered := sync.OnceFunc(first.Done)
			defer answered()
			for {
				if !repeatRequests(dialer, addr, period, done, answered) {
					return
				}
			}
		}()
	}
	first.Wait()
}

// repeatRequests sends GET /healthz on one connection every period until
// the server closes it (true: dial again) or done (false).
func repeatRequests(dialer *net.Dialer, addr string, period time.Duration, done <-chan struct{}, answered func()) bool {
	c, err := dialer.Dial("tcp", addr)
	if err != nil {
		select {
		case <-done:
			return false
		case <-time.After(100 * time.Millisecond):
			return true
		}
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		if _, err := Request(c, br, "/healthz", period+10*time.Second); err != nil {
			return true
		}
		answered()
		select {
		case <-done:
			return false
		case <-time.After(period):
		}
	}
}

// Request sends GET path on c, a kept-alive HTTP/1.1 connection read
// through br, and reads the whole answer, within timeout; it returns the
// answer's status code.
func Request(c net.Conn, br *bufio.Reader, path string, timeout time.Duration) (int, error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: oomtrace\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}
