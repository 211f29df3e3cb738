// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/oomtrace/oomtrace/internal/harness/readme"
)

// HelmEnv names the helm binary (Helm 4) the suite installs the chart
// with (make helm builds it into bin/); Helm3Env a Helm 3 (make helm3).
const (
	HelmEnv  = "OOMTRACE_HELM"
	Helm3Env = "OOMTRACE_HELM3"
)

// HelmBinary is the helm binary named by env, or the test fails.
func HelmBinary(t *testing.T, env string) string {
	t.Helper()
	helm := os.Getenv(env)
	if helm == "" {
		t.Fatalf("%s is not set: make test-cluster, test-cluster-systemd and test-cluster-v2 set it to the helm they build", env)
	}
	return helm
}

// repoRoot is the repository's root from the suite's directory, where the
// README and deploy/ are (the guest's copy keeps the same layout).
const repoRoot = "../../.."

// ReadmeCommand is the docs' first one-line command that starts with
// prefix, as words: the README's (install) or docs/operating.md's
// (upgrade, uninstall).
func ReadmeCommand(prefix string) ([]string, error) {
	return readme.Command(prefix, filepath.Join(repoRoot, "README.md"), filepath.Join(repoRoot, "docs", "operating.md"))
}

// Helm runs a helm binary against the cluster, in the repository's root
// (the README's commands name the chart by its path there).
func (c *Cluster) Helm(t *testing.T, helm string, args ...string) string {
	t.Helper()
	cmd := exec.Command(helm, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.pki.Path("admin.kubeconfig"), "HELM_CACHE_HOME="+filepath.Join(c.Dir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(c.Dir, "helm", "config"), "HELM_DATA_HOME="+filepath.Join(c.Dir, "helm", "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(helm), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// nodeValues writes a values file with what this node has where others
// have the usual paths (the kubelet's config and drop-ins, containerd's
// /run, the BPF filesystem) and the image under test: what an operator of
// such a node passes to helm with -f.
func (c *Cluster) nodeValues(t *testing.T, image string) string {
	t.Helper()
	name, tag := image, "latest"
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		name, tag = image[:i], image[i+1:]
	}
	values := fmt.Sprintf(`image: {repository: %q, tag: %q}
kubeletConfig: %q
kubeletConfigDir: %q
runtimeRunDir: %q
pinPath: %q
`, name, tag, filepath.Join(c.KubeletDir, "config.yaml"), c.KubeletConfigDir(), filepath.Join(c.Runtime.RunDir, "containerd"),
		filepath.Join(c.BPFFS, "oomtrace"))
	path := filepath.Join(t.TempDir(), "node-values.yaml")
	if err := os.WriteFile(path, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// HelmInstall installs the chart with helm and the README's command, into
// a namespace that does not exist yet, as on a fresh cluster, with this
// node's values file and set (--set flags); it returns at once: the
// DaemonSet's pod is Ready after WaitReady.
func (c *Cluster) HelmInstall(t *testing.T, helm, image string, set ...string) *Oomtrace {
	t.Helper()
	words, err := ReadmeCommand("helm install ")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(context.Background(), "oomtrace", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace oomtrace before the install: %v (want it not found: the README's command must make it)", err)
	}
	t.Logf("the README's %q", strings.Join(words, " "))
	args := append(words[1:], "-f", c.nodeValues(t, image))
	for _, s := range set {
		args = append(args, "--set", s)
	}
	t.Logf("%s install:\n%s", filepath.Base(helm), c.Helm(t, helm, args...))
	return &Oomtrace{c: c, helm: helm}
}

// WaitReady waits for the DaemonSet's pod on the node to be Ready.
func (o *Oomtrace) WaitReady(t *testing.T) {
	t.Helper()
	o.waitReady(t, "")
}

// HelmUpgrade runs helm with args (an upgrade of the release) and waits
// for the DaemonSet's new pod to be Ready: the upgrade must change its
// template.
func (o *Oomtrace) HelmUpgrade(t *testing.T, args ...string) {
	t.Helper()
	old := o.Pod.Name
	ds, err := o.c.Client.AppsV1().DaemonSets("oomtrace").Get(context.Background(), "oomtrace", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o.c.Helm(t, o.helm, args...)
	after, err := o.c.Client.AppsV1().DaemonSets("oomtrace").Get(context.Background(), "oomtrace", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation == ds.Generation {
		t.Fatalf("helm %s left the DaemonSet as it was (generation %d)", strings.Join(args, " "), ds.Generation)
	}
	o.waitReady(t, old)
}

// HelmUninstall runs the README's helm uninstall command with the helm
// that installed the release; helm must then list no release.
func (o *Oomtrace) HelmUninstall(t *testing.T) {
	t.Helper()
	words, err := ReadmeCommand("helm uninstall ")
	if err != nil {
		t.Fatal(err)
	}
	o.c.Helm(t, o.helm, words[1:]...)
	if out := o.c.Helm(t, o.helm, "list", "--namespace", "oomtrace", "--short"); strings.TrimSpace(out) != "" {
		t.Fatalf("helm list after the uninstall: %s", out)
	}
}
