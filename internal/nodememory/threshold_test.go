package nodememory

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseEvictionHard(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"memory.available<100Mi", "allocatableMemory.available<100Mi,memory.available<100Mi", ""},
		{"memory.available<100Mi,nodefs.available<10%,imagefs.available<15%", "allocatableMemory.available<100Mi,memory.available<100Mi", ""},
		{"memory.available<5%", "allocatableMemory.available<5%,memory.available<5%", ""},
		{" memory.available < 1Gi , ", "allocatableMemory.available<1Gi,memory.available<1Gi", ""},
		{"memory.available<500M", "allocatableMemory.available<500M,memory.available<500M", ""},
		{"memory.available<1Gi,allocatableMemory.available<2Gi", "allocatableMemory.available<2Gi,memory.available<1Gi", ""},
		{"nodefs.available<10%", "", ""},
		{"", "", ""},
		{"memory.available>100Mi", "", "want SIGNAL<QUANTITY"},
		{"memory.available<lots", "", "memory.available<lots"},
		{"memory.available<-1Mi", "", "negative"},
		{"memory.available<0%", "", "percentage"},
		{"memory.available<101%", "", "percentage"},
		{"memory.available<x%", "", "percentage"},
		{"<100Mi", "", "no signal"},
	}
	for _, tt := range tests {
		th, err := ParseEvictionHard(tt.in, []string{EnforcePods})
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		// String prints quantities canonically (binary SI); decimal ones
		// come out in bytes: compare through a second parse.
		again, err := ParseEvictionHard(th.String(), []string{EnforcePods})
		if err != nil || again.String() != th.String() {
			t.Errorf("%q: round trip %q -> %v %v", tt.in, th.String(), again, err)
		}
		want := mustThresholds(t, tt.want)
		if len(want) != len(th) {
			t.Errorf("%q: %v, want %v", tt.in, th, want)
		}
		for k, w := range want {
			if g := th[k]; g.Of(1<<40) != w.Of(1<<40) || g.Percent != w.Percent {
				t.Errorf("%q: %s = %v, want %v", tt.in, k, g, w)
			}
		}
	}
	if got := mustThresholds(t, "memory.available<500M")[MemoryAvailable].Bytes; got != 500_000_000 {
		t.Errorf("500M = %d bytes", got)
	}
	if got := mustThresholds(t, "memory.available<5%")[MemoryAvailable].Of(1000); got != 50 {
		t.Errorf("5%% of 1000 = %d", got)
	}
}

