package tracer

import (
	"testing"
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
