// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testHelm3WebConfig: the README's helm install with Helm 3 into a
// namespace that does not exist (the chart leaves the Namespace to
// --create-namespace: Helm 3 refuses a chart that renders it again),
// with webConfig naming a Secret of TLS and basic auth: the metrics port
// refuses a scrape over plain HTTP and one without the password, and
// answers the one with it; the kubelet's probes, on their own plain
// port, keep the pod Ready. Then the README's helm uninstall detaches the
// hooks.
func testHelm3WebConfig(t *testing.T, c *Cluster, image string) {
	ctx := context.Background()
	c.waitFor(t, "namespace oomtrace deleted", Patience(2*time.Minute), func() error {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, "oomtrace", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			err = os.ErrExist
		}
		return err
	})
	o := c.HelmInstall(t, HelmBinary(t, Helm3Env), image, "webConfig.secretName=oomtrace-web")
	const user, password = "prometheus", "s3cret"
	secret := c.webConfigSecret(t, user, password)
	if _, err := c.Client.CoreV1().Secrets("oomtrace").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the web config's Secret: %v", err)
	}
	o.WaitReady(t)
	if !strings.Contains(strings.Join(o.Pod.Spec.Containers[0].Args, " "), "--web.config.file=/etc/oomtrace/web/web-config.yml") {
		t.Fatalf("args %q: no --web.config.file", o.Pod.Spec.Containers[0].Args)
	}

	ca, err := os.ReadFile(c.pki.Path("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	scrape := func(scheme, user, password string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, scheme+"://"+net.JoinHostPort(NodeIP, "9808")+"/metrics", nil)
		if err != nil {
			return 0, "", err
		}
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	if code, body, err := scrape("https", user, password); err != nil || code != http.StatusOK || !strings.Contains(body, "oomtrace_build_info") {
		t.Errorf("scrape with the password: %d %v\n%.300s", code, err, body)
	}
	for _, c := range []struct{ scheme, user, password string }{{"https", "", ""}, {"https", user, "wrong"}, {"http", user, password}} {
		if code, _, err := scrape(c.scheme, c.user, c.password); err == nil && code == http.StatusOK {
			t.Errorf("scrape over %s as %q/%q answered: want it refused", c.scheme, c.user, c.password)
		} else {
			t.Logf("scrape over %s as %q/%q refused: %d %v", c.scheme, c.user, c.password, code, err)
		}
	}
	testUninstall(t, c, o, o.HelmUninstall)
}

// webConfigSecret is the Secret the chart's webConfig.secretName names:
// web-config.yml asking for TLS (a certificate for the node's address,
// signed by the cluster's CA) and for one user, and the files it names.
func (c *Cluster) webConfigSecret(t *testing.T, user, password string) *corev1.Secret {
	t.Helper()
	if err := c.pki.Issue("oomtrace-web", "oomtrace", nil, []net.IP{net.ParseIP(NodeIP), net.ParseIP("127.0.0.1")}, nil, true); err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(c.pki.Path(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "oomtrace-web", Namespace: "oomtrace"},
		Data: map[string][]byte{
			"web-config.yml": []byte("tls_server_config:\n  cert_file: /etc/oomtrace/web/tls.crt\n  key_file: /etc/oomtrace/web/tls.key\nbasic_auth_users:\n  " + user + ": " + string(hash) + "\n"),
			"tls.crt":        read("oomtrace-web.crt"),
			"tls.key":        read("oomtrace-web.key"),
		},
	}
}
