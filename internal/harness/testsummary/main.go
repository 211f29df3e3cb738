// SPDX-License-Identifier: Apache-2.0

// Command testsummary reads go test's JSON events (go test -json, or go
// tool test2json) on stdin and says what ran: a line per package as it
// ends, the whole output of every failed test, and at the end one line
// "N passed, N failed, N skipped" followed by the name and reason of each
// skipped test. It exits 1 when anything failed, or when a test skipped
// that the -skips file does not expect in this run: a skip is a test that
// did not check what it exists to check, and stays green only where a
// reviewed line says why.
//
//	go test -json ./... | go run ./internal/harness/testsummary [-title NAME] [-skips FILE -run RUN]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
)

// testEvent is one line of go test -json (cmd/test2json).
type testEvent struct {
	Time       time.Time
	Action     string
	Package    string
	ImportPath string // of build-output and build-fail
	Test       string
	Elapsed    float64
	Output     string
}

// summary accumulates the events of one run.
type summary struct {
	out      io.Writer
	verbose  bool
	output   map[string][]string // by package + "\x00" + test: its output lines
	passed   int
	failed   []string
	skipped  []skip
	pkgFails []string
	// expected, if set, are the skips this run may have (run names it);
	// any other is a failure.
	expected   []expectedSkip
	run        string
	unexpected []skip
}

type skip struct{ name, reason string }

// expectedSkip is a line of the -skips file: the runs it applies to (as
// -run names them, comma-separated path.Match patterns: guest-*, *), the test (path.Match patterns
// of the last element of its package's path and of its name, separated by
// a space), and a part of the reason it gives.
type expectedSkip struct {
	runs   []string
	pkg    string
	test   string
	reason string
}

// parseExpectedSkips reads the -skips file: "RUNS | PACKAGE TEST | REASON"
// lines; # starts a comment.
func parseExpectedSkips(data string) ([]expectedSkip, error) {
	var out []expectedSkip
	for i, line := range strings.Split(data, "\n") {
		if j := strings.Index(line, "#"); j >= 0 {
			line = line[:j]
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want RUNS | PACKAGE TEST | REASON, got %q", i+1, line)
		}
		pkg, test, ok := strings.Cut(strings.TrimSpace(f[1]), " ")
		reason := strings.TrimSpace(f[2])
		if !ok || reason == "" {
			return nil, fmt.Errorf("line %d: want PACKAGE TEST and a reason, got %q", i+1, line)
		}
		if _, err := path.Match(strings.TrimSpace(test)+pkg, ""); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		var runs []string
		for _, r := range strings.Split(f[0], ",") {
			runs = append(runs, strings.TrimSpace(r))
		}
		out = append(out, expectedSkip{runs: runs, pkg: pkg, test: strings.TrimSpace(test), reason: reason})
	}
	return out, nil
}

// matches says whether the line expects the skip of test in package pkg,
// with reason, in run.
func (e expectedSkip) matches(run, pkg, test, reason string) bool {
	if !slices.ContainsFunc(e.runs, func(r string) bool { ok, _ := path.Match(r, run); return ok }) {
		return false
	}
	if ok, _ := path.Match(e.pkg, path.Base(pkg)); !ok {
		return false
	}
	if ok, _ := path.Match(e.test, test); !ok {
		return false
	}
	return strings.Contains(reason, e.reason)
}

func newSummary(out io.Writer, verbose bool) *summary {
	return &summary{out: out, verbose: verbose, output: map[string][]string{}}
}

func key(e testEvent) string { return e.Package + "\x00" + e.Test }

