// SPDX-License-Identifier: Apache-2.0

// Package critest runs a real containerd with runc for tests: its own
// config, state, socket and cgroup root, a locally built image, pods and
// containers created over CRI the way the kubelet creates them, and a
// teardown by PID that leaves nothing behind.
package critest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// Image is the test image's name: one static program, ctrbin.
const Image = "docker.io/oomtrace/ctrbin:test"

// Runtime is a running containerd.
type Runtime struct {
	Socket string
	CRI    runtimeapi.RuntimeServiceClient
	// CgroupRoot is the tests' kubepods parent, relative to each
	// hierarchy's root: the test's own memory cgroup and a directory of
	// this runtime's.
	CgroupRoot string
	Memcg      memcgtest.Hierarchy
	// Systemd says the runtime uses the systemd cgroup driver (the
	// systemd node): systemd creates the pods' cgroups, below
	// /kubepods.slice, and CgroupRoot is the root.
	Systemd bool
	// RunDir is what a pod should mount as the host's /run (with
	// Options.SocketUnderRun the socket is below it).
	RunDir string

	dir       string
	cmd       *exec.Cmd
	conn      *grpc.ClientConn
	sandboxes []string
	// created lists, per cgroup hierarchy mount, the first directory on
	// the path to CgroupRoot that did not exist before: teardown removes
	// it and everything below, and nothing else.
	created []string
}

// Options shape a runtime beyond the defaults.
type Options struct {
	// Images are more OCI image archives to import (each must name its
	// image in the io.containerd.image.name annotation).
	Images []string
	// EveryHierarchy creates CgroupRoot in every cgroup hierarchy before
	// containerd starts, copying cpuset.cpus and cpuset.mems down: the
	// kubelet exits unless its cgroupRoot exists in all of them.
	EveryHierarchy bool
	// MemoryLimit limits CgroupRoot in the memory hierarchy (bytes; 0:
	// none), so that nothing below it can cause a global OOM.
	MemoryLimit int64
	// SocketUnderRun puts the socket where a node has it, below RunDir:
	// RunDir/containerd/containerd.sock, for a pod that mounts RunDir as
	// the host's /run.
	SocketUnderRun bool
}

