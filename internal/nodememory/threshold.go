// Package nodememory computes the kubelet's memory eviction signals,
// memory.available and allocatableMemory.available, from the node's cgroup
// files the way the kubelet does, and says when they cross their thresholds.
package nodememory

import (
	"fmt"
	"math"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// The kubelet's memory signals.
const (
	MemoryAvailable            = "memory.available"
	AllocatableMemoryAvailable = "allocatableMemory.available"
)

// DefaultEvictionHard is the kubelet's default for memory.
const DefaultEvictionHard = "memory.available<100Mi"

// Threshold is one hard eviction threshold: an absolute quantity or a
// percentage of the signal's capacity.
type Threshold struct {
	Signal  string
	Bytes   int64   // when Percent is 0
	Percent float64 // of capacity, (0, 100]
}

// Of is the threshold in bytes for a signal of this capacity.
func (t Threshold) Of(capacity uint64) uint64 {
	if t.Percent > 0 {
		return uint64(math.Round(float64(capacity) * t.Percent / 100))
	}
	return uint64(t.Bytes)
}

func (t Threshold) String() string {
	if t.Percent > 0 {
		return fmt.Sprintf("%s<%g%%", t.Signal, t.Percent)
	}
	return fmt.Sprintf("%s<%s", t.Signal, resource.NewQuantity(t.Bytes, resource.BinarySI).String())
}

// Thresholds are the memory thresholds by signal.
type Thresholds map[string]Threshold

// EnforcePods is the enforceNodeAllocatable key with which the kubelet
// limits the kubepods cgroup and, only then, copies every hard
// memory.available threshold to allocatableMemory.available. It is the
// kubelet's default.
const EnforcePods = "pods"

// ParseEvictionHard reads the kubelet's --eviction-hard syntax:
// "memory.available<100Mi,nodefs.available<10%". Signals other than memory
// are accepted and ignored; "<" is the only operator the kubelet knows.
// enforceNodeAllocatable is the kubelet's --enforce-node-allocatable: with
// "pods" in it, memory.available applies to allocatableMemory.available
// too unless that one is given.
func ParseEvictionHard(s string, enforceNodeAllocatable []string) (Thresholds, error) {
	pairs := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		signal, value, ok := strings.Cut(part, "<")
		if !ok {
			return nil, fmt.Errorf("eviction threshold %q: want SIGNAL<QUANTITY or SIGNAL<PERCENT%%", part)
		}
		pairs[strings.TrimSpace(signal)] = strings.TrimSpace(value)
	}
	return fromPairs(pairs, enforceNodeAllocatable)
}

func fromPairs(pairs map[string]string, enforceNodeAllocatable []string) (Thresholds, error) {
	th := Thresholds{}
	for signal, value := range pairs {
		if signal == "" {
			return nil, fmt.Errorf("eviction threshold <%s: no signal", value)
		}
		if signal != MemoryAvailable && signal != AllocatableMemoryAvailable {
			continue
		}
		t := Threshold{Signal: signal}
		if pct, ok := strings.CutSuffix(value, "%"); ok {
			var p float64
			if _, err := fmt.Sscanf(pct, "%g", &p); err != nil || p <= 0 || p > 100 || math.IsNaN(p) {
				return nil, fmt.Errorf("eviction threshold %s<%s: percentage must be in (0, 100]", signal, value)
			}
			t.Percent = p
		} else {
			q, err := resource.ParseQuantity(value)
			if err != nil {
				return nil, fmt.Errorf("eviction threshold %s<%s: %w", signal, value, err)
			}
			if q.Sign() < 0 {
				return nil, fmt.Errorf("eviction threshold %s<%s: negative", signal, value)
			}
			b, ok := q.AsInt64()
			if !ok {
				return nil, fmt.Errorf("eviction threshold %s<%s: out of range", signal, value)
			}
			t.Bytes = b
		}
		th[signal] = t
	}
	if m, ok := th[MemoryAvailable]; ok && slices.Contains(enforceNodeAllocatable, EnforcePods) {
		if _, ok := th[AllocatableMemoryAvailable]; !ok {
			m.Signal = AllocatableMemoryAvailable
			th[AllocatableMemoryAvailable] = m
		}
	}
	return th, nil
}

// String lists the thresholds in the kubelet's syntax.
func (th Thresholds) String() string {
	var parts []string
	for _, t := range th {
		parts = append(parts, t.String())
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// KubeletConfig is what oomtrace takes from a KubeletConfiguration file.
type KubeletConfig struct {
	Thresholds Thresholds
	// EnforceNodeAllocatable as the kubelet applies it (default [pods]).
	EnforceNodeAllocatable []string
	// Kubepods is the kubepods cgroup that the kubelet's cgroupRoot and
	// cgroup driver give, relative to a hierarchy's root; empty when it
	// cannot be told (no QoS cgroups, or a systemd root other than /).
	Kubepods string
}

// ReadKubeletConfig reads evictionHard, enforceNodeAllocatable, cgroupRoot,
// cgroupDriver and cgroupsPerQOS from a KubeletConfiguration file (YAML or
// JSON), with the kubelet's defaults for what it does not set.
func ReadKubeletConfig(path string) (KubeletConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return KubeletConfig{}, fmt.Errorf("kubelet config: %w", err)
	}
	kc, err := ParseKubeletConfig(data)
	if err != nil {
		return KubeletConfig{}, fmt.Errorf("kubelet config %s: %w", path, err)
	}
	return kc, nil
}

// ParseKubeletConfig is ReadKubeletConfig of a file's content.
func ParseKubeletConfig(data []byte) (KubeletConfig, error) {
	var cfg struct {
		Kind                   string            `json:"kind"`
		EvictionHard           map[string]string `json:"evictionHard"`
		EnforceNodeAllocatable *[]string         `json:"enforceNodeAllocatable"`
		CgroupRoot             string            `json:"cgroupRoot"`
		CgroupDriver           string            `json:"cgroupDriver"`
		CgroupsPerQOS          *bool             `json:"cgroupsPerQOS"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return KubeletConfig{}, err
	}
	if cfg.Kind != "" && cfg.Kind != "KubeletConfiguration" {
		return KubeletConfig{}, fmt.Errorf("kind %q, want KubeletConfiguration", cfg.Kind)
	}
	var err error
	kc := KubeletConfig{EnforceNodeAllocatable: []string{EnforcePods}}
	if cfg.EnforceNodeAllocatable != nil {
		kc.EnforceNodeAllocatable = *cfg.EnforceNodeAllocatable
	}
	if cfg.EvictionHard == nil {
		kc.Thresholds, err = ParseEvictionHard(DefaultEvictionHard, kc.EnforceNodeAllocatable)
	} else {
		kc.Thresholds, err = fromPairs(cfg.EvictionHard, kc.EnforceNodeAllocatable)
	}
	if err != nil {
		return KubeletConfig{}, err
	}
	if cfg.CgroupsPerQOS == nil || *cfg.CgroupsPerQOS {
		kc.Kubepods = KubepodsCgroup(cfg.CgroupRoot, cfg.CgroupDriver)
	}
	return kc, nil
}

// KubepodsCgroup is the kubepods cgroup for a kubelet cgroupRoot and
// driver: ROOT/kubepods with cgroupfs, /kubepods.slice with systemd and
// the root /. Empty for other systemd roots.
func KubepodsCgroup(root, driver string) string {
	if root == "" {
		root = "/"
	}
	switch driver {
	case "systemd":
		if root == "/" {
			return "/kubepods.slice"
		}
		return ""
	default:
		return path.Join("/", root, "kubepods")
	}
}