// add takes one event.
func (s *summary) add(e testEvent) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.out, e.Output)
	case "build-fail":
		s.pkgFails = append(s.pkgFails, e.ImportPath+" (build)")
	case "output":
		s.output[key(e)] = append(s.output[key(e)], e.Output)
		if s.verbose && e.Test != "" && (strings.HasPrefix(e.Output, "=== RUN") || strings.HasPrefix(strings.TrimSpace(e.Output), "--- ")) {
			fmt.Fprint(s.out, e.Output) // progress
		}
	case "pass":
		if e.Test == "" {
			fmt.Fprintf(s.out, "ok   %s %.1fs\n", e.Package, e.Elapsed)
		} else if !strings.Contains(e.Test, "/") {
			s.passed++
		}
		delete(s.output, key(e))
	case "skip":
		if e.Test == "" {
			fmt.Fprintf(s.out, "---  %s (no tests)\n", e.Package)
		} else {
			sk := skip{name: e.Package + " " + e.Test, reason: skipReason(s.output[key(e)])}
			s.skipped = append(s.skipped, sk)
			if s.expected != nil && !slices.ContainsFunc(s.expected, func(x expectedSkip) bool { return x.matches(s.run, e.Package, e.Test, sk.reason) }) {
				s.unexpected = append(s.unexpected, sk)
			}
		}
		delete(s.output, key(e))
	case "fail":
		if e.Test == "" {
			fmt.Fprintf(s.out, "FAIL %s %.1fs\n", e.Package, e.Elapsed)
			if lines := s.output[key(e)]; len(lines) > 0 && !strings.Contains(strings.Join(lines, ""), "--- FAIL") {
				// A build failure or a crash outside any test.
				fmt.Fprint(s.out, strings.Join(lines, ""))
			}
			s.pkgFails = append(s.pkgFails, e.Package)
		} else {
			if !strings.Contains(e.Test, "/") {
				s.failed = append(s.failed, e.Package+" "+e.Test)
			}
			fmt.Fprintf(s.out, "--- FAIL: %s %s\n%s", e.Package, e.Test, strings.Join(s.output[key(e)], ""))
		}
		delete(s.output, key(e))
	}
}

// skipReason is what the test said before it skipped: the lines after its
// "=== RUN" (t.Skip's message among them), without the "--- SKIP" line.
func skipReason(lines []string) string {
	var reason []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		reason = append(reason, t)
	}
	if len(reason) == 0 {
		return "(no reason given)"
	}
	return strings.Join(reason, " ")
}

// end writes the closing lines and says whether all went well.
func (s *summary) end(title string) bool {
	if title != "" {
		title += ": "
	}
	fmt.Fprintf(s.out, "%s%d passed, %d failed, %d skipped\n", title, s.passed, len(s.failed), len(s.skipped))
	sort.Slice(s.skipped, func(i, j int) bool { return s.skipped[i].name < s.skipped[j].name })
	for _, sk := range s.skipped {
		fmt.Fprintf(s.out, "  skipped %s: %s\n", sk.name, sk.reason)
	}
	for _, f := range s.failed {
		fmt.Fprintf(s.out, "  failed %s\n", f)
	}
	for _, p := range s.pkgFails {
		fmt.Fprintf(s.out, "  failed package %s\n", p)
	}
	for _, sk := range s.unexpected {
		fmt.Fprintf(s.out, "  unexpected skip %s (the skips file does not expect it in run %s): %s\n", sk.name, s.run, sk.reason)
	}
	return len(s.failed) == 0 && len(s.pkgFails) == 0 && len(s.unexpected) == 0
}

func main() {
	title := flag.String("title", "", "names the run in the summary line")
	verbose := flag.Bool("progress", false, "print each test as it starts and ends")
	skipsFile := flag.String("skips", "", "the skips this run may have (RUNS | PACKAGE TEST | REASON lines); any other fails the run")
	run := flag.String("run", "", "this run's name in the -skips file")
	flag.Parse()
	s := newSummary(os.Stdout, *verbose)
	if *skipsFile != "" {
		data, err := os.ReadFile(*skipsFile)
		if err == nil {
			s.expected, err = parseExpectedSkips(string(data))
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "testsummary: -skips: %v\n", err)
			os.Exit(2)
		}
		if s.expected == nil {
			s.expected = []expectedSkip{} // none expected: every skip fails
		}
		s.run = *run
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var e testEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			// Not an event (go test's own messages): pass it through.
			fmt.Println(sc.Text())
			continue
		}
		s.add(e)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "testsummary: %v\n", err)
		os.Exit(1)
	}
	if !s.end(*title) {
		os.Exit(1)
	}
}
