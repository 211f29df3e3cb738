// SPDX-License-Identifier: Apache-2.0

// Package clustertest runs a real single-node Kubernetes for tests: etcd,
// kube-apiserver, kube-controller-manager (the DaemonSet and service
// account controllers), kube-scheduler and a kubelet on the tests' own
// containerd, inside a network namespace of the test's own, and tears all
// of it down by PID.
package clustertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/oomtrace/oomtrace/internal/harness/critest"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
	"github.com/oomtrace/oomtrace/internal/harness/testpki"
	"github.com/oomtrace/oomtrace/internal/nodememory"
)

// The cluster's addresses, all inside the test's network namespace.
const (
	NodeName = "oomtrace-node"
	// NodeIP is the node's address, on the namespace's loopback device:
	// the kubelet refuses a 127.x node IP.
	NodeIP = "10.99.0.2"
	// ServiceIP is the kubernetes Service's cluster IP. There is no
	// kube-proxy: the namespace's loopback device holds it and the API
	// server listens on 443, so in-cluster clients reach it unchanged.
	ServiceIP    = "10.0.0.1"
	serviceRange = "10.0.0.0/24"
	apiServer    = "https://127.0.0.1:443"
)

// Environment the tests read.
const (
	// BinEnv names the directory holding kube-apiserver, kubelet,
	// kube-controller-manager and kube-scheduler (kube-build.sh prints it).
	BinEnv = "OOMTRACE_KUBE_BIN"
	// ImageEnv and ImageArchiveEnv name oomtrace's image and the OCI
	// archive that holds it (make test-cluster exports it from make image).
	ImageEnv        = "OOMTRACE_IMAGE"
	ImageArchiveEnv = "OOMTRACE_IMAGE_ARCHIVE"
	netnsEnv        = "OOMTRACE_CLUSTER_NETNS"
)

// Main runs the tests in a network namespace of their own, where the
// cluster's ports and addresses cannot collide with the host's and nothing
// the cluster serves is reachable from outside: it re-executes the test
// binary under unshare(1) and returns its exit code. Without root it runs
// the tests as they are (they skip).
func Main(m *testing.M) int {
	memcgtest.MaybeRunHog() // the storms' processes
	if os.Getenv(netnsEnv) == "1" {
		if err := setupNetwork(); err != nil {
			fmt.Fprintf(os.Stderr, "clustertest: network namespace: %v\n", err)
			return 1
		}
		return m.Run()
	}
	if testenv.SystemdNode() {
		// The cluster's processes are systemd's units there, in the
		// node's network namespace: the guest's, which is the tests'
		// alone.
		os.Setenv(netnsEnv, "1")
		if err := setupNetwork(); err != nil {
			fmt.Fprintf(os.Stderr, "clustertest: the node's network: %v\n", err)
			return 1
		}
		return m.Run()
	}
	if os.Geteuid() != 0 {
		return m.Run()
	}
	testenv.Announce("internal/harness/clustertest (a single-node Kubernetes below this process's cgroup, in a network namespace of its own)")
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "clustertest: %v\n", err)
		return 1
	}
	cmd := exec.Command("unshare", append([]string{"--net", "--", self}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "clustertest: unshare --net: %v\n", err)
		return 1
	}
	return 0
}