// Start installs nothing: it needs containerd, runc and ctr on PATH (the
// Makefile's test-deps installs them) and root. Without them the test skips,
// or fails when OOMTRACE_REQUIRE_PRIVILEGED=1.
func Start(t *testing.T) *Runtime {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t *testing.T, o Options) *Runtime {
	t.Helper()
	testenv.RequirePrivileged(t)
	if os.Getenv("OOMTRACE_GUEST") == "1" {
		// The qemu guests test the kernel hooks on other kernels; the
		// host suite runs (and requires) the real runtime.
		t.Skip("no container runtime in the qemu guest: the host suite runs the containerd tests")
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv(testenv.RequireEnv) == "1" {
				t.Fatalf("%s not installed (make test-deps installs it)", bin)
			}
			t.Skipf("%s not installed (make test-deps installs it)", bin)
		}
	}
	h, err := memcgtest.Detect()
	if err != nil {
		t.Fatalf("detect memory cgroup: %v", err)
	}
	dir, err := os.MkdirTemp("", "oomtrace-cri-")
	if err != nil {
		t.Fatal(err)
	}
	r := &Runtime{
		dir:        dir,
		Socket:     filepath.Join(dir, "containerd.sock"),
		RunDir:     filepath.Join(dir, "run"),
		CgroupRoot: filepath.Join(h.Self, filepath.Base(dir)),
		Memcg:      h,
		Systemd:    testenv.SystemdNode(),
	}
	if r.Systemd {
		// systemd's slices hang from the root; a node whose pods
		// outgrow it is the guest's alone.
		r.CgroupRoot = "/"
		o.EveryHierarchy, o.MemoryLimit = false, 0
	}
	if o.SocketUnderRun {
		r.Socket = filepath.Join(r.RunDir, "containerd", "containerd.sock")
		must(t, os.MkdirAll(filepath.Dir(r.Socket), 0o755))
	}
	t.Cleanup(func() { r.teardown(t) })
	if !r.Systemd {
		r.recordCgroups(t)
	}
	if o.EveryHierarchy {
		r.makeCgroupRoot(t)
	}
	if o.MemoryLimit > 0 {
		dir := filepath.Join(h.Root, r.CgroupRoot)
		must(t, os.MkdirAll(dir, 0o755))
		limitFile := "memory.max"
		if h.V1 {
			limitFile = "memory.limit_in_bytes"
		}
		must(t, os.WriteFile(filepath.Join(dir, limitFile), []byte(fmt.Sprint(o.MemoryLimit)), 0))
	}

	image := r.buildImage(t)
	r.writeConfig(t)
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	argv := testenv.AsUnit("containerd", "containerd", "--config", filepath.Join(dir, "config.toml"))
	r.cmd = exec.Command(argv[0], argv[1:]...)
	r.cmd.Stdout, r.cmd.Stderr = log, log
	// Its own process group: a test interrupted with ^C does not signal
	// it first, the teardown stops it.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	r.conn, err = grpc.NewClient("unix://"+r.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	r.CRI = runtimeapi.NewRuntimeServiceClient(r.conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := r.CRI.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s: %v\n%s", r.Socket, err, r.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, archive := range append([]string{image}, o.Images...) {
		out, err := exec.Command("ctr", "--address", r.Socket, "-n", "k8s.io", "images", "import", "--all-platforms", archive).CombinedOutput()
		if err != nil {
			t.Fatalf("import image %s: %v\n%s", archive, err, out)
		}
	}
	return r
}

// podsDir is the directory of every pod's cgroup in the memory hierarchy:
// the cgroupfs driver's CgroupRoot, the systemd driver's kubepods.slice.
func (r *Runtime) podsDir() string {
	if r.Systemd {
		return filepath.Join(r.Memcg.Root, "kubepods.slice")
	}
	return filepath.Join(r.Memcg.Root, r.CgroupRoot)
}

// Dir is the runtime's private directory (config, state, logs); it is
// removed at teardown.
func (r *Runtime) Dir() string { return r.dir }

// makeCgroupRoot creates CgroupRoot in every cgroup hierarchy. A new
// cpuset cgroup has no CPUs and no memory nodes until they are written:
// each level gets its parent's.
func (r *Runtime) makeCgroupRoot(t *testing.T) {
	for _, mnt := range cgroupMounts(t) {
		dir := mnt
		for _, part := range strings.Split(strings.Trim(r.CgroupRoot, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if _, err := os.Stat(dir); err == nil {
				continue
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatalf("create cgroup %s: %v", dir, err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
					if err := os.WriteFile(filepath.Join(dir, f), b, 0); err != nil {
						t.Fatalf("cgroup %s: write %s: %v", dir, f, err)
					}
				}
			}
		}
	}
}

// Kill kills containerd by its PID, as a crash would: the shims and the
// containers they run live on.
func (r *Runtime) Kill(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill containerd: %v", err)
	}
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Log is containerd's log so far.
func (r *Runtime) Log() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "containerd.log"))
	return string(b)
}

