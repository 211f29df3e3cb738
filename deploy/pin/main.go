// SPDX-License-Identifier: Apache-2.0

// Command pin writes a release's manifests with the image named by the
// digest the release pushed, not by its tag (a tag can be moved):
// oomtrace.yaml and oomtrace-capabilities.yaml, what kubectl apply -k
// deploy/ and deploy/capabilities/ apply, and a copy of the Helm chart
// whose image.digest is set, for helm package.
//
//	go run ./deploy/pin -digest sha256:... -out bin/release
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// variants are the kustomize directories below deploy/ and the file each
// is written to.
var variants = []struct{ dir, file string }{
	{".", "oomtrace.yaml"},
	{"capabilities", "oomtrace-capabilities.yaml"},
}

func main() {
	deploy := flag.String("deploy", "deploy", "the deploy directory")
	digest := flag.String("digest", "", "the image's digest, sha256:<64 hex digits>")
	out := flag.String("out", "bin/release", "where to write the manifests and the chart (chart/oomtrace)")
	flag.Parse()
	if err := pin(*deploy, *digest, *out); err != nil {
		fmt.Fprintln(os.Stderr, "pin:", err)
		os.Exit(1)
	}
}

func pin(deploy, digest, out string) error {
	if !digestRE.MatchString(digest) {
		return fmt.Errorf("digest %q: want sha256:<64 hex digits>", digest)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := manifests(deploy, digest, out); err != nil {
		return err
	}
	return chart(filepath.Join(deploy, "helm", "oomtrace"), digest, filepath.Join(out, "chart", "oomtrace"))
}

// manifests renders each variant with the base's image entry naming the
// digest instead of the tag.
func manifests(deploy, digest, out string) error {
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(deploy, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		rel, err := filepath.Rel(deploy, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if rel == filepath.Join("base", "kustomization.yaml") {
			if data, err = replaceOnce(data, regexp.MustCompile(`(?m)^    newTag: .*$`), "    digest: "+digest); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return mem.WriteFile(filepath.Join("/deploy", rel), data)
	})
	if err != nil {
		return err
	}
	for _, v := range variants {
		res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, filepath.Join("/deploy", v.dir))
		if err != nil {
			return fmt.Errorf("kustomize %s: %w", v.dir, err)
		}
		yaml, err := res.AsYaml()
		if err != nil {
			return err
		}
		if !strings.Contains(string(yaml), "@"+digest) {
			return fmt.Errorf("kustomize %s: the image is not named by its digest", v.dir)
		}
		if err := os.WriteFile(filepath.Join(out, v.file), yaml, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// chart copies the chart with image.digest set in its values.
func chart(src, digest, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if rel == "values.yaml" {
			if data, err = replaceOnce(data, regexp.MustCompile(`(?m)^  digest: ""$`), `  digest: "`+digest+`"`); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// replaceOnce replaces the one match of re in data.
func replaceOnce(data []byte, re *regexp.Regexp, with string) ([]byte, error) {
	if n := len(re.FindAllIndex(data, -1)); n != 1 {
		return nil, errors.New("want one line " + re.String() + ", found " + fmt.Sprint(n))
	}
	return re.ReplaceAll(data, []byte(with)), nil
}