func setupNetwork() error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", NodeIP + "/32", "dev", "lo"},
		{"addr", "add", ServiceIP + "/32", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// SlowdownEnv is how many times slower than this machine's host the
// cluster runs (the qemu guests emulate the CPU): every wait for the
// cluster or for oomtrace is that many times longer. It lets a slow machine
// finish; it never makes a check weaker.
const SlowdownEnv = "OOMTRACE_SLOWDOWN"

// Slowdown is SlowdownEnv: 1 unless set higher.
func Slowdown() int {
	if n, err := strconv.Atoi(os.Getenv(SlowdownEnv)); err == nil && n > 1 {
		return n
	}
	return 1
}

// Patience is timeout on this machine: times SlowdownEnv.
func Patience(timeout time.Duration) time.Duration {
	return timeout * time.Duration(Slowdown())
}

// KubeletConfig is what a scenario sets in the kubelet's configuration.
type KubeletConfig struct {
	// EvictionHard are the hard eviction thresholds (memory.available
	// etc.); disk signals are set low so that disk never evicts.
	EvictionHard map[string]string
	// EnforceNodeAllocatable: nil means the kubelet's default, [pods].
	EnforceNodeAllocatable []string
	// SystemReservedMemory is subtracted from capacity for the kubepods
	// limit (bytes; 0: none).
	SystemReservedMemory int64
	// PressureTransition is evictionPressureTransitionPeriod (default 30s).
	PressureTransition time.Duration
	// EvictionSoft are soft thresholds, each with its grace period in
	// EvictionSoftGracePeriod.
	EvictionSoft            map[string]string
	EvictionSoftGracePeriod map[string]string
	// SingleProcessOOMKill: on cgroup v2 the kubelet sets memory.oom.group
	// on every container unless this is set (on v1 it is always so).
	SingleProcessOOMKill bool
	// SwapBehavior is memorySwap.swapBehavior (LimitedSwap: Burstable
	// containers get memory.swap.max in proportion to their request);
	// empty: the kubelet's default, NoSwap.
	SwapBehavior string
	// MemoryThrottlingFactor (MemoryQoS, cgroup v2): the kubelet sets a
	// Burstable container's memory.high between its request and limit;
	// 0: unset, no memory.high.
	MemoryThrottlingFactor float64
	// MemoryReservationPolicy (MemoryQoS, cgroup v2): TieredReservation
	// sets memory.min to the request of a Guaranteed container and
	// memory.low to a Burstable one's; empty: the kubelet's None.
	MemoryReservationPolicy string
}

// Cluster is a running single-node cluster.
type Cluster struct {
	Dir     string
	Runtime *critest.Runtime
	Client  kubernetes.Interface
	Config  *rest.Config
	// KubeletDir is the kubelet's --root-dir; its configuration is
	// KubeletDir/config.yaml, where a kubeadm node has it.
	KubeletDir string
	// KubeletConfig is the configuration the kubelet runs with.
	KubeletConfig KubeletConfig
	// CgroupRoot is the kubelet's cgroupRoot, relative to each hierarchy.
	CgroupRoot string
	// BPFFS is the node's BPF filesystem for oomtrace's pinned hooks: a
	// bpffs of the cluster's own (the host's /sys/fs/bpf is not touched),
	// mounted where the DaemonSet expects the host's.
	BPFFS string

	bin     string
	pki     *testpki.PKI
	procs   *testenv.Procs
	sysctls map[string]string
	// mountedTracefs: the cluster mounted tracefs, and unmounts it.
	mountedTracefs bool
}

const tracefsDir = "/sys/kernel/tracing"

func isTracefs(dir string) bool {
	var st syscall.Statfs_t
	// TRACEFS_MAGIC
	return syscall.Statfs(dir, &st) == nil && st.Type == 0x74726163
}

// Start starts the control plane and the kubelet with cfg. It needs root,
// the kube binaries (BinEnv) and containerd; without them it skips, or fails
// under OOMTRACE_REQUIRE_PRIVILEGED=1.
func Start(t *testing.T, cfg KubeletConfig, images ...string) *Cluster {
	t.Helper()
	testenv.RequirePrivileged(t)
	bin := os.Getenv(BinEnv)
	missing := ""
	if bin == "" {
		missing = BinEnv + " is not set (make test-cluster builds the binaries and sets it)"
	} else {
		for _, b := range []string{"kube-apiserver", "kubelet", "kube-controller-manager", "kube-scheduler"} {
			if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
				missing = fmt.Sprintf("%s: %v", b, err)
			}
		}
	}
	if _, err := exec.LookPath("etcd"); err != nil && missing == "" {
		missing = "etcd not installed (make test-deps installs etcd-server)"
	}
	if os.Getenv(netnsEnv) != "1" && missing == "" {
		missing = "not in the tests' network namespace: call clustertest.Main from TestMain"
	}
	if missing != "" {
		if os.Getenv(testenv.RequireEnv) == "1" {
			t.Fatal(missing)
		}
		t.Skip(missing)
	}

	// Limit everything below the kubelet's cgroup root: no pod can cause
	// a global OOM, whatever a scenario allocates.
	rt := critest.StartWith(t, critest.Options{Images: images, EveryHierarchy: true, MemoryLimit: 4608 << 20, SocketUnderRun: true})
	c := &Cluster{
		Dir:        filepath.Join(rt.Dir(), "cluster"),
		Runtime:    rt,
		CgroupRoot: rt.CgroupRoot,
		bin:        bin,
		sysctls:    readSysctls(),
	}
	c.procs = testenv.NewProcs(c.Dir)
	c.KubeletDir = filepath.Join(c.Dir, "kubelet")
	// A node has tracefs mounted (systemd does it); the capabilities
	// variant cannot mount it itself.
	if !isTracefs(tracefsDir) {
		if err := syscall.Mount("nodev", tracefsDir, "tracefs", 0, ""); err != nil {
			t.Fatalf("mount tracefs: %v", err)
		}
		c.mountedTracefs = true
	}
	// Registered before the teardown: unmounted after every pod is gone.
	c.BPFFS = memcgtest.BPFFS(t)
	// Registered after the runtime's: runs before it (LIFO), so the
	// kubelet stops before containerd does.
	t.Cleanup(func() { c.teardown(t) })
	for _, d := range []string{c.Dir, c.KubeletDir, filepath.Join(c.Dir, "pod-logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.certificates(); err != nil {
		t.Fatalf("certificates: %v", err)
	}
	c.startControlPlane(t)
	c.StartKubelet(t, cfg)
	return c
}

func (c *Cluster) certificates() error {
	p, err := testpki.New(filepath.Join(c.Dir, "pki"))
	if err != nil {
		return err
	}
	c.pki = p
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(NodeIP), net.ParseIP(ServiceIP)}
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	for _, cert := range []struct {
		name, cn string
		orgs     []string
		server   bool
	}{
		{"apiserver", "kube-apiserver", nil, true},
		{"apiserver-kubelet", "kube-apiserver-kubelet-client", []string{"system:masters"}, false},
		{"admin", "admin", []string{"system:masters"}, false},
		{"kubelet", "system:node:" + NodeName, []string{"system:nodes"}, false},
		{"controller-manager", "system:kube-controller-manager", nil, false},
		{"scheduler", "system:kube-scheduler", nil, false},
	} {
		if err := p.Issue(cert.name, cert.cn, cert.orgs, ips, dns, cert.server); err != nil {
			return err
		}
		if !cert.server {
			if _, err := p.Kubeconfig(cert.name, apiServer); err != nil {
				return err
			}
		}
	}
	return p.ServiceAccountKeys()
}

