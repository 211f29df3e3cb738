// SPDX-License-Identifier: Apache-2.0

package cgroup

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/oomtrace/oomtrace/event"
)

func TestParsePressure(t *testing.T) {
	got, err := ParsePressure([]byte("some avg10=12.50 avg60=3.01 avg300=0.00 total=123456\nfull avg10=1.25 avg60=0.30 avg300=0.00 total=7890\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := event.Pressure{SomeAvg10: 12.5, SomeAvg60: 3.01, SomeTotalUS: 123456, FullAvg10: 1.25, FullAvg60: 0.3, FullTotalUS: 7890}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	// /proc/pressure/cpu before 5.13 has no full line; fields may grow.
	got, err = ParsePressure([]byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=5 future=1\n"))
	if err != nil || got.SomeTotalUS != 5 || got.FullTotalUS != 0 {
		t.Errorf("some only: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "full avg10=0 total=1\n", "some avg10=NaN total=1\n", "some avg10=101 total=1\n", "some total=-1\n", "some avg10\n"} {
		if p, err := ParsePressure([]byte(bad)); err == nil {
			t.Errorf("%q: no error, %+v", bad, p)
		}
	}
}

func FuzzParsePressure(f *testing.F) {
	f.Add([]byte("some avg10=12.50 avg60=3.01 avg300=0.00 total=123456\nfull avg10=1.25 avg60=0.30 avg300=0.00 total=7890\n"))
	f.Add([]byte("some avg10=inf\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePressure(data)
		if err != nil {
			return
		}
		for _, v := range []float64{p.SomeAvg10, p.SomeAvg60, p.FullAvg10, p.FullAvg60} {
			if math.IsNaN(v) || v < 0 || v > 100 {
				t.Fatalf("%q: %v is not a percentage", data, v)
			}
		}
	})
}

func TestSnapshot(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "kubepods", "pod1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"memory.current":      "67108864\n",
		"memory.max":          "68157440\n",
		"memory.swap.current": "4096\n",
		"memory.pressure":     "some avg10=40.00 avg60=10.00 avg300=2.00 total=9000000\nfull avg10=35.00 avg60=9.00 avg300=1.00 total=8000000\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := Memory{Root: root}
	s, err := m.Snapshot("/kubepods/pod1")
	if err != nil {
		t.Fatal(err)
	}
	if s.UsageBytes != 64<<20 || s.LimitBytes == nil || *s.LimitBytes != 65<<20 || s.SwapBytes == nil || *s.SwapBytes != 4096 ||
		s.Pressure == nil || s.Pressure.FullAvg10 != 35 {
		t.Errorf("snapshot %+v", s)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte("max\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Snapshot("/kubepods/pod1"); err != nil || s.LimitBytes != nil {
		t.Errorf("no limit: %+v, %v", s, err)
	}
	if _, err := m.Snapshot("/kubepods/gone"); err == nil {
		t.Error("a cgroup that is gone: no error")
	}
}
