package kernfile

import (
	"os"
	"path/filepath"
	"testing"
)

const meminfoFixture = `MemTotal:       24538356 kB
MemFree:        22016312 kB
SwapTotal:             0 kB
CommitLimit:    12269176 kB
Committed_AS:     201232 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
Bogus:          x kB
`

func TestParseMeminfo(t *testing.T) {
	m, err := ParseMeminfo([]byte(meminfoFixture))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{
		"MemTotal": 24538356 * 1024, "MemFree": 22016312 * 1024, "SwapTotal": 0,
		"CommitLimit": 12269176 * 1024, "Committed_AS": 201232 * 1024,
		"HugePages_Total": 0, "Hugepagesize": 2048 * 1024,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %d, want %d", k, m[k], v)
		}
	}
	if _, ok := m["Bogus"]; ok {
		t.Error("unparsable value accepted")
	}
	if _, err := ParseMeminfo([]byte("nothing here\n")); err == nil {
		t.Error("empty meminfo accepted")
	}
}

func FuzzParseMeminfo(f *testing.F) {
	f.Add([]byte(meminfoFixture))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMeminfo(data)
		if err == nil && len(m) == 0 {
			t.Fatal("no error and no fields")
		}
	})
}

func TestParseKeyValues(t *testing.T) {
	m := ParseKeyValues([]byte("anon 5\nfile 7\nbroken\nneg -1\ninactive_file 3\n"))
	if len(m) != 3 || m["anon"] != 5 || m["file"] != 7 || m["inactive_file"] != 3 {
		t.Errorf("parsed %v", m)
	}
}

func TestReadUint(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "n"), []byte("123\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad"), []byte("max\n"), 0o644)
	if v, err := ReadUint(filepath.Join(dir, "n")); err != nil || v != 123 {
		t.Errorf("ReadUint = %d, %v", v, err)
	}
	if _, err := ReadUint(filepath.Join(dir, "bad")); err == nil {
		t.Error("max read as a number")
	}
}
