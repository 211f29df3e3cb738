// SPDX-License-Identifier: Apache-2.0

package memcgtest

import "testing"

// TestParseKilledProcess reads the kernel's line (6.18, this host) and
// one with a comm holding spaces and parentheses and a negative
// oom_score_adj, and refuses lines that are not it.
func TestParseKilledProcess(t *testing.T) {
	for _, c := range []struct {
		line string
		want KilledProcess
	}{
		{"Memory cgroup out of memory: Killed process 13912 (ctrbin) total-vm:1227496kB, anon-rss:8576kB, file-rss:1844kB, shmem-rss:0kB, UID:0 pgtables:104kB oom_score_adj:0",
			KilledProcess{PID: 13912, Comm: "ctrbin", TotalVM: 1227496, AnonRSS: 8576, FileRSS: 1844, UID: 0, Pgtables: 104}},
		{"Out of memory: Killed process 7 (a (b) c) total-vm:10kB, anon-rss:1kB, file-rss:2kB, shmem-rss:3kB, UID:1000 pgtables:8kB oom_score_adj:-998",
			KilledProcess{PID: 7, Comm: "a (b) c", TotalVM: 10, AnonRSS: 1, FileRSS: 2, ShmemRSS: 3, UID: 1000, Pgtables: 8, OOMScoreAdj: -998}},
	} {
		got, ok := ParseKilledProcess(c.line)
		if !ok || got != c.want {
			t.Errorf("%q:\n got %+v, %v\nwant %+v", c.line, got, ok, c.want)
		}
	}
	for _, line := range []string{
		"oom_reaper: reaped process 13912 (ctrbin), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
		"Memory cgroup out of memory: Killed process 13912 (ctrbin)",
	} {
		if got, ok := ParseKilledProcess(line); ok {
			t.Errorf("%q read as %+v", line, got)
		}
	}
}
