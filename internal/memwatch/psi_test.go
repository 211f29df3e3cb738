// SPDX-License-Identifier: Apache-2.0

package memwatch

import (
	"testing"

	"github.com/oomtrace/oomtrace/event"
)

func TestParsePSI(t *testing.T) {
	// 6.18's memory.pressure of a cgroup, as read here.
	got, err := ParsePSI([]byte("some avg10=12.34 avg60=5.00 avg300=1.20 total=987654\nfull avg10=3.21 avg60=0.50 avg300=0.10 total=12345\n"))
	want := event.Pressure{SomeAvg10: 12.34, SomeAvg60: 5, SomeTotalUS: 987654, FullAvg10: 3.21, FullAvg60: 0.5, FullTotalUS: 12345}
	if err != nil || got != want {
		t.Errorf("ParsePSI = %+v, %v; want %+v", got, err, want)
	}
	// /proc/pressure/memory before 5.13 has no full line for the root;
	// an unknown key is skipped.
	if got, err := ParsePSI([]byte("some avg10=1.00 avg60=0.00 avg300=0.00 total=5 new=1\n")); err != nil || got.SomeTotalUS != 5 {
		t.Errorf("some line alone: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "full avg10=1 total=2\n", "some avg10=x total=1\n", "some avg10=101 total=1\n", "some total\n"} {
		if _, err := ParsePSI([]byte(bad)); err == nil {
			t.Errorf("ParsePSI(%q): no error", bad)
		}
	}
}

func FuzzParsePSI(f *testing.F) {
	f.Add([]byte("some avg10=12.34 avg60=5.00 avg300=1.20 total=987654\nfull avg10=3.21 avg60=0.50 avg300=0.10 total=12345\n"))
	f.Add([]byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePSI(data)
		if err != nil {
			return
		}
		if p.SomeAvg10 < 0 || p.SomeAvg10 > 100 || p.FullAvg10 < 0 || p.FullAvg10 > 100 {
			t.Errorf("averages out of range: %+v", p)
		}
	})
}
