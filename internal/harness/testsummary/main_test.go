// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// events is a run as go test -json writes it: a pass, a skip with its
// reason, a failure with its output, a subtest, and a package that did not
// build.
var events = []testEvent{
	{Action: "run", Package: "p", Test: "TestA"},
	{Action: "output", Package: "p", Test: "TestA", Output: "=== RUN   TestA\n"},
	{Action: "pass", Package: "p", Test: "TestA"},
	{Action: "run", Package: "p", Test: "TestB"},
	{Action: "output", Package: "p", Test: "TestB", Output: "=== RUN   TestB\n"},
	{Action: "output", Package: "p", Test: "TestB", Output: "    b_test.go:9: another oomtrace is loaded\n"},
	{Action: "output", Package: "p", Test: "TestB", Output: "--- SKIP: TestB (0.00s)\n"},
	{Action: "skip", Package: "p", Test: "TestB"},
	{Action: "run", Package: "p", Test: "TestC"},
	{Action: "output", Package: "p", Test: "TestC/sub", Output: "    c_test.go:3: kill not seen\n"},
	{Action: "fail", Package: "p", Test: "TestC/sub"},
	{Action: "fail", Package: "p", Test: "TestC"},
	{Action: "output", Package: "p", Output: "FAIL\n"},
	{Action: "fail", Package: "p", Elapsed: 1.5},
	{Action: "build-output", ImportPath: "q", Output: "q/q.go:1: syntax error\n"},
	{Action: "build-fail", ImportPath: "q"},
	{Action: "pass", Package: "r", Elapsed: 0.1},
}

func TestSummary(t *testing.T) {
	var out bytes.Buffer
	s := newSummary(&out, false)
	for _, e := range events {
		b, _ := json.Marshal(e)
		var back testEvent
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		s.add(back)
	}
	if s.end("host") {
		t.Error("a run with failures ended well")
	}
	got := out.String()
	for _, want := range []string{
		"--- FAIL: p TestC/sub\n    c_test.go:3: kill not seen\n",
		"FAIL p 1.5s\n",
		"q/q.go:1: syntax error\n",
		"ok   r 0.1s\n",
		"host: 1 passed, 1 failed, 1 skipped\n",
		"  skipped p TestB: b_test.go:9: another oomtrace is loaded\n",
		"  failed p TestC\n",
		"  failed package q (build)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
}

// TestUnexpectedSkipFails: with a skips file, a skip it names (run, package,
// test pattern and a part of the reason all matching) passes, and any other
// fails the run, named with its reason; a skip expected in another run, or
// for another reason, is not expected here.
func TestUnexpectedSkipFails(t *testing.T) {
	expected, err := parseExpectedSkips(`
# comment
host, guest | tracer TestGuest* | runs only in the test guest
*           | oomtrace TestBench* | benchmark: run with make bench  # trailing comment
`)
	if err != nil {
		t.Fatal(err)
	}
	skipOf := func(pkg, test, reason string) []testEvent {
		return []testEvent{
			{Action: "output", Package: pkg, Test: test, Output: "    x_test.go:1: " + reason + "\n"},
			{Action: "skip", Package: pkg, Test: test},
		}
	}
	for _, c := range []struct {
		name   string
		run    string
		events []testEvent
		ok     bool
	}{
		{"expected", "host", append(skipOf("github.com/oomtrace/oomtrace/tracer", "TestGuestOOMGroup", "runs only in the test guest (kerneltest/run.sh)"),
			skipOf("guest/oomtrace", "TestBenchDaemon", "benchmark: run with make bench")...), true},
		{"another run", "cluster", skipOf("github.com/oomtrace/oomtrace/tracer", "TestGuestOOMGroup", "runs only in the test guest"), false},
		{"another reason", "host", skipOf("github.com/oomtrace/oomtrace/tracer", "TestGuestOOMGroup", "another oomtrace is loaded"), false},
		{"another test", "host", skipOf("github.com/oomtrace/oomtrace/tracer", "TestSIGTERMDuringBurst", "runs only in the test guest"), false},
		{"another package", "host", skipOf("github.com/oomtrace/oomtrace/cmd/oomtrace", "TestGuestOOMGroup", "runs only in the test guest"), false},
	} {
		var out bytes.Buffer
		s := newSummary(&out, false)
		s.expected, s.run = expected, c.run
		for _, e := range c.events {
			s.add(e)
		}
		if got := s.end(c.run); got != c.ok {
			t.Errorf("%s: ended well %v, want %v:\n%s", c.name, got, c.ok, out.String())
		}
		if !c.ok && !strings.Contains(out.String(), "unexpected skip") {
			t.Errorf("%s: the unexpected skip is not named:\n%s", c.name, out.String())
		}
	}
	for _, bad := range []string{"host | tracer TestX", "host | tracer | reason", "host | tracer Test[ | reason"} {
		if _, err := parseExpectedSkips(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
