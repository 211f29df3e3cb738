// SPDX-License-Identifier: Apache-2.0

package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMemoryPath(t *testing.T) {
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
		path, v1, ok := MemoryPath([]byte(c.data))
		if path != c.path || v1 != c.v1 || ok != c.ok {
			t.Errorf("%s: got (%q, %v, %v), want (%q, %v, %v)", c.name, path, v1, ok, c.path, c.v1, c.ok)
		}
	}
}

func FuzzMemoryPath(f *testing.F) {
	f.Add([]byte("4:memory:/a\n0::/b\n"))
	f.Add([]byte("0::/\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path, _, ok := MemoryPath(data)
		if ok && !strings.HasPrefix(path, "/") {
			t.Fatalf("path %q does not start at the root", path)
		}
		if !ok && path != "" {
			t.Fatalf("not ok but path %q", path)
		}
	})
}

// Lines of real mountinfo files: this hybrid host, a v2-only host, a v1
// host whose memory controller shares a mount with cpu.
const (
	hybridMountinfo = `25 31 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
40 33 0:35 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
`
	v2Mountinfo = `35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	combinedMountinfo = `41 33 0:36 / /sys/fs/cgroup/cpu,memory rw,relatime - cgroup cgroup rw,cpu,memory
`
	// A container's view: the host's memory hierarchy bind-mounted at a
	// path with a space, and a sub-tree mount (root not /) to skip.
	containerMountinfo = `50 40 0:35 /kubepods/pod1 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
51 40 0:35 / /host/sys/fs/cgroup/my\040memory rw - cgroup cgroup rw,memory
`
	// A non-privileged container on cgroup v2 has a cgroup namespace of
	// its own, rooted at its cgroup four levels down: its view of that
	// (root "/", not the hierarchy's root) and the host's hierarchy
	// bind-mounted (root four levels above the namespace's).
	nsMountinfo = `612 600 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate
640 600 0:30 /../../../.. /host/sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
`
	// The same on this hybrid host, as unshare -C in a child of its own
	// memory cgroup shows it.
	nsHybridMountinfo = `34 33 0:29 /../.. /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 31 0:32 /../../../.. /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
`
	// Only the namespace's view: nothing outside the container.
	nsViewOnlyMountinfo = `612 600 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate
`
)

func TestFindMemory(t *testing.T) {
	isRoot := func(string, bool) bool { return true }
	withMemory := mountProbe{func(string) []byte { return []byte("cpuset cpu io memory pids\n") }, isRoot}
	without := mountProbe{func(string) []byte { return []byte("cpuset cpu pids\n") }, isRoot}
	// In the v2 namespace cases, the namespace's own view is the mount
	// at /sys/fs/cgroup.
	nsView := func(dir string, _ bool) bool { return dir != "/sys/fs/cgroup" }
	cases := []struct {
		name, mountinfo string
		probe           mountProbe
		want            Memory
		err             error
	}{
		{"hybrid: v1 memory, not the unified mount", hybridMountinfo, without, Memory{Root: "/sys/fs/cgroup/memory", V1: true}, nil},
		{"v2", v2Mountinfo, withMemory, Memory{Root: "/sys/fs/cgroup"}, nil},
		{"v2 without the memory controller", v2Mountinfo, without, Memory{}, ErrNoMemoryHierarchy},
		{"v1, memory with cpu", combinedMountinfo, without, Memory{Root: "/sys/fs/cgroup/cpu,memory", V1: true}, nil},
		{"container: sub-tree mount skipped, escapes undone", containerMountinfo, without, Memory{Root: "/host/sys/fs/cgroup/my memory", V1: true}, nil},
		{"v2 cgroup namespace: the host's root, four levels up", nsMountinfo, mountProbe{withMemory.controllers, nsView}, Memory{Root: "/host/sys/fs/cgroup", nsDepth: 4}, nil},
		{"hybrid cgroup namespace", nsHybridMountinfo, without, Memory{Root: "/sys/fs/cgroup/memory", V1: true, nsDepth: 4}, nil},
		{"nothing", "garbage\n\n - \n", withMemory, Memory{}, ErrNoMemoryHierarchy},
	}
	for _, c := range cases {
		got, err := findMemory([]byte(c.mountinfo), c.probe)
		if got != c.want || err != c.err {
			t.Errorf("%s: %+v, %v; want %+v, %v", c.name, got, err, c.want, c.err)
		}
	}
	// The namespace's view alone is refused, and the error says why.
	_, err := findMemory([]byte(nsViewOnlyMountinfo), mountProbe{withMemory.controllers, nsView})
	if !errors.Is(err, ErrNoMemoryHierarchy) || !strings.Contains(err.Error(), "namespace's view") {
		t.Errorf("namespace view only: %v", err)
	}
}

func TestUpLevels(t *testing.T) {
	cases := []struct {
		root  string
		n     int
		whole bool
	}{
		{"/", 0, true}, {"/..", 1, true}, {"/../../../..", 4, true},
		{"/kubepods", 0, false}, {"/../kubepods", 0, false}, {"/...", 0, false}, {"", 0, false}, {"/../", 0, false},
	}
	for _, c := range cases {
		if n, whole := upLevels(c.root); n != c.n || whole != c.whole {
			t.Errorf("upLevels(%q) = %d, %v; want %d, %v", c.root, n, whole, c.n, c.whole)
		}
	}
}

func TestResolve(t *testing.T) {
	host := Memory{Root: "/sys/fs/cgroup"}
	ns := Memory{Root: "/sys/fs/cgroup", nsDepth: 4, NSRoot: "/kubepods/besteffort/pod1/c1"}
	unknown := Memory{Root: "/sys/fs/cgroup", nsDepth: 4}
	cases := []struct {
		m        Memory
		in, want string
		ok       bool
	}{
		{host, "/kubepods/pod2/c2", "/kubepods/pod2/c2", true},
		{ns, "/", "/kubepods/besteffort/pod1/c1", true},
		{ns, "/../../../burstable/pod2/c2", "/kubepods/burstable/pod2/c2", true},
		{ns, "/../../../..", "/", true},
		// More steps up than there are levels stays at the root.
		{ns, "/../../../../../../x", "/x", true},
		{unknown, "/../../../burstable/pod2/c2", "", false},
	}
	for _, c := range cases {
		if got, ok := c.m.Resolve(c.in); got != c.want || ok != c.ok {
			t.Errorf("%+v.Resolve(%q) = %q, %v; want %q, %v", c.m, c.in, got, ok, c.want, c.ok)
		}
	}
}

func FuzzFindMemory(f *testing.F) {
	f.Add([]byte(hybridMountinfo))
	f.Add([]byte(containerMountinfo))
	f.Add([]byte(nsMountinfo))
	f.Add([]byte(nsHybridMountinfo))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := findMemory(data, mountProbe{func(string) []byte { return []byte("memory") }, func(string, bool) bool { return true }})
		if err == nil && (m.Root == "" || m.nsDepth < 0) {
			t.Fatalf("no error and %+v", m)
		}
	})
}

// TestFindMemoryThisHost: the hierarchy this process is in, as
// /proc/self/cgroup names it, is below the root FindMemory found.
func TestFindMemoryThisHost(t *testing.T) {
	m, err := FindMemory("/proc")
	if err != nil {
		t.Skipf("no memory hierarchy here: %v", err)
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	path, v1, ok := MemoryPath(data)
	if !ok || v1 != m.V1 {
		t.Fatalf("/proc/self/cgroup: %q v1=%v ok=%v; hierarchy %+v", path, v1, ok, m)
	}
	id, ok := m.ID(path)
	if !ok || id == 0 {
		t.Fatalf("own cgroup %s has no id below %s", path, m.Root)
	}
	if _, err := m.Stat(path); err != nil {
		t.Errorf("own memory.stat: %v", err)
	}
}

func TestFiles(t *testing.T) {
	for _, v1 := range []bool{true, false} {
		m := Memory{Root: t.TempDir(), V1: v1}
		dir := m.Dir("/kubepods")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		usage, limit := "memory.current", "memory.max"
		if v1 {
			usage, limit = "memory.usage_in_bytes", "memory.limit_in_bytes"
		}
		write := func(name, data string) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("memory.stat", "anon 4096\nfile 8192\n")
		write(usage, "12288\n")
		write(limit, "1073741824\n")
		st, err := m.Stat("/kubepods")
		if a, _ := st.Get("anon"); err != nil || a != 4096 {
			t.Errorf("v1=%v: stat %v %v", v1, st, err)
		}
		if _, err := st.Get("shmem"); err == nil || !strings.Contains(err.Error(), "shmem") {
			t.Errorf("v1=%v: missing key: %v", v1, err)
		}
		if u, err := m.Usage("/kubepods"); err != nil || u != 12288 {
			t.Errorf("v1=%v: usage %d %v", v1, u, err)
		}
		if l, ok := m.Limit("/kubepods"); !ok || l != 1<<30 {
			t.Errorf("v1=%v: limit %d %v", v1, l, ok)
		}
		write(limit, map[bool]string{true: "9223372036854771712\n", false: "max\n"}[v1])
		if l, ok := m.Limit("/kubepods"); ok {
			t.Errorf("v1=%v: unlimited read as %d", v1, l)
		}
		if _, ok := m.Limit("/gone"); ok {
			t.Errorf("v1=%v: a missing cgroup has a limit", v1)
		}
	}
}

func TestPopulated(t *testing.T) {
	v1 := Memory{Root: t.TempDir(), V1: true}
	mk := func(m Memory, path string, files map[string]string) {
		t.Helper()
		if err := os.MkdirAll(m.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(m.Dir(path), name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk(v1, "/pod/ctr", map[string]string{"cgroup.procs": ""})
	mk(v1, "/pod/ctr/init.scope", map[string]string{"cgroup.procs": "4242\n"})
	mk(v1, "/pod/empty", map[string]string{"cgroup.procs": "\n"})
	v2 := Memory{Root: t.TempDir()}
	mk(v2, "/pod/ctr", map[string]string{"cgroup.events": "populated 1\nfrozen 0\n"})
	mk(v2, "/pod/empty", map[string]string{"cgroup.events": "populated 0\nfrozen 0\n"})
	mk(v2, "/pod/broken", map[string]string{"cgroup.events": "frozen 0\n"})
	cases := []struct {
		m       Memory
		path    string
		want    bool
		wantErr bool
	}{
		{v1, "/pod/ctr", true, false}, // a process in a sub-cgroup counts
		{v1, "/pod", true, false},
		{v1, "/pod/empty", false, false},
		{v1, "/gone", false, false},
		{v2, "/pod/ctr", true, false},
		{v2, "/pod/empty", false, false},
		{v2, "/gone", false, false},
		{v2, "/pod/broken", false, true},
	}
	for _, c := range cases {
		got, err := c.m.Populated(c.path)
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("v1=%v %s: %v, %v; want %v (error: %v)", c.m.V1, c.path, got, err, c.want, c.wantErr)
		}
	}
}

// TestProcsBounded: a subtree of 5,000 cgroups (a tenant may make them
// below its container) is walked no further than MaxCgroupsWalked, and a
// limit on the processes stops the walk at once.
func TestProcsBounded(t *testing.T) {
	root := t.TempDir()
	for i := range 5000 {
		dir := filepath.Join(root, "ctr", fmt.Sprintf("c%04d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(fmt.Sprintf("%d\n", 1000+i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := Memory{Root: root, V1: true}
	all, err := m.Procs("/ctr", 0)
	if err != nil || len(all) >= 5000 || len(all) < MaxCgroupsWalked-1 {
		t.Errorf("%d processes (%v) from 5,000 cgroups, want those of the first %d walked", len(all), err, MaxCgroupsWalked)
	}
	some, err := m.Procs("/ctr", 10)
	if err != nil || len(some) != 10 {
		t.Errorf("%d processes (%v), want 10", len(some), err)
	}
}

func TestSwap(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "kubepods", "pod1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.swap.current"), []byte("4096\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, ok := (Memory{Root: root}).Swap("/kubepods/pod1"); !ok || n != 4096 {
		t.Errorf("swap %d %v, want 4096", n, ok)
	}
	// v1 has no memory.swap.current; a cgroup gone has nothing.
	if _, ok := (Memory{Root: root, V1: true}).Swap("/kubepods/pod1"); ok {
		t.Error("v1: swap read")
	}
	if _, ok := (Memory{Root: root}).Swap("/kubepods/gone"); ok {
		t.Error("a cgroup that is gone: swap read")
	}
}