func (r *Runtime) writeConfig(t *testing.T) {
	for _, d := range []string{"cni/bin", "cni/conf", "root", "state", "runc", "logs"} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// containerd 1.6, config version 2. restrict_oom_score_adj: root here
	// lacks CAP_SYS_RESOURCE, and the pause container's -998 would make
	// runc fail; the cgroupfs driver, but on the systemd node (runc asks systemd
	// for the cgroups there, as on the nodes users run).
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  systemd_cgroup = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = %[9]t
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
`, filepath.Join(r.dir, "root"), filepath.Join(r.dir, "state"), r.Socket, r.Socket+".ttrpc", Image,
		filepath.Join(r.dir, "runc"), filepath.Join(r.dir, "cni/bin"), filepath.Join(r.dir, "cni/conf"), r.Systemd)
	if err := os.WriteFile(filepath.Join(r.dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// CtrbinEnv names a ctrbin built beforehand, for machines without a Go
// toolchain (the qemu guests): BuildCtrbin returns it instead of building.
const CtrbinEnv = "OOMTRACE_CTRBIN"

// BuildCtrbin builds ctrbin, the test image's static program, into dir and
// returns its path.
func BuildCtrbin(t testing.TB, dir string) string {
	if prebuilt := os.Getenv(CtrbinEnv); prebuilt != "" {
		if _, err := os.Stat(prebuilt); err != nil {
			t.Fatalf("%s: %v", CtrbinEnv, err)
		}
		return prebuilt
	}
	bin := filepath.Join(dir, "ctrbin")
	// The test binary runs on the machine that built it: its Go is there.
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go") //nolint:staticcheck // SA1019: see above
	build := exec.Command(gobin, "build", "-trimpath", "-o", bin, "github.com/oomtrace/oomtrace/internal/harness/critest/ctrbin")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ctrbin: %v\n%s", err, out)
	}
	return bin
}

// buildImage builds ctrbin statically and writes a one-layer OCI image
// archive holding it, named Image.
func (r *Runtime) buildImage(t *testing.T) string {
	bin := BuildCtrbin(t, r.dir)
	prog, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	must(t, tw.WriteHeader(&tar.Header{Name: "ctrbin", Mode: 0o755, Size: int64(len(prog)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}))
	_, err = tw.Write(prog)
	must(t, err)
	must(t, tw.Close())

	blobs := map[string][]byte{}
	add := func(b []byte) (string, int) {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return d, len(b)
	}
	layerDigest, layerSize := add(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/ctrbin"}, "Cmd": []string{"pause"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	configDigest, configSize := add(config)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": configSize},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": layerSize}},
	})
	manifestDigest, manifestSize := add(manifest)
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifestDigest, "size": manifestSize,
			"platform":    map[string]string{"architecture": runtime.GOARCH, "os": "linux"},
			"annotations": map[string]string{"io.containerd.image.name": Image, "org.opencontainers.image.ref.name": "test"},
		}},
	})

	archive := filepath.Join(r.dir, "image.tar")
	f, err := os.Create(archive)
	must(t, err)
	defer f.Close()
	aw := tar.NewWriter(f)
	file := func(name string, b []byte) {
		must(t, aw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}))
		_, err := aw.Write(b)
		must(t, err)
	}
	file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	file("index.json", index)
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		file("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d])
	}
	must(t, aw.Close())
	return archive
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Pod is a pod sandbox created the way the kubelet creates one.
type Pod struct {
	ID, UID, Name, Namespace string
	// CgroupParent is the pod cgroup, relative to each hierarchy's root.
	CgroupParent string
	r            *Runtime
}

// PodCgroupDir is the pod's cgroup directory in the memory hierarchy.
func (p *Pod) PodCgroupDir() string { return filepath.Join(p.r.Memcg.Root, p.CgroupParent) }

// NewPodUID is a fresh pod uid.
func NewPodUID() string {
	var b [16]byte
	f, _ := os.Open("/dev/urandom")
	_, _ = f.Read(b[:])
	f.Close()
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// PodOptions shape a pod.
type PodOptions struct {
	Name, Namespace string
	QoS             string // burstable (default), besteffort or guaranteed: the cgroupfs parent
	// MemoryLimit limits the pod cgroup before the sandbox starts, as the
	// kubelet does for pods whose containers all have limits. 0: none.
	MemoryLimit int64
	Labels      map[string]string
}

// RunPod creates a pod cgroup and sandbox with the kubelet's labels.
func (r *Runtime) RunPod(t *testing.T, o PodOptions) *Pod {
	t.Helper()
	uid := NewPodUID()
	if r.Systemd {
		t.Fatal("RunPod makes cgroupfs parents: the systemd node's pods are the kubelet's")
	}
	parent := filepath.Join(r.CgroupRoot, "kubepods")
	switch o.QoS {
	case "", "burstable":
		parent = filepath.Join(parent, "burstable")
	case "besteffort":
		parent = filepath.Join(parent, "besteffort")
	case "guaranteed":
	default:
		t.Fatalf("qos %q", o.QoS)
	}
	p := &Pod{UID: uid, Name: o.Name, Namespace: o.Namespace, CgroupParent: filepath.Join(parent, "pod"+uid), r: r}
	if o.MemoryLimit > 0 {
		dir := p.PodCgroupDir()
		must(t, os.MkdirAll(dir, 0o755))
		limitFile := "memory.max"
		if r.Memcg.V1 {
			limitFile = "memory.limit_in_bytes"
			_ = os.WriteFile(filepath.Join(dir, "memory.swappiness"), []byte("0"), 0)
		} else {
			_ = os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0)
		}
		must(t, os.WriteFile(filepath.Join(dir, limitFile), []byte(fmt.Sprint(o.MemoryLimit)), 0))
	}
	labels := map[string]string{
		"io.kubernetes.pod.name": o.Name, "io.kubernetes.pod.namespace": o.Namespace, "io.kubernetes.pod.uid": uid,
	}
	for k, v := range o.Labels {
		labels[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := r.CRI.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: o.Name, Namespace: o.Namespace, Uid: uid},
		Labels:       labels,
		LogDirectory: filepath.Join(r.dir, "logs", uid),
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: p.CgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				// Host network and IPC: no CNI, no /dev/shm mount.
				Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER,
			}},
		},
	}})
	if err != nil {
		t.Fatalf("RunPodSandbox %s/%s: %v\n%s", o.Namespace, o.Name, err, r.Log())
	}
	p.ID = resp.PodSandboxId
	r.sandboxes = append(r.sandboxes, p.ID)
	return p
}

// ContainerOptions shape a container.
type ContainerOptions struct {
	Name        string
	Args        []string // ctrbin's arguments
	MemoryLimit int64    // 0: none of its own
	OOMScoreAdj int64
}

// StartContainer creates and starts a container in the pod with the
// kubelet's labels, and returns its id.
func (p *Pod) StartContainer(t *testing.T, o ContainerOptions) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sandboxCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: p.Name, Namespace: p.Namespace, Uid: p.UID},
		LogDirectory: filepath.Join(p.r.dir, "logs", p.UID),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: p.CgroupParent},
	}
	resp, err := p.r.CRI.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: p.ID,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: o.Name},
			Image:    &runtimeapi.ImageSpec{Image: Image},
			Command:  []string{"/ctrbin"},
			Args:     o.Args,
			Labels: map[string]string{
				"io.kubernetes.container.name": o.Name, "io.kubernetes.pod.name": p.Name,
				"io.kubernetes.pod.namespace": p.Namespace, "io.kubernetes.pod.uid": p.UID,
			},
			LogPath: o.Name + ".log",
			Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
				MemoryLimitInBytes: o.MemoryLimit, OomScoreAdj: o.OOMScoreAdj,
			}},
		},
		SandboxConfig: sandboxCfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", o.Name, err)
	}
	if _, err := p.r.CRI.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatalf("StartContainer %s: %v\n%s", o.Name, err, p.r.Log())
	}
	return resp.ContainerId
}

// WaitExited waits for a container to exit and returns its status.
func (r *Runtime) WaitExited(t *testing.T, id string, timeout time.Duration) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := r.CRI.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		cancel()
		if err == nil && st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			return st.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s did not exit in %v (%v)", id, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Remove stops and removes the pod's sandbox and containers, the way
// the kubelet removes a deleted pod.
func (p *Pod) Remove(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.r.CRI.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.ID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := p.r.CRI.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.ID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
}

// recordCgroups notes, in every cgroup hierarchy, the first directory on
// the way to CgroupRoot that runc will create.
func (r *Runtime) recordCgroups(t *testing.T) {
	for _, mnt := range cgroupMounts(t) {
		dir := mnt
		for _, part := range strings.Split(strings.Trim(r.CgroupRoot, "/"), "/") {
			dir = filepath.Join(dir, part)
			if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
				r.created = append(r.created, dir)
				break
			}
		}
	}
}

func cgroupMounts(t *testing.T) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, pf := strings.Fields(pre), strings.Fields(post)
		if len(f) >= 5 && len(pf) >= 1 && (pf[0] == "cgroup" || pf[0] == "cgroup2") && f[3] == "/" {
			mounts = append(mounts, f[4])
		}
	}
	return mounts
}

// teardown removes pods over CRI, stops containerd and its shims by PID,
// kills anything left in the test's cgroups, unmounts what it mounted and
// removes the cgroups and directories it created.
func (r *Runtime) teardown(t *testing.T) {
	if r.CRI != nil && r.cmd != nil && r.cmd.Process != nil {
		// Every sandbox, also those a kubelet created on this runtime.
		ids := r.sandboxes
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if list, err := r.CRI.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			ids = nil
			for _, s := range list.Items {
				ids = append(ids, s.Id)
			}
		}
		cancel()
		for _, id := range ids {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _ = r.CRI.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			_, _ = r.CRI.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
			cancel()
		}
	}
	if r.conn != nil {
		r.conn.Close()
	}
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = r.cmd.Process.Kill()
			<-done
		}
	}
	// Shims outlive containerd: kill the ones serving this socket, and
	// remove their sockets (a shim stopped by containerd removes its own).
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) || !bytes.Contains(b, []byte(r.Socket)) {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if sock := shimSocket(r.Socket, strings.Split(string(b), "\x00")); sock != "" {
			_ = os.Remove(sock)
		}
	}
	// Anything still in the test's cgroups (containers of a crashed run).
	for i := 0; i < 50; i++ {
		left := 0
		_ = filepath.WalkDir(r.podsDir(), func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				var pid int
				if _, err := fmt.Sscanf(f, "%d", &pid); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					left++
				}
			}
			return nil
		})
		if left == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.unmountUnder()
	for _, top := range r.created {
		removeCgroupTree(t, top)
	}
	// The memory hierarchy's root of this runtime is below the test's own
	// cgroup: it existed nowhere before.
	if !r.Systemd { // systemd removes its slices
		removeCgroupTree(t, filepath.Join(r.Memcg.Root, r.CgroupRoot))
	}
	// containerd 1.6 always creates /run/containerd/s for shim sockets.
	_ = os.Remove("/run/containerd/s")
	_ = os.Remove("/run/containerd")
	if err := os.RemoveAll(r.dir); err != nil {
		t.Errorf("remove %s: %v", r.dir, err)
	}
}

// shimSocket is where containerd 1.6's runc v2 shim listens:
// /run/containerd/s/<sha256 of containerd's address/namespace/id>.
func shimSocket(address string, args []string) string {
	var ns, id string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-namespace":
			ns = args[i+1]
		case "-id":
			id = args[i+1]
		}
	}
	if ns == "" || id == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(filepath.Join(address, ns, id)))
	return filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:]))
}

func (r *Runtime) unmountUnder() {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.HasPrefix(f[4], r.dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	// Deepest first.
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// removeCgroupTree removes a cgroup directory and its children, deepest
// first, retrying while their last tasks exit.
func removeCgroupTree(t *testing.T, top string) {
	if _, err := os.Stat(top); err != nil {
		return
	}
	var dirs []string
	_ = filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		var err error
		for i := 0; i < 50; i++ {
			if err = os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("remove cgroup %s: %v", d, err)
		}
	}
}
