// SPDX-License-Identifier: Apache-2.0

// Package fleettest runs a real etcd and kube-apiserver as any user, on
// free ports of the loopback, and many agents' cluster views against it:
// what a fleet of oomtrace agents costs the API server (make bench-scale).
package fleettest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/oomtrace/oomtrace/internal/harness/testenv"
	"github.com/oomtrace/oomtrace/internal/harness/testpki"
)

// BinEnv names the directory holding kube-apiserver (kube-build.sh prints
// it), as for the cluster suite; EtcdEnv the etcd binary (etcd-build.sh
// prints it; default: etcd on PATH).
const (
	BinEnv  = "OOMTRACE_KUBE_BIN"
	EtcdEnv = "OOMTRACE_ETCD"
)

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	Dir string
	// URL is the API server's address; CAFile its CA.
	URL, CAFile string
	// Admin is a system:masters client (QPS 500): the fleet's scenery.
	Admin       *rest.Config
	AdminClient kubernetes.Interface

	procs *testenv.Procs
}

// Start starts etcd (EtcdEnv, else from PATH) and kube-apiserver (from
// BinEnv), and stops them when the test ends. It skips without them.
func Start(t *testing.T) *ControlPlane {
	t.Helper()
	bin := os.Getenv(BinEnv)
	if bin == "" {
		t.Skip(BinEnv + " is not set (make bench-scale builds kube-apiserver and sets it)")
	}
	etcd := os.Getenv(EtcdEnv)
	if etcd == "" {
		var err error
		if etcd, err = exec.LookPath("etcd"); err != nil {
			t.Skip("no etcd: " + EtcdEnv + " is not set and none is installed (make bench-scale builds one)")
		}
	}
	dir := t.TempDir()
	cp := &ControlPlane{Dir: dir, procs: testenv.NewProcs(dir)}
	t.Cleanup(func() { cp.stop(t) })
	ports := freePorts(t, 3)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	cp.procs.Start(t, "etcd", etcd, "--name=default", "--data-dir="+filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--initial-cluster=default=http://127.0.0.1:%d", ports[1]), "--listen-metrics-urls=")
	cp.procs.WaitFor(t, "etcd", 30*time.Second, func() error {
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(etcdURL, "http://"), time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})

	p, err := testpki.New(filepath.Join(cp.Dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	cp.URL, cp.CAFile = fmt.Sprintf("https://127.0.0.1:%d", ports[2]), p.Path("ca.crt")
	if err := p.Issue("apiserver", "kube-apiserver", nil, []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}, true); err != nil {
		t.Fatal(err)
	}
	if err := p.Issue("admin", "admin", []string{"system:masters"}, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := p.ServiceAccountKeys(); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := p.Kubeconfig("admin", cp.URL)
	if err != nil {
		t.Fatal(err)
	}
	cp.procs.Start(t, "kube-apiserver", filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		// No Service endpoints to keep: the API server is reached
		// on the loopback, which it may not advertise.
		"--bind-address=127.0.0.1", "--advertise-address=192.0.2.1", "--endpoint-reconciler-type=none", fmt.Sprintf("--secure-port=%d", ports[2]),
		"--tls-cert-file="+p.Path("apiserver.crt"), "--tls-private-key-file="+p.Path("apiserver.key"),
		"--client-ca-file="+p.Path("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.Path("sa.pub"), "--service-account-signing-key-file="+p.Path("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC", "--profiling=false")
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	cp.Admin = cfg
	cp.AdminClient = kubernetes.NewForConfigOrDie(cfg)
	cp.procs.WaitFor(t, "kube-apiserver", 2*time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := cp.AdminClient.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
	return cp
}

// Metrics is the API server's /metrics.
func (cp *ControlPlane) Metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	b, err := cp.AdminClient.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("API server /metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		return nil, fmt.Errorf("parse API server /metrics: %w", err)
	}
	return fams, nil
}

// CPUSeconds is the CPU time (user and system) the named process (etcd,
// kube-apiserver) has used, from /proc.
func (cp *ControlPlane) CPUSeconds(name string) (float64, error) {
	pid := cp.procs.Pid(name)
	if pid == 0 {
		return 0, fmt.Errorf("%s is not running", name)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// After the comm, in parentheses: fields 3 on; utime and stime are
	// the 14th and 15th.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return float64(utime+stime) / 100, nil // USER_HZ
}

// stop ends the API server before etcd, and says what each logged last
// when the test failed.
func (cp *ControlPlane) stop(t *testing.T) {
	for _, name := range []string{"kube-apiserver", "etcd"} {
		cp.procs.Stop(name)
		if t.Failed() {
			t.Logf("--- %s's log, last lines\n%s", name, testenv.Tail(cp.procs.Log(name), 30))
		}
	}
}

// freePorts are n ports of 127.0.0.1 free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
