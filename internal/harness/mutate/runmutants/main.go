// SPDX-License-Identifier: Apache-2.0

// runmutants runs the named mutants of internal/harness/mutate/mutants.txt
// (make mutate): for each, go test of its package with the mutated file
// laid over the real one (-overlay: the tree is never written), and says
// which the tests killed and which survived. It exits 1 on a survivor not
// reviewed as equivalent, on an equivalent one the tests now kill (the
// list is out of date), and on a mutant whose code is gone.
//
// Usage (from the module's root): go run ./internal/harness/mutate/runmutants [-list FILE] [NAME...]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/oomtrace/oomtrace/internal/harness/mutate"
)

// testTimeout bounds one go test run: a mutant can make a test hang.
const testTimeout = 5 * time.Minute

func main() {
	list := flag.String("list", "internal/harness/mutate/mutants.txt", "the mutants")
	flag.Parse()
	if err := run(*list, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "runmutants:", err)
		os.Exit(1)
	}
}

func run(list string, only []string) error {
	f, err := os.Open(list)
	if err != nil {
		return err
	}
	ms, err := mutate.Parse(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", list, err)
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mutants-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	var killed, survived, equivalent, notRun, bad int
	baseline := map[string]bool{}
	for i, m := range ms {
		if len(only) > 0 && !slices.Contains(only, m.Name) {
			continue
		}
		if m.Root && os.Geteuid() != 0 {
			fmt.Printf("not run    %s (its tests need root)\n", m.Name)
			notRun++
			continue
		}
		// The tests must pass on the code as it is, or a failure says
		// nothing of the mutant.
		key := m.Package
		if m.Run != "" {
			key += " -run " + m.Run
		}
		if _, done := baseline[key]; !done {
			baseline[key] = goTest(m, "") == nil
		}
		if !baseline[key] {
			fmt.Printf("BROKEN     %s: go test %s fails without the mutant\n", m.Name, key)
			bad++
			continue
		}
		mutated, err := m.Apply(root)
		if err != nil {
			fmt.Printf("STALE      %v\n", err)
			bad++
			continue
		}
		overlay, err := writeOverlay(tmp, i, filepath.Join(root, m.File), mutated)
		if err != nil {
			return err
		}
		err = goTest(m, overlay)
		switch {
		case err != nil && m.Equivalent != "":
			fmt.Printf("KILLED     %s: reviewed as equivalent (%s), but the tests kill it: take it off the list\n", m.Name, m.Equivalent)
			bad++
		case err != nil:
			fmt.Printf("killed     %s\n", m.Name)
			killed++
		case m.Equivalent != "":
			fmt.Printf("equivalent %s: %s\n", m.Name, m.Equivalent)
			equivalent++
		default:
			fmt.Printf("SURVIVED   %s (%s line %d): go test %s passes with it\n", m.Name, list, m.Line, key)
			survived++
		}
	}
	total := killed + survived
	score := 100.0
	if total > 0 {
		score = 100 * float64(killed) / float64(total)
	}
	fmt.Printf("mutation score %.0f%%: %d killed, %d survived, %d equivalent, %d not run, %d broken or stale\n",
		score, killed, survived, equivalent, notRun, bad)
	if survived > 0 || bad > 0 {
		return fmt.Errorf("%d survivors not reviewed, %d broken or stale", survived, bad)
	}
	return nil
}

// writeOverlay writes mutated and the overlay file that lays it over path.
func writeOverlay(dir string, i int, path string, mutated []byte) (string, error) {
	src := filepath.Join(dir, fmt.Sprintf("%d-%s", i, filepath.Base(path)))
	if err := os.WriteFile(src, mutated, 0o644); err != nil {
		return "", err
	}
	data, err := json.Marshal(map[string]map[string]string{"Replace": {path: src}})
	if err != nil {
		return "", err
	}
	overlay := filepath.Join(dir, fmt.Sprintf("%d.json", i))
	return overlay, os.WriteFile(overlay, data, 0o644)
}

// goTest runs m's tests, with overlay when not empty; nil when they pass.
func goTest(m mutate.Mutant, overlay string) error {
	args := []string{"test", "-count=1"}
	if overlay != "" {
		args = append(args, "-overlay", overlay)
	}
	if m.Run != "" {
		args = append(args, "-run", m.Run)
	}
	args = append(args, m.Package)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = os.Environ()
	if m.Root {
		cmd.Env = append(cmd.Env, "OOMTRACE_REQUIRE_PRIVILEGED=1")
	}
	return cmd.Run()
}
