// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/oomtrace/oomtrace/event"
)

func TestParseStat(t *testing.T) {
	cases := []struct {
		data  string
		state byte
		flags uint64
		ok    bool
	}{
		{"1234 (bash) S 1 1234 1234 34816 1234 4194560 100 0 0 0", 'S', 4194560, true},
		{"1234 (a) b) c) R 1 2 3 4 5 4194564 0", 'R', 4194564, true},
		{"1234 (x) Z 1 2 3 4 5 4227084", 'Z', 4227084, true},
		{"1234 (x) S 1 2", 0, 0, false},
		{"garbage", 0, 0, false},
		{"1 (x) S 1 2 3 4 5 -1", 0, 0, false},
	}
	for _, c := range cases {
		state, flags, ok := parseStat([]byte(c.data))
		if state != c.state || flags != c.flags || ok != c.ok {
			t.Errorf("%q: got (%c, %d, %v), want (%c, %d, %v)", c.data, state, flags, ok, c.state, c.flags, c.ok)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1234 (bash) S 1 1234 1234 34816 1234 4194560 100"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseStat(data) // must not panic
	})
}

func TestParseNSpid(t *testing.T) {
	cases := []struct {
		status string
		nsPID  uint32
		level  int
		ok     bool
	}{
		{"Name:\tbash\nTgid:\t4242\nNSpid:\t4242\n", 4242, 0, true},
		{"Name:\tapp\nNSpid:\t4242\t1\nNSsid:\t1\n", 1, 1, true},
		{"NSpid:\t9\t7\t12\n", 12, 2, true},
		{"Name:\tx\n", 0, 0, false},
		{"NSpid:\n", 0, 0, false},
		{"NSpid:\t4242\tx\n", 0, 0, false},
		{"NSpid:\t0\n", 0, 0, false},
	}
	for _, c := range cases {
		nsPID, level, ok := parseNSpid([]byte(c.status))
		if nsPID != c.nsPID || level != c.level || ok != c.ok {
			t.Errorf("%q: (%d, %d, %v), want (%d, %d, %v)", c.status, nsPID, level, ok, c.nsPID, c.level, c.ok)
		}
	}
}

func FuzzParseNSpid(f *testing.F) {
	f.Add([]byte("NSpid:\t4242\t1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if nsPID, level, ok := parseNSpid(data); ok && (nsPID == 0 || level < 0) {
			t.Fatalf("ok with pid %d level %d", nsPID, level)
		}
	})
}

func TestParsePPID(t *testing.T) {
	for data, want := range map[string]uint32{
		"1234 (bash) S 1 1234 1234 34816": 1,
		"1234 (a) b) R 77 2 3":            77,
		"1234 (x) S":                      0,
		"garbage":                         0,
		"1 (x) S 0 1":                     0,
	} {
		if got, ok := parsePPID([]byte(data)); got != want || ok != (want != 0) {
			t.Errorf("%q: %d %v, want %d", data, got, ok, want)
		}
	}
}

