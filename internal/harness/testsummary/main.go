// Command testsummary reads go test's JSON events (go test -json, or go
// tool test2json) on stdin and says what ran: a line per package as it
// ends, the whole output of every failed test, and at the end one line
// "N passed, N failed, N skipped" followed by the name and reason of each
// skipped test. It exits 1 when anything failed.
//
//	go test -json ./... | go run ./internal/harness/testsummary [-title NAME]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
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
}

type skip struct{ name, reason string }

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
			s.skipped = append(s.skipped, skip{name: e.Package + " " + e.Test, reason: skipReason(s.output[key(e)])})
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
	return len(s.failed) == 0 && len(s.pkgFails) == 0
}

func main() {
	title := flag.String("title", "", "names the run in the summary line")
	verbose := flag.Bool("progress", false, "print each test as it starts and ends")
	flag.Parse()
	s := newSummary(os.Stdout, *verbose)
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
