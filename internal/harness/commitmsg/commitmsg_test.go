// SPDX-License-Identifier: Apache-2.0

// Package commitmsg tests the repository's commit-msg hook
// (.githooks/commit-msg, installed by make hooks).
package commitmsg

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommitMsgHook: the hook takes "pkg: what changed" subjects of at
// most 72 characters, counted as characters, with a blank line before
// the body, and refuses the rest.
func TestCommitMsgHook(t *testing.T) {
	hook := filepath.Join("..", "..", "..", ".githooks", "commit-msg")
	for msg, ok := range map[string]bool{
		"tracer: keep mark_victim within 5.10's verifier budget\n\nThe why.\n": true,
		"cause, exporter: the limit label\n":                                   true,
		"README: the install first\n# a comment git strips\n\nbody\n":          true,
		"docs: " + strings.Repeat("é", 66) + "\n":                              true,
		"docs: " + strings.Repeat("x", 67) + "\n":                              false,
		"fixed the thing\n":                     false,
		"tracer:no space\n":                     false,
		"tracer: a subject\nthe body at once\n": false,
		": nothing before\n":                    false,
		"fixup! tracer: anything goes\n":        true,
	} {
		f := filepath.Join(t.TempDir(), "COMMIT_EDITMSG")
		if err := os.WriteFile(f, []byte(msg), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("bash", hook, f).CombinedOutput()
		if (err == nil) != ok {
			t.Errorf("%q: accepted %v, want %v (%s)", msg, err == nil, ok, out)
		}
	}
}
