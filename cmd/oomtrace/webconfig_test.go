// SPDX-License-Identifier: Apache-2.0

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/oomtrace/oomtrace/exporter"
)

// webConfigFiles writes a self-signed certificate for 127.0.0.1, its key
// and a web configuration that asks for them and for one user.
func webConfigFiles(t *testing.T, user, password string) (config string, pool *x509.CertPool) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "oomtrace-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile := write("cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyFile := write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	config = write("web.yml", []byte("tls_server_config:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+"\nbasic_auth_users:\n  "+user+": "+string(hash)+"\n"))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return config, pool
}

// TestWebConfig: with --web.config.file the metrics are served over TLS to
// the user it names, and to nobody else; a bad file is a usage error.
func TestWebConfig(t *testing.T) {
	config, pool := webConfigFiles(t, "prometheus", "s3cret")
	if err := webConfigFile(config); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ready atomic.Bool
	ready.Store(true)
	srv := serveMetrics(l, "/metrics", config, &ready, slog.New(slog.NewTextHandler(io.Discard, nil)),
		exporter.NewMetrics(exporter.MetricsOptions{}), exporter.NewStatus(exporter.StatusOptions{Version: "test"}))
	defer srv.Close()
	base := "https://" + l.Addr().String()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	get := func(user, password string) (int, string) {
		req, _ := http.NewRequest("GET", base+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("scrape as %q: %v", user, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("prometheus", "s3cret"); code != 200 || !strings.Contains(body, `oomtrace_build_info{goarch=`) {
		t.Errorf("scrape with the right password: %d\n%s", code, body)
	}
	for _, c := range [][2]string{{"prometheus", "wrong"}, {"", ""}, {"other", "s3cret"}} {
		if code, _ := get(c[0], c[1]); code != http.StatusUnauthorized {
			t.Errorf("scrape as %q/%q: %d, want 401", c[0], c[1], code)
		}
	}
	// Plain HTTP is not served.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + l.Addr().String() + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served the metrics")
		}
	}

	bad := filepath.Join(t.TempDir(), "web.yml")
	os.WriteFile(bad, []byte("tls_server_config:\n  cert_file: /nonexistent.pem\n"), 0o600)
	var stderr strings.Builder
	if code := run([]string{"--web.config.file", bad}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "--web.config.file must be a valid web configuration file") {
		t.Errorf("bad config: exit %d, %q", code, stderr.String())
	}
}
