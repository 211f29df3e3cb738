// SPDX-License-Identifier: Apache-2.0

package kernfile

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
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

func TestStatusFields(t *testing.T) {
	status := "Name:\tkube-apiserver\nUmask:\t0022\nNSpid:\t4242\t7\nbroken line\nVmSwap:\t       0 kB\nRssAnon:\t  123 kB\n"
	got := map[string]string{}
	for name, value := range StatusFields([]byte(status)) {
		got[string(name)] = string(value)
	}
	want := map[string]string{"Name": "kube-apiserver", "Umask": "0022", "NSpid": "4242\t7", "VmSwap": "0 kB", "RssAnon": "123 kB"}
	if len(got) != len(want) {
		t.Fatalf("fields %q, want %q", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for in, want := range map[string]uint64{"123 kB": 123 << 10, "0 kB": 0} {
		if n, ok := StatusBytes([]byte(in)); !ok || n != want {
			t.Errorf("StatusBytes(%q) = %d, %v; want %d", in, n, ok, want)
		}
	}
	for _, in := range []string{"123", "123 MB", "kB", "-1 kB", "18446744073709551615 kB"} {
		if n, ok := StatusBytes([]byte(in)); ok {
			t.Errorf("StatusBytes(%q) = %d, want refused", in, n)
		}
	}
}

// TestSubdirs: the directories of a real directory, not its files, "."
// or "..".
func TestSubdirs(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a", "pod 1", "c"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Subdirs(dir)
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []string{"a", "c", "pod 1"}) {
		t.Errorf("Subdirs = %q, %v", got, err)
	}
	if _, err := Subdirs(filepath.Join(dir, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing directory: %v", err)
	}
}

// FuzzAppendDirs: any bytes as getdents records, no panic, and only names
// of records that fit.
func FuzzAppendDirs(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 24))
	f.Fuzz(func(t *testing.T, buf []byte) {
		for _, name := range appendDirs(nil, buf) {
			if len(name) >= len(buf) {
				t.Fatalf("name %q longer than its record", name)
			}
		}
	})
}

// TestOpenFilesKeepsTheLastRead: at most max files stay open, the least
// recently read closed first; a kept file is read from its start each
// time; a file that cannot be opened is an error, and nil reads afresh.
func TestOpenFilesKeepsTheLastRead(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	for _, name := range []string{"a", "b", "c"} {
		if err := os.WriteFile(path(name), []byte(name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := NewOpenFiles(2)
	defer o.Close()
	read := func(name, want string) {
		t.Helper()
		got, err := o.ReadFile(path(name))
		if err != nil || string(got) != want {
			t.Fatalf("read %s: %q, %v; want %q", name, got, err, want)
		}
	}
	read("a", "a\n")
	read("b", "b\n")
	read("a", "a\n") // a is now the most recent
	read("c", "c\n") // b goes
	if o.Len() != 2 {
		t.Fatalf("%d open, want 2", o.Len())
	}
	if _, kept := o.files[path("b")]; kept {
		t.Error("b kept; it was the least recently read")
	}
	// The same file, rewritten in place (as the kernel prints anew): the
	// kept descriptor reads the new text from its start.
	if err := os.WriteFile(path("a"), []byte("a, longer now\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	read("a", "a, longer now\n")
	if _, err := o.ReadFile(path("missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if v, err := o.ReadUint(path("a")); err == nil {
		t.Errorf("ReadUint of text: %d", v)
	}
	var none *OpenFiles
	if got, err := none.ReadFile(path("c")); err != nil || string(got) != "c\n" {
		t.Errorf("nil OpenFiles: %q, %v", got, err)
	}
	o.Close()
	if o.Len() != 0 {
		t.Errorf("%d open after Close", o.Len())
	}
	read("b", "b\n")
}