// TestVictimMemcg: an exiting victim's cgroup is read from /proc on cgroup
// v2 (which names it until the task is reaped) when its name, or without
// one the OOM domain, says it is the victim; never on v1, where an exiting
// task reads as in the root cgroup; a live task always.
func TestVictimMemcg(t *testing.T) {
	root := t.TempDir()
	write := func(pid, cgroupFile, state, comm string) {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string]string{
			"cgroup": cgroupFile,
			"stat":   pid + " (" + comm + ") " + state + " 1 2 3 4 5 4194560 0",
			"comm":   comm + "\n",
		} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	const v2 = "0::/kubepods/pod1/ctr\n"
	const v1 = "4:memory:/kubepods/pod1/ctr\n0::/\n"
	write("10", v2, "Z", "worker") // v2, reaped not yet
	write("11", v1, "Z", "worker") // v1, exiting
	write("12", v1, "S", "worker") // v1, alive
	p := procfs{root: root}
	for _, c := range []struct {
		name         string
		pid          uint32
		comm, domain string
		want         string
	}{
		{"v2 exiting, its name", 10, "worker", "", "/kubepods/pod1/ctr"},
		{"v2 exiting, another name", 10, "other", "/kubepods", ""},
		{"v2 exiting, no name, within the domain", 10, "", "/kubepods/pod1", "/kubepods/pod1/ctr"},
		{"v2 exiting, no name, the domain itself", 10, "", "/kubepods/pod1/ctr", "/kubepods/pod1/ctr"},
		{"v2 exiting, no name, outside the domain", 10, "", "/kubepods/pod2", ""},
		{"v2 exiting, no name, a sibling's prefix", 10, "", "/kubepods/pod1/ct", ""},
		{"v2 exiting, nothing to tell it by", 10, "", "", ""},
		{"v1 exiting", 11, "worker", "/kubepods", ""},
		{"v1 alive", 12, "", "", "/kubepods/pod1/ctr"},
		{"gone", 13, "worker", "/", ""},
	} {
		got := p.victimMemcg(c.pid, c.comm, c.domain)
		switch {
		case c.want == "" && got != nil:
			t.Errorf("%s: %+v, want unknown", c.name, got)
		case c.want != "" && (got == nil || got.Path != c.want || got.Source != event.CgroupFromProcfs):
			t.Errorf("%s: %+v, want %s from procfs", c.name, got, c.want)
		}
	}
}

// TestCompleteFromProcfsPIDReused: what /proc says of the victim's pid is
// taken only when the process there started when the victim did; a pid
// reused by another process (of another pod) names nothing.
func TestCompleteFromProcfsPIDReused(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "4242")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"status": "Name:\tapp\nTgid:\t4242\nNSpid:\t4242\t1\n",
		"stat":   "4242 (app) S 4000 4242 4242 0 -1 4194560 10 0 0 0 1 1 0 0 20 0 1 0 777 1000 10",
		"cgroup": "0::/kubepods/burstable/pod-other/ctr-other\n",
		"comm":   "app\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := procfs{root: root}
	for _, c := range []struct {
		name  string
		start uint32
		want  bool
	}{
		{"same process", 777, true},
		{"unknown start: as before", 0, true},
		{"pid reused", 778, false},
	} {
		ev := event.OOMKill{Victim: event.Victim{Process: event.Process{PID: 4242, TGID: 4242, Comm: "app"}}}
		p.completeFromProcfs(&ev, c.start)
		v := ev.Victim
		filled := v.Memcg != nil && v.NSPID != nil
		if filled != c.want || (filled && (v.Memcg.Path != "/kubepods/burstable/pod-other/ctr-other" || *v.NSPID != 1)) {
			t.Errorf("%s: memcg %+v, ns pid %v: want filled %v", c.name, v.Memcg, v.NSPID, c.want)
		}
	}
}

func TestParseStartTime(t *testing.T) {
	cases := []struct {
		data string
		want uint64
		ok   bool
	}{
		{"4242 (app) S 4000 4242 4242 0 -1 4194560 10 0 0 0 1 1 0 0 20 0 1 0 777 1000 10", 777, true},
		{"4242 (a) b) S 4000 4242 4242 0 -1 4194560 10 0 0 0 1 1 0 0 20 0 1 0 8589934593 1000", 8589934593, true},
		{"4242 (app) S 4000 4242", 0, false},
		{"garbage", 0, false},
	}
	for _, c := range cases {
		got, ok := parseStartTime([]byte(c.data))
		if got != c.want || ok != c.ok {
			t.Errorf("%q: got (%d, %v), want (%d, %v)", c.data, got, ok, c.want, c.ok)
		}
	}
}

func FuzzParseStartTime(f *testing.F) {
	f.Add([]byte("4242 (app) S 4000 4242 4242 0 -1 4194560 10 0 0 0 1 1 0 0 20 0 1 0 777 1000 10"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseStartTime(data) // must not panic
	})
}
