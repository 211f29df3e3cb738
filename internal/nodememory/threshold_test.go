// SPDX-License-Identifier: Apache-2.0

package nodememory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
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
`), "")
	th := kc.Thresholds
	if err != nil || th[MemoryAvailable].Bytes != 256<<20 || th[AllocatableMemoryAvailable].Bytes != 256<<20 ||
		kc.Kubepods != "/process_api/1234/kubepods" || !slices.Equal(kc.EnforceNodeAllocatable, []string{EnforcePods}) {
		t.Errorf("config: %+v %v", kc, err)
	}
	kc, err = ReadKubeletConfig(file("defaults.yaml", "kind: KubeletConfiguration\n"), "")
	if err != nil || kc.Thresholds[MemoryAvailable].Bytes != 100<<20 || kc.Thresholds[AllocatableMemoryAvailable].Bytes != 100<<20 || kc.Kubepods != "/kubepods" {
		t.Errorf("defaults: %+v %v", kc, err)
	}
	// enforceNodeAllocatable without pods: the kubelet copies no threshold
	// to allocatableMemory.available.
	kc, err = ReadKubeletConfig(file("none.yaml", "kind: KubeletConfiguration\nenforceNodeAllocatable: [none]\ncgroupDriver: systemd\n"), "")
	if _, ok := kc.Thresholds[AllocatableMemoryAvailable]; err != nil || ok || kc.Thresholds[MemoryAvailable].Bytes != 100<<20 || kc.Kubepods != "/kubepods.slice" {
		t.Errorf("enforceNodeAllocatable none: %+v %v", kc, err)
	}
	kc, err = ReadKubeletConfig(file("noqos.yaml", "kind: KubeletConfiguration\ncgroupsPerQOS: false\n"), "")
	if err != nil || kc.Kubepods != "" {
		t.Errorf("cgroupsPerQOS false: %+v %v", kc, err)
	}
	if _, err := ReadKubeletConfig(file("pod.yaml", "kind: Pod\n"), ""); err == nil {
		t.Error("a Pod read as a kubelet config")
	}
	if _, err := ReadKubeletConfig(file("bad.yaml", "kind: KubeletConfiguration\nevictionHard:\n  memory.available: lots\n"), ""); err == nil {
		t.Error("bad quantity accepted")
	}
	if _, err := ReadKubeletConfig(filepath.Join(dir, "absent"), ""); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestKubeletConfigAsTheKubeletBuildsIt: mergeDefaultEvictionSettings,
// soft thresholds with their grace periods, and --config-dir's drop-ins,
// each as cmd/kubelet/app/server.go and pkg/kubelet/eviction read them.
func TestKubeletConfigAsTheKubeletBuildsIt(t *testing.T) {
	const head = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
	for _, tc := range []struct {
		name    string
		main    string
		dropins []string
		hard    string // Thresholds.String()
		soft    string
		grace   time.Duration // of memory.available
		err     bool
	}{
		{name: "evictionHard without memory: no memory threshold",
			main: head + "evictionHard: {nodefs.available: 5%}\n", hard: ""},
		{name: "merged with the default",
			main: head + "mergeDefaultEvictionSettings: true\nevictionHard: {nodefs.available: 5%}\n",
			hard: "allocatableMemory.available<100Mi,memory.available<100Mi"},
		{name: "merge keeps what is set",
			main: head + "mergeDefaultEvictionSettings: true\nevictionHard: {memory.available: 1Gi}\n",
			hard: "allocatableMemory.available<1Gi,memory.available<1Gi"},
		{name: "soft, with its grace period",
			main: head + "evictionSoft: {memory.available: 2Gi}\nevictionSoftGracePeriod: {memory.available: 1m30s}\n",
			hard: "allocatableMemory.available<100Mi,memory.available<100Mi", soft: "memory.available<2Gi", grace: 90 * time.Second},
		{name: "soft without a grace period: the kubelet refuses it",
			main: head + "evictionSoft: {memory.available: 2Gi}\n", err: true},
		{name: "a drop-in's threshold merges into the defaulted map",
			main:    head,
			dropins: []string{head + "evictionHard: {memory.available: 500Mi}\n"},
			hard:    "allocatableMemory.available<500Mi,memory.available<500Mi"},
		{name: "drop-ins in order, the last wins; null removes",
			main: head + "evictionHard: {memory.available: 300Mi}\n",
			dropins: []string{head + "evictionHard: {memory.available: 400Mi}\nevictionSoft: {memory.available: 1Gi}\nevictionSoftGracePeriod: {memory.available: 10s}\n",
				head + "evictionHard: {memory.available: null}\nenforceNodeAllocatable: [none]\n"},
			hard: "", soft: "memory.available<1Gi", grace: 10 * time.Second},
		{name: "a drop-in without kind: the kubelet refuses it",
			main: head, dropins: []string{"evictionHard: {memory.available: 1Gi}\n"}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			main := filepath.Join(dir, "config.yaml")
			os.WriteFile(main, []byte(tc.main), 0o644)
			dropins := filepath.Join(dir, "config.d")
			os.MkdirAll(filepath.Join(dropins, "sub"), 0o755)
			// Not a .conf file: never read.
			os.WriteFile(filepath.Join(dropins, "00-ignored.yaml"), []byte("garbage: ["), 0o644)
			for i, d := range tc.dropins {
				// Lexical order across the tree, as filepath.WalkDir goes.
				name := filepath.Join(dropins, fmt.Sprintf("%02d-x.conf", 10*(i+1)))
				if i == 1 {
					name = filepath.Join(dropins, "sub", "x.conf")
				}
				os.WriteFile(name, []byte(d), 0o644)
			}
			kc, err := ReadKubeletConfig(main, dropins)
			if tc.err {
				if err == nil {
					t.Fatalf("accepted: %+v", kc)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if kc.Thresholds.String() != tc.hard || kc.Soft.String() != tc.soft || kc.SoftGrace[MemoryAvailable] != tc.grace {
				t.Errorf("hard %q soft %q grace %v; want %q %q %v", kc.Thresholds, kc.Soft, kc.SoftGrace[MemoryAvailable], tc.hard, tc.soft, tc.grace)
			}
		})
	}
	// A drop-in directory that is not there has no drop-ins.
	dir := t.TempDir()
	main := filepath.Join(dir, "config.yaml")
	os.WriteFile(main, []byte(head), 0o644)
	if kc, err := ReadKubeletConfig(main, filepath.Join(dir, "absent")); err != nil || kc.Thresholds.String() != "allocatableMemory.available<100Mi,memory.available<100Mi" {
		t.Errorf("absent drop-in dir: %+v %v", kc, err)
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
	f.Add([]byte("kind: KubeletConfiguration\nevictionHard:\n  memory.available: 300Mi\nenforceNodeAllocatable: [pods]\ncgroupRoot: /x\ncgroupDriver: cgroupfs\n"), []byte{})
	f.Add([]byte(`{"kind":"KubeletConfiguration","evictionHard":{"memory.available":"5%"},"cgroupDriver":"systemd","cgroupsPerQOS":false}`), []byte("kind: KubeletConfiguration\napiVersion: v\ncgroupsPerQOS: null\n"))
	f.Add([]byte("evictionHard: {}\n"), []byte{})
	f.Add([]byte("kind: KubeletConfiguration\nmergeDefaultEvictionSettings: true\nevictionHard: {nodefs.available: 5%}\n"),
		[]byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nevictionSoft: {memory.available: 1Gi}\nevictionSoftGracePeriod: {memory.available: 1m}\n"))
	f.Fuzz(func(t *testing.T, data, dropin []byte) {
		var dropins [][]byte
		if len(dropin) > 0 {
			dropins = append(dropins, dropin)
		}
		kc, err := ParseKubeletConfig(data, dropins...)
		if err != nil {
			return
		}
		for signal := range kc.Soft {
			if _, ok := kc.SoftGrace[signal]; !ok {
				t.Errorf("soft threshold %s without a grace period", signal)
			}
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
