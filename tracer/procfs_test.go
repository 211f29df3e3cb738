package tracer

import (
	"strings"
	"testing"
)

func TestMemcgFromProcCgroup(t *testing.T) {
	cases := []struct {
		name, data string
		path       string
		v1, ok     bool
	}{
		{"hybrid", "9:name=systemd:/\n4:memory:/process_api/abc\n0::/\n", "/process_api/abc", true, true},
		{"v1 combined controllers", "3:cpu,memory:/kubepods/pod1/c1\n", "/kubepods/pod1/c1", true, true},
		{"v2", "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-1.scope\n", "/kubepods.slice/kubepods-pod1.slice/cri-containerd-1.scope", false, true},
		{"path with colon", "0::/system.slice/a:b:c\n", "/system.slice/a:b:c", false, true},
		{"no memory, no unified", "1:cpu:/x\n", "", false, false},
		{"empty", "", "", false, false},
		{"garbage", "::::\n\x00\xff\nmemory\n", "", false, false},
		{"named hierarchy mentioning memory is not memcg", "2:name=memory:/x\n0::/y\n", "/y", false, true},
	}
	for _, c := range cases {
		path, v1, ok := MemcgFromProcCgroup([]byte(c.data))
		if path != c.path || v1 != c.v1 || ok != c.ok {
			t.Errorf("%s: got (%q, %v, %v), want (%q, %v, %v)", c.name, path, v1, ok, c.path, c.v1, c.ok)
		}
	}
}

func FuzzMemcgFromProcCgroup(f *testing.F) {
	f.Add([]byte("4:memory:/a\n0::/b\n"))
	f.Add([]byte("0::/\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path, _, ok := MemcgFromProcCgroup(data)
		if ok && !strings.HasPrefix(path, "/") {
			t.Fatalf("path %q does not start at the root", path)
		}
		if !ok && path != "" {
			t.Fatalf("not ok but path %q", path)
		}
	})
}

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
