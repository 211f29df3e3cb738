// SPDX-License-Identifier: Apache-2.0

package readme

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestShellWords(t *testing.T) {
	for _, c := range []struct {
		line string
		want []string
	}{
		{`helm install a b   --namespace x`, []string{"helm", "install", "a", "b", "--namespace", "x"}},
		// The shell drops a backslash before a dot outside quotes: Helm
		// would see a nested key.
		{`--set-string flags.a\.b=1`, []string{"--set-string", "flags.a.b=1"}},
		{`--set-string 'flags.a\.b=1'`, []string{"--set-string", `flags.a\.b=1`}},
		{`--set-string "flags.a\.b=1"`, []string{"--set-string", `flags.a.b=1`}},
		{`echo a'b c'd # comment`, []string{"echo", "ab cd"}},
		{`echo a#b`, []string{"echo", "a#b"}},
		{"echo ''", []string{"echo", ""}},
	} {
		got, err := shellWords(c.line)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q", c.line, got, err, c.want)
		}
	}
	for _, bad := range []string{`echo 'a`, `echo "a`, `echo a\`} {
		if got, err := shellWords(bad); err == nil {
			t.Errorf("shellWords(%q) = %q, want an error", bad, got)
		}
	}
}

// TestReadmeHelmCommands: the README's helm commands, as the cluster suite
// runs them, install into a namespace Helm makes and pass each flag's name
// to the chart whole (a dotted flag name escaped in quotes).
func TestReadmeHelmCommands(t *testing.T) {
	readme := filepath.Join("..", "..", "..", "README.md")
	operating := filepath.Join("..", "..", "..", "docs", "operating.md")
	install, err := Command("helm install ", readme)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(install, "--create-namespace") || !slices.Contains(install, "deploy/helm/oomtrace") {
		t.Errorf("install %q: want the chart's path and --create-namespace", install)
	}
	upgrade, err := Command("helm upgrade ", readme, operating)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(upgrade, `flags.metrics\.retention=2h`) {
		t.Errorf("upgrade %q: the flag's name must reach helm escaped", upgrade)
	}
	if _, err := Command("helm uninstall ", readme, operating); err != nil {
		t.Error(err)
	}
	if _, err := Command("helm nothing ", readme, operating); err == nil {
		t.Error("a command the docs do not have was found")
	}
	if _, err := os.Stat(filepath.Join("..", "..", "..", "deploy", "helm", "oomtrace", "Chart.yaml")); err != nil {
		t.Error(err)
	}
}
