// SPDX-License-Identifier: Apache-2.0

// Package mutate runs named mutants: small, realistic edits of oomtrace's
// code (mutants.txt), each built with go test -overlay so that the tree is
// never touched, against the tests that claim the behaviour. A mutant the
// tests fail on is killed; one they pass on survives, which is a test to
// write unless the mutant is reviewed as equivalent (its "equivalent"
// line says why). make mutate runs them all; TestMutantsApply, in make
// test, keeps every mutant applying to the code as it is.
package mutate

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Mutant is one named edit and the tests that must catch it.
type Mutant struct {
	Name string
	// File is relative to the module's root; From occurs in it exactly
	// once and is replaced by To.
	File     string
	From, To string
	// Package and Run are what go test runs (a package pattern and a -run
	// regexp; empty: every test of the package).
	Package, Run string
	// Root: the tests need root (real kernel objects); without root the
	// mutant is not run.
	Root bool
	// Equivalent, when not empty, is why the mutant is accepted to
	// survive: it changes nothing a user can see.
	Equivalent string
	Line       int // where it starts in the list
}

// Parse reads a list of mutants:
//
//	=== name
//	file internal/pipeline/pipeline.go
//	test ./internal/pipeline -run Ack
//	root                                  (optional)
//	equivalent why it changes nothing     (optional)
//	--- from
//	<lines, verbatim>
//	--- to
//	<lines, verbatim>
//
// Lines starting with # outside a block's code are comments; the code of
// from and to ends at the next marker, its trailing blank lines dropped.
func Parse(r io.Reader) ([]Mutant, error) {
	var (
		ms   []Mutant
		cur  *Mutant
		code *strings.Builder // the from or to being read
		n    int
	)
	end := func() error {
		if cur == nil {
			return nil
		}
		if cur.File == "" || cur.Package == "" || cur.From == "" {
			return fmt.Errorf("line %d: mutant %q needs file, test and from", cur.Line, cur.Name)
		}
		cur.From = strings.TrimRight(cur.From, "\n")
		cur.To = strings.TrimRight(cur.To, "\n")
		ms = append(ms, *cur)
		return nil
	}
	var from, to strings.Builder
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "=== "):
			if cur != nil {
				cur.From, cur.To = from.String(), to.String()
			}
			if err := end(); err != nil {
				return nil, err
			}
			cur, code = &Mutant{Name: strings.TrimSpace(line[4:]), Line: n}, nil
			from.Reset()
			to.Reset()
		case cur != nil && line == "--- from":
			code = &from
		case cur != nil && line == "--- to":
			code = &to
		case code != nil:
			code.WriteString(line + "\n")
		case strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "":
		case cur == nil:
			return nil, fmt.Errorf("line %d: %q outside a mutant", n, line)
		default:
			key, value, _ := strings.Cut(line, " ")
			switch key {
			case "file":
				cur.File = value
			case "test":
				pkg, run, _ := strings.Cut(value, " -run ")
				cur.Package, cur.Run = strings.TrimSpace(pkg), strings.TrimSpace(run)
			case "root":
				cur.Root = true
			case "equivalent":
				cur.Equivalent = value
			default:
				return nil, fmt.Errorf("line %d: unknown key %q", n, key)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		cur.From, cur.To = from.String(), to.String()
	}
	if err := end(); err != nil {
		return nil, err
	}
	return ms, nil
}

// Apply returns the mutated content of m.File below root; an error when
// From does not occur exactly once (the code moved on: the mutant needs
// updating).
func (m Mutant) Apply(root string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(root, m.File))
	if err != nil {
		return nil, err
	}
	if n := strings.Count(string(data), m.From); n != 1 {
		return nil, fmt.Errorf("mutant %q (line %d): its code occurs %d times in %s, want once", m.Name, m.Line, n, m.File)
	}
	return []byte(strings.Replace(string(data), m.From, m.To, 1)), nil
}
