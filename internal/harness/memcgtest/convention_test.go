// SPDX-License-Identifier: Apache-2.0

package memcgtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPrivilegedTestsAreVisible keeps the privileged tests where a reader
// looks for them: every test and benchmark of a *_kernel_test.go file
// starts with testenv.RequirePrivileged, and no other test file calls
// it, or makes memory cgroups or a containerd (which need root).
func TestPrivilegedTestsAreVisible(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	fset := token.NewFileSet()
	kernelFiles := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		kernel := strings.HasSuffix(path, "_kernel_test.go")
		if kernel {
			kernelFiles++
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			isTest := fn.Recv == nil && fn.Name.Name != "TestMain" &&
				(strings.HasPrefix(fn.Name.Name, "Test") || strings.HasPrefix(fn.Name.Name, "Benchmark"))
			if kernel && isTest && !startsWithRequirePrivileged(fn) {
				t.Errorf("%s: %s does not start with testenv.RequirePrivileged", path, fn.Name.Name)
			}
			if !kernel {
				ast.Inspect(fn.Body, func(n ast.Node) bool {
					if name := privilegedCall(n); name != "" {
						t.Errorf("%s: %s calls %s: privileged tests belong in a *_kernel_test.go file", fset.Position(n.Pos()), fn.Name.Name, name)
					}
					return true
				})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if kernelFiles == 0 {
		t.Fatal("no *_kernel_test.go file found: walked the wrong tree?")
	}
}

func startsWithRequirePrivileged(fn *ast.FuncDecl) bool {
	if len(fn.Body.List) == 0 {
		return false
	}
	stmt, ok := fn.Body.List[0].(*ast.ExprStmt)
	if !ok {
		return false
	}
	return privilegedCall(stmt.X) == "testenv.RequirePrivileged"
}

// privilegedCall names a call that needs root, or returns "".
func privilegedCall(n ast.Node) string {
	call, ok := n.(*ast.CallExpr)
	if !ok {
		return ""
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	pkg, ok := sel.X.(*ast.Ident)
	if !ok {
		return ""
	}
	name := pkg.Name + "." + sel.Sel.Name
	switch name {
	case "testenv.RequirePrivileged", "memcgtest.New", "critest.Start":
		return name
	}
	return ""
}

// TestEveryFuzzTargetRuns: every Fuzz function of the tree is in the
// Makefile's FUZZ_TARGETS (make fuzz, in CI), as package:name; a target
// written and never run proves nothing.
func TestEveryFuzzTargetRuns(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(mk), "FUZZ_TARGETS := ")
	if !ok {
		t.Fatal("no FUZZ_TARGETS in the Makefile")
	}
	var listed []string
	for _, line := range strings.Split(rest, "\n") {
		line = strings.TrimSpace(line)
		listed = append(listed, strings.Fields(strings.TrimSuffix(line, "\\"))...)
		if !strings.HasSuffix(line, "\\") {
			break
		}
	}
	fset := token.NewFileSet()
	found := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		pkg, _ := filepath.Rel(root, filepath.Dir(path))
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Fuzz") {
				found++
				if target := filepath.ToSlash(pkg) + ":" + fn.Name.Name; !slices.Contains(listed, target) {
					t.Errorf("%s: %s is not in the Makefile's FUZZ_TARGETS", path, target)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 || len(listed) < found {
		t.Errorf("%d fuzz functions found, %d targets listed: %v", found, len(listed), listed)
	}
}