func TestReadKubeletConfig(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	kc, err := ReadKubeletConfig(file("config.yaml", `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
evictionHard:
  memory.available: "256Mi"
  nodefs.available: "10%"
evictionPressureTransitionPeriod: 5m0s
cgroupDriver: cgroupfs
cgroupRoot: /process_api/1234
`))
	th := kc.Thresholds
	if err != nil || th[MemoryAvailable].Bytes != 256<<20 || th[AllocatableMemoryAvailable].Bytes != 256<<20 ||
		kc.Kubepods != "/process_api/1234/kubepods" || !slices.Equal(kc.EnforceNodeAllocatable, []string{EnforcePods}) {
		t.Errorf("config: %+v %v", kc, err)
	}
	kc, err = ReadKubeletConfig(file("defaults.yaml", "kind: KubeletConfiguration\n"))
	if err != nil || kc.Thresholds[MemoryAvailable].Bytes != 100<<20 || kc.Thresholds[AllocatableMemoryAvailable].Bytes != 100<<20 || kc.Kubepods != "/kubepods" {
		t.Errorf("defaults: %+v %v", kc, err)
	}
	// enforceNodeAllocatable without pods: the kubelet copies no threshold
	// to allocatableMemory.available.
	kc, err = ReadKubeletConfig(file("none.yaml", "kind: KubeletConfiguration\nenforceNodeAllocatable: [none]\ncgroupDriver: systemd\n"))
	if _, ok := kc.Thresholds[AllocatableMemoryAvailable]; err != nil || ok || kc.Thresholds[MemoryAvailable].Bytes != 100<<20 || kc.Kubepods != "/kubepods.slice" {
		t.Errorf("enforceNodeAllocatable none: %+v %v", kc, err)
	}
	kc, err = ReadKubeletConfig(file("noqos.yaml", "kind: KubeletConfiguration\ncgroupsPerQOS: false\n"))
	if err != nil || kc.Kubepods != "" {
		t.Errorf("cgroupsPerQOS false: %+v %v", kc, err)
	}
	if _, err := ReadKubeletConfig(file("pod.yaml", "kind: Pod\n")); err == nil {
		t.Error("a Pod read as a kubelet config")
	}
	if _, err := ReadKubeletConfig(file("bad.yaml", "kind: KubeletConfiguration\nevictionHard:\n  memory.available: lots\n")); err == nil {
		t.Error("bad quantity accepted")
	}
	if _, err := ReadKubeletConfig(filepath.Join(dir, "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestKubepodsCgroup(t *testing.T) {
	for _, tt := range []struct{ root, driver, want string }{
		{"", "", "/kubepods"}, {"/", "cgroupfs", "/kubepods"}, {"/a/b", "cgroupfs", "/a/b/kubepods"}, {"a", "", "/a/kubepods"},
		{"/", "systemd", "/kubepods.slice"}, {"", "systemd", "/kubepods.slice"}, {"/custom.slice", "systemd", ""},
	} {
		if got := KubepodsCgroup(tt.root, tt.driver); got != tt.want {
			t.Errorf("KubepodsCgroup(%q, %q) = %q, want %q", tt.root, tt.driver, got, tt.want)
		}
	}
}

func FuzzParseEvictionHard(f *testing.F) {
	for _, s := range []string{DefaultEvictionHard, "memory.available<10%,nodefs.available<5%", "memory.available<1e3", "a<b<c", ",,", "memory.available<0.5%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		th, err := ParseEvictionHard(s, []string{EnforcePods})
		if err != nil {
			return
		}
		for name, v := range th {
			if name != MemoryAvailable && name != AllocatableMemoryAvailable {
				t.Fatalf("signal %q kept", name)
			}
			if v.Bytes < 0 || v.Percent < 0 || v.Percent > 100 {
				t.Fatalf("%q: %+v", s, v)
			}
			_ = v.Of(^uint64(0) >> 1)
		}
		if _, ok := th[MemoryAvailable]; ok {
			if _, ok := th[AllocatableMemoryAvailable]; !ok {
				t.Fatalf("%q: memory.available not copied to allocatable", s)
			}
		}
	})
}

// FuzzParseKubeletConfig: any file where the kubelet's config should be
// gives a config or an error, never a panic; a config's kubepods cgroup
// is absolute or empty, and its thresholds print as the kubelet's syntax
// that parses back to the same.
func FuzzParseKubeletConfig(f *testing.F) {
	f.Add([]byte("kind: KubeletConfiguration\nevictionHard:\n  memory.available: 300Mi\nenforceNodeAllocatable: [pods]\ncgroupRoot: /x\ncgroupDriver: cgroupfs\n"))
	f.Add([]byte(`{"kind":"KubeletConfiguration","evictionHard":{"memory.available":"5%"},"cgroupDriver":"systemd","cgroupsPerQOS":false}`))
	f.Add([]byte("evictionHard: {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		kc, err := ParseKubeletConfig(data)
		if err != nil {
			return
		}
		if kc.Kubepods != "" && !strings.HasPrefix(kc.Kubepods, "/") {
			t.Errorf("kubepods %q is not absolute", kc.Kubepods)
		}
		if s := kc.Thresholds.String(); s != "" {
			if again, err := ParseEvictionHard(s, kc.EnforceNodeAllocatable); err != nil || again.String() != s {
				t.Errorf("thresholds %q parse back as %q, %v", s, again.String(), err)
			}
		}
	})
}
