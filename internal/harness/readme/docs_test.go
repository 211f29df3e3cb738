// SPDX-License-Identifier: Apache-2.0

package readme

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const root = "../../.."

// TestFrontPage: the README is a front page an operator reads in five
// minutes: at most 300 lines, the install section within the first 80.
func TestFrontPage(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 300 {
		t.Errorf("README.md has %d lines, more than 300: move a section to a page of docs/", len(lines))
	}
	if i := slices.Index(lines, "## Install"); i < 0 || i >= 80 {
		t.Errorf("README.md's ## Install is at line %d, want it within the first 80", i+1)
	}
}

// TestDocsHangTogether: every page of docs/ is linked from the README,
// and every relative link of the README and the docs leads to a file
// that exists and, for a page, to a heading it has.
func TestDocsHangTogether(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := append([]string{filepath.Join(root, "README.md")}, pages...)
	anchors := map[string]map[string]bool{}
	links := map[string][]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		anchors[f], links[f] = parseMarkdown(string(data))
	}
	linked := map[string]bool{}
	for _, f := range files {
		for _, target := range links[f] {
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.Join(filepath.Dir(f), path)
			}
			if _, err := os.Stat(dest); err != nil {
				t.Errorf("%s links to %s: %v", rel(f), target, err)
				continue
			}
			if f == files[0] {
				linked[filepath.Clean(dest)] = true
			}
			if anchor == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			if a, ok := anchors[filepath.Clean(dest)]; ok && !a[anchor] {
				t.Errorf("%s links to %s: %s has no such heading", rel(f), target, rel(dest))
			}
		}
	}
	for _, p := range pages {
		if !linked[filepath.Clean(p)] {
			t.Errorf("README.md does not link to %s", rel(p))
		}
	}
}

var (
	headingRe = regexp.MustCompile(`^#+ (.+)$`)
	linkRe    = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
)

// parseMarkdown returns a page's heading anchors, as GitHub makes them,
// and its link targets, outside code blocks.
func parseMarkdown(s string) (map[string]bool, []string) {
	anchors := map[string]bool{}
	var links []string
	inCode := false
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
			continue
		}
		if inCode {
			continue
		}
		if m := headingRe.FindStringSubmatch(line); m != nil {
			anchors[anchor(m[1])] = true
		}
		for _, m := range linkRe.FindAllStringSubmatch(line, -1) {
			links = append(links, m[1])
		}
	}
	return anchors, links
}

// anchor is GitHub's anchor of a heading: lower case, punctuation but
// hyphens and underscores dropped, spaces as hyphens.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func rel(p string) string {
	r, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return r
}