func (c *Cluster) startControlPlane(t *testing.T) {
	t.Helper()
	etcdDir := filepath.Join(c.Dir, "etcd")
	c.procs.Start(t, "etcd", "etcd", "--name=default", "--data-dir="+etcdDir,
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=default=http://127.0.0.1:2380", "--listen-metrics-urls=")
	c.waitFor(t, "etcd", 30*time.Second, func() error {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:2379", time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
	p := c.pki.Path
	c.procs.Start(t, "kube-apiserver", filepath.Join(c.bin, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", "--secure-port=443", "--advertise-address="+NodeIP,
		"--tls-cert-file="+p("apiserver.crt"), "--tls-private-key-file="+p("apiserver.key"),
		"--client-ca-file="+p("ca.crt"),
		"--kubelet-client-certificate="+p("apiserver-kubelet.crt"), "--kubelet-client-key="+p("apiserver-kubelet.key"),
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p("sa.pub"), "--service-account-signing-key-file="+p("sa.key"),
		"--service-cluster-ip-range="+serviceRange,
		"--authorization-mode=Node,RBAC", "--allow-privileged=true", "--profiling=false")
	cfg, err := clientcmd.BuildConfigFromFlags("", p("admin.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	c.Config = cfg
	c.Client = kubernetes.NewForConfigOrDie(cfg)
	c.waitFor(t, "kube-apiserver", 90*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
	c.procs.Start(t, "kube-controller-manager", filepath.Join(c.bin, "kube-controller-manager"),
		"--kubeconfig="+p("admin.kubeconfig"), "--leader-elect=false",
		"--controllers=daemonset-controller,serviceaccount-controller,root-ca-certificate-publisher-controller,namespace-controller",
		"--root-ca-file="+p("ca.crt"), "--bind-address=127.0.0.1")
	c.procs.Start(t, "kube-scheduler", filepath.Join(c.bin, "kube-scheduler"),
		"--kubeconfig="+p("admin.kubeconfig"), "--leader-elect=false", "--bind-address=127.0.0.1")
}

// StartKubelet (re)starts the kubelet with cfg; its pods keep running
// across a restart, as on a real node.
func (c *Cluster) StartKubelet(t *testing.T, cfg KubeletConfig) {
	t.Helper()
	c.StopKubelet(t)
	if cfg.PressureTransition == 0 {
		cfg.PressureTransition = 30 * time.Second
	}
	evictionHard := map[string]string{"nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"}
	for k, v := range cfg.EvictionHard {
		evictionHard[k] = v
	}
	kc := map[string]any{
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"kind":                     "KubeletConfiguration",
		"failCgroupV1":             false,
		"failSwapOn":               false,
		"cgroupDriver":             c.CgroupDriver(),
		"cgroupRoot":               c.CgroupRoot,
		"containerRuntimeEndpoint": "unix://" + c.Runtime.Socket,
		"podLogsDir":               filepath.Join(c.Dir, "pod-logs"),
		"authentication": map[string]any{
			"x509":      map[string]any{"clientCAFile": c.pki.Path("ca.crt")},
			"webhook":   map[string]any{"enabled": false},
			"anonymous": map[string]any{"enabled": false},
		},
		"authorization":                    map[string]any{"mode": "AlwaysAllow"},
		"resolvConf":                       "",
		"readOnlyPort":                     0,
		"imageGCHighThresholdPercent":      100,
		"imageGCLowThresholdPercent":       99,
		"evictionHard":                     evictionHard,
		"evictionPressureTransitionPeriod": cfg.PressureTransition.String(),
		"nodeStatusUpdateFrequency":        "2s",
		"nodeStatusReportFrequency":        "10s",
		"syncFrequency":                    "5s",
	}
	if cfg.EnforceNodeAllocatable != nil {
		kc["enforceNodeAllocatable"] = cfg.EnforceNodeAllocatable
	}
	if cfg.SystemReservedMemory > 0 {
		kc["systemReserved"] = map[string]string{"memory": fmt.Sprint(cfg.SystemReservedMemory)}
	}
	if cfg.SingleProcessOOMKill {
		kc["singleProcessOOMKill"] = true
	}
	if cfg.SwapBehavior != "" {
		kc["memorySwap"] = map[string]string{"swapBehavior": cfg.SwapBehavior}
	}
	if cfg.MemoryThrottlingFactor > 0 {
		kc["memoryThrottlingFactor"] = cfg.MemoryThrottlingFactor
	}
	if cfg.MemoryReservationPolicy != "" {
		kc["memoryReservationPolicy"] = cfg.MemoryReservationPolicy
	}
	data, err := yaml.Marshal(kc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.KubeletDir, "config.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// Soft thresholds come from a drop-in file (--config-dir), which the
	// kubelet merges over the main file: oomtrace must read both.
	// The directory stays (a pod mounts it): only its file changes.
	soft := filepath.Join(c.KubeletConfigDir(), "50-soft.conf")
	if err := os.MkdirAll(c.KubeletConfigDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(soft); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if cfg.EvictionSoft != nil {
		dropin, err := yaml.Marshal(map[string]any{
			"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
			"evictionSoft": cfg.EvictionSoft, "evictionSoftGracePeriod": cfg.EvictionSoftGracePeriod,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(soft, dropin, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.KubeletConfig = cfg
	c.procs.Start(t, "kubelet", filepath.Join(c.bin, "kubelet"),
		"--config="+filepath.Join(c.KubeletDir, "config.yaml"), "--config-dir="+c.KubeletConfigDir(),
		"--kubeconfig="+c.pki.Path("kubelet.kubeconfig"),
		"--root-dir="+c.KubeletDir, "--hostname-override="+NodeName, "--node-ip="+NodeIP,
		"--housekeeping-interval=2s")
	c.waitFor(t, "kubelet", 90*time.Second, func() error {
		resp, err := http.Get("http://127.0.0.1:10248/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: %s", resp.Status)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		return err
	})
}

// CgroupDriver is the kubelet's and the runtime's cgroup driver: systemd
// on the systemd node, cgroupfs elsewhere.
func (c *Cluster) CgroupDriver() string {
	if c.Runtime.Systemd {
		return "systemd"
	}
	return "cgroupfs"
}

// Kubepods is the kubepods cgroup, relative to the memory hierarchy's
// root: CgroupRoot/kubepods, or /kubepods.slice with the systemd driver.
func (c *Cluster) Kubepods() string { return nodememory.KubepodsCgroup(c.CgroupRoot, c.CgroupDriver()) }

// QoSCgroup is the cgroup of a QoS class's pods (burstable, besteffort;
// guaranteed: kubepods itself), relative to the memory hierarchy's root.
func (c *Cluster) QoSCgroup(qos string) string {
	if qos == "guaranteed" || qos == "" {
		return c.Kubepods()
	}
	if c.Runtime.Systemd {
		return filepath.Join(c.Kubepods(), "kubepods-"+qos+".slice")
	}
	return filepath.Join(c.Kubepods(), qos)
}

// PodCgroup is a pod's cgroup, relative to the memory hierarchy's root.
func (c *Cluster) PodCgroup(qos, uid string) string {
	if c.Runtime.Systemd {
		prefix := "kubepods-"
		if qos != "guaranteed" && qos != "" {
			prefix += qos + "-"
		}
		return filepath.Join(c.QoSCgroup(qos), prefix+"pod"+strings.ReplaceAll(uid, "-", "_")+".slice")
	}
	return filepath.Join(c.QoSCgroup(qos), "pod"+uid)
}

// KubeletConfigDir is the kubelet's --config-dir: drop-in files merged
// over KubeletDir/config.yaml.
func (c *Cluster) KubeletConfigDir() string { return filepath.Join(c.KubeletDir, "config.d") }

// StopKubelet stops the kubelet, if it runs.
func (c *Cluster) StopKubelet(t *testing.T) {
	t.Helper()
	c.procs.Stop("kubelet")
}

// Log is the named component's log so far.
func (c *Cluster) Log(name string) string { return c.procs.Log(name) }

// KubeletGet reads a path of the kubelet's API (e.g. /stats/summary) with
// the admin's client certificate.
func (c *Cluster) KubeletGet(ctx context.Context, path string) ([]byte, error) {
	cert, err := tls.LoadX509KeyPair(c.pki.Path("admin.crt"), c.pki.Path("admin.key"))
	if err != nil {
		return nil, err
	}
	// The kubelet's serving certificate is self-signed: this test client
	// talks to a kubelet in its own network namespace only.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+NodeIP+":10250"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kubelet %s: %s: %s", path, resp.Status, b)
	}
	return b, nil
}

// Namespace creates a namespace and waits for its default service account
// (the API server admits no pod before it exists).
func (c *Cluster) Namespace(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	c.waitFor(t, "service account "+name+"/default", 60*time.Second, func() error {
		_, err := c.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// waitFor polls ready until it returns nil, or fails with what it said
// last and the component's log; timeout is this machine's (Patience).
func (c *Cluster) waitFor(t *testing.T, what string, timeout time.Duration, ready func() error) {
	t.Helper()
	c.procs.WaitFor(t, what, Patience(timeout), ready)
}

// grepLog is the lines of a component's log that mention what.
func (c *Cluster) grepLog(name, what string, n int) string {
	var out []string
	for _, l := range strings.Split(c.Log(name), "\n") {
		if strings.Contains(l, what) {
			out = append(out, l)
		}
	}
	return tail(strings.Join(out, "\n"), n)
}

var tail = testenv.Tail

// teardown stops every component, newest first, and checks the kubelet
// left the host's kernel tunables alone (restoring them if not).
func (c *Cluster) teardown(t *testing.T) {
	for _, name := range []string{"kubelet", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"} {
		c.procs.Stop(name)
	}
	// And what the scenarios started beside the cluster (the Prometheus
	// Operator and prometheus, which outlived every run before).
	c.procs.StopAll()
	c.removeLogLinks()
	if c.mountedTracefs {
		if err := syscall.Unmount(tracefsDir, 0); err != nil {
			t.Errorf("unmount tracefs: %v", err)
		}
	}
	if t.Failed() {
		t.Logf("--- the kubelet's eviction manager\n%s", c.grepLog("kubelet", "eviction_manager", 40))
		t.Logf("--- the kubelet's errors\n%s", c.grepLog("kubelet", "E"+time.Now().Format("0102")+" ", 20))
	}
	for name, was := range c.sysctls {
		if now := readSysctl(name); now != was {
			t.Errorf("sysctl %s changed from %s to %s while the cluster ran: restored", name, was, now)
			_ = os.WriteFile(sysctlPath(name), []byte(was), 0)
		}
	}
}

// removeLogLinks removes the kubelet's legacy /var/log/containers links
// to this cluster's logs (it writes them whatever podLogsDir says), and
// the directory if that leaves it empty.
func (c *Cluster) removeLogLinks() {
	const dir = "/var/log/containers"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, c.Dir) {
			_ = os.Remove(p)
		}
	}
	if left, err := os.ReadDir(dir); err == nil && len(left) == 0 {
		_ = os.Remove(dir)
	}
}

// The kernel tunables the kubelet rewrites at start unless told not to.
var watchedSysctls = []string{"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes"}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

func readSysctl(name string) string {
	b, _ := os.ReadFile(sysctlPath(name))
	return string(bytes.TrimSpace(b))
}

func readSysctls() map[string]string {
	m := map[string]string{}
	for _, n := range watchedSysctls {
		m[n] = readSysctl(n)
	}
	return m
}
