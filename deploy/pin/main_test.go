// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// images are the container images of the DaemonSets in a YAML stream.
func images(t *testing.T, stream []byte) []string {
	t.Helper()
	var out []string
	for _, doc := range bytes.Split(stream, []byte("\n---\n")) {
		var o struct {
			Kind string
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct{ Image string }
					}
				}
			}
		}
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatal(err)
		}
		if o.Kind == "DaemonSet" {
			for _, c := range o.Spec.Template.Spec.Containers {
				out = append(out, c.Image)
			}
		}
	}
	return out
}

// TestPin: both variants' manifests, and the chart's rendering, name the
// image by the digest; a digest of another form is refused.
func TestPin(t *testing.T) {
	out := t.TempDir()
	if err := pin("..", testDigest, out); err != nil {
		t.Fatal(err)
	}
	want := "ghcr.io/oomtrace/oomtrace@" + testDigest
	for _, f := range []string{"oomtrace.yaml", "oomtrace-capabilities.yaml"} {
		data, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if got := images(t, data); len(got) != 1 || got[0] != want {
			t.Errorf("%s: images %q, want %s", f, got, want)
		}
	}
	if helm := os.Getenv("OOMTRACE_HELM"); helm != "" {
		rendered, err := exec.Command(helm, "template", "oomtrace", filepath.Join(out, "chart", "oomtrace"), "--namespace", "oomtrace").Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := images(t, rendered); len(got) != 1 || got[0] != want {
			t.Errorf("the chart: images %q, want %s", got, want)
		}
	}
	for _, bad := range []string{"", "v0.1.0", "sha256:abc", strings.ToUpper(testDigest)} {
		if err := pin("..", bad, t.TempDir()); err == nil {
			t.Errorf("digest %q accepted", bad)
		}
	}
}
