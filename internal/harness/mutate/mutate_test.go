// SPDX-License-Identifier: Apache-2.0

package mutate

import (
	"os"
	"strings"
	"testing"
)

// TestMutantsApply: every mutant of the list parses and applies to the code
// as it is (its code occurs once), and no two share a name.
func TestMutantsApply(t *testing.T) {
	f, err := os.Open("mutants.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 12 {
		t.Fatalf("%d mutants", len(ms))
	}
	names := map[string]bool{}
	for _, m := range ms {
		if names[m.Name] {
			t.Errorf("two mutants named %q", m.Name)
		}
		names[m.Name] = true
		if m.From == m.To {
			t.Errorf("mutant %q changes nothing", m.Name)
		}
		if _, err := m.Apply("../../.."); err != nil {
			t.Error(err)
		}
	}
}

func TestParse(t *testing.T) {
	ms, err := Parse(strings.NewReader(`# a comment
=== one
file a.go
test ./a -run TestA
root
--- from
	x := 1

	y := 2
--- to
	x := 2
=== two
file b.go
test ./b
equivalent the same output
--- from
a
--- to
b
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 {
		t.Fatalf("%d mutants: %+v", len(ms), ms)
	}
	a, b := ms[0], ms[1]
	if a.Name != "one" || a.File != "a.go" || a.Package != "./a" || a.Run != "TestA" || !a.Root || a.From != "\tx := 1\n\n\ty := 2" || a.To != "\tx := 2" {
		t.Errorf("first mutant %+v", a)
	}
	if b.Name != "two" || b.Run != "" || b.Root || b.Equivalent != "the same output" || b.From != "a" || b.To != "b" || b.Line != 12 {
		t.Errorf("second mutant %+v", b)
	}
	for _, bad := range []string{"stray line\n", "=== x\nfile a.go\n--- from\na\n", "=== x\nbogus key\n"} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}
