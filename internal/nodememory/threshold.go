// SPDX-License-Identifier: Apache-2.0

// Package nodememory computes the kubelet's memory eviction signals,
// memory.available and allocatableMemory.available, from the node's cgroup
// files the way the kubelet does, and says when they cross their thresholds.
package nodememory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// The kubelet's memory signals.
const (
	MemoryAvailable            = "memory.available"
	AllocatableMemoryAvailable = "allocatableMemory.available"
)

// DefaultEvictionHard is the kubelet's default for memory.
const DefaultEvictionHard = MemoryAvailable + "<" + defaultMemoryAvailable

// defaultMemoryAvailable is the quantity of DefaultEvictionHard.
const defaultMemoryAvailable = "100Mi"

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
	// FromFile says these were read from the kubelet's config file, not
	// taken from flags.
	FromFile bool
	// Thresholds are the hard thresholds (evictionHard).
	Thresholds Thresholds
	// Soft are the soft thresholds (evictionSoft), each with its grace
	// period in SoftGrace: the kubelet evicts once its signal has stayed
	// below for that long.
	Soft      Thresholds
	SoftGrace map[string]time.Duration
	// EnforceNodeAllocatable as the kubelet applies it (default [pods]).
	EnforceNodeAllocatable []string
	// Kubepods is the kubepods cgroup that the kubelet's cgroupRoot and
	// cgroup driver give, relative to a hierarchy's root; empty when it
	// cannot be told (no QoS cgroups, or a systemd root other than /).
	Kubepods string
}

// dropinsMax bounds the drop-in files read, and fileMax each file: a
// kubelet's are a few small files.
const (
	dropinsMax = 256
	fileMax    = 1 << 20
)

// ErrEmptyConfig means the kubelet config file is empty. No kubelet runs with
// one (its file names its kind); a hostPath FileOrCreate mount makes one
// where the node keeps its config elsewhere.
var ErrEmptyConfig = errors.New("the file is empty: it is not the kubelet's (a FileOrCreate mount makes an empty file where the node keeps its config elsewhere)")

// ReadKubeletConfig reads the kubelet's configuration the way the kubelet
// builds it (cmd/kubelet/app/server.go): the file at path, its evictionHard
// defaulted (absent: the kubelet's default; present with
// mergeDefaultEvictionSettings: the default fills the signals it omits),
// then, when dropinDir is not empty, every *.conf file below it in lexical
// order as a JSON merge patch over it (the kubelet's --config-dir). Of it,
// oomtrace takes evictionHard, evictionSoft and evictionSoftGracePeriod,
// enforceNodeAllocatable, cgroupRoot, cgroupDriver and cgroupsPerQOS.
func ReadKubeletConfig(path, dropinDir string) (KubeletConfig, error) {
	data, err := readBounded(path)
	if err != nil {
		return KubeletConfig{}, fmt.Errorf("kubelet config: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return KubeletConfig{}, fmt.Errorf("kubelet config %s: %w", path, ErrEmptyConfig)
	}
	var dropins [][]byte
	if dropinDir != "" {
		dropins, err = readDropins(dropinDir)
		if err != nil {
			return KubeletConfig{}, fmt.Errorf("kubelet config drop-ins: %w", err)
		}
	}
	kc, err := ParseKubeletConfig(data, dropins...)
	if err != nil {
		return KubeletConfig{}, fmt.Errorf("kubelet config %s: %w", path, err)
	}
	kc.FromFile = true
	return kc, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, fileMax+1))
	if err != nil {
		return nil, err
	}
	if len(data) > fileMax {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, fileMax)
	}
	return data, nil
}

// readDropins reads the *.conf files below dir in lexical order, as the
// kubelet walks them. A directory that is not there has none.
func readDropins(dir string) ([][]byte, error) {
	var out [][]byte
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() || filepath.Ext(d.Name()) != ".conf" {
			return nil
		}
		if len(out) == dropinsMax {
			return fmt.Errorf("%s: more than %d drop-in files", dir, dropinsMax)
		}
		data, err := readBounded(p)
		if err != nil {
			return err
		}
		out = append(out, data)
		return nil
	})
	return out, err
}

// ParseKubeletConfig is ReadKubeletConfig of the main file's content and
// its drop-ins' contents, in order.
func ParseKubeletConfig(data []byte, dropins ...[]byte) (KubeletConfig, error) {
	base, err := configObject(data)
	if err != nil {
		return KubeletConfig{}, err
	}
	if kind, _ := base["kind"].(string); kind != "" && kind != "KubeletConfiguration" {
		return KubeletConfig{}, fmt.Errorf("kind %q, want KubeletConfiguration", kind)
	}
	// The kubelet defaults evictionHard on the main file only, before the
	// drop-ins: a drop-in's evictionHard merges into the result.
	switch hard, ok := base["evictionHard"].(map[string]any); {
	case base["evictionHard"] == nil:
		base["evictionHard"] = map[string]any{MemoryAvailable: defaultMemoryAvailable}
	case ok && base["mergeDefaultEvictionSettings"] == true:
		if _, set := hard[MemoryAvailable]; !set {
			hard[MemoryAvailable] = defaultMemoryAvailable
		}
	}
	merged := any(base)
	for i, d := range dropins {
		patch, err := configObject(d)
		if err != nil {
			return KubeletConfig{}, fmt.Errorf("drop-in %d: %w", i+1, err)
		}
		if patch["apiVersion"] == nil || patch["kind"] == nil {
			return KubeletConfig{}, fmt.Errorf("drop-in %d: no apiVersion or kind (the kubelet refuses it)", i+1)
		}
		merged = mergePatch(merged, patch)
	}
	js, err := json.Marshal(merged)
	if err != nil {
		return KubeletConfig{}, err
	}
	var cfg struct {
		EvictionHard            map[string]string `json:"evictionHard"`
		EvictionSoft            map[string]string `json:"evictionSoft"`
		EvictionSoftGracePeriod map[string]string `json:"evictionSoftGracePeriod"`
		EnforceNodeAllocatable  *[]string         `json:"enforceNodeAllocatable"`
		CgroupRoot              string            `json:"cgroupRoot"`
		CgroupDriver            string            `json:"cgroupDriver"`
		CgroupsPerQOS           *bool             `json:"cgroupsPerQOS"`
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		return KubeletConfig{}, err
	}
	kc := KubeletConfig{EnforceNodeAllocatable: []string{EnforcePods}}
	if cfg.EnforceNodeAllocatable != nil {
		kc.EnforceNodeAllocatable = *cfg.EnforceNodeAllocatable
	}
	if kc.Thresholds, err = fromPairs(cfg.EvictionHard, kc.EnforceNodeAllocatable); err != nil {
		return KubeletConfig{}, err
	}
	// Soft thresholds apply to their own signal only: the kubelet copies
	// hard ones to allocatableMemory.available, not soft ones.
	if kc.Soft, err = fromPairs(cfg.EvictionSoft, nil); err != nil {
		return KubeletConfig{}, fmt.Errorf("evictionSoft: %w", err)
	}
	if len(kc.Soft) > 0 {
		kc.SoftGrace = map[string]time.Duration{}
	}
	for signal := range kc.Soft {
		g, ok := cfg.EvictionSoftGracePeriod[signal]
		if !ok {
			return KubeletConfig{}, fmt.Errorf("evictionSoft %s has no evictionSoftGracePeriod (the kubelet refuses it)", signal)
		}
		d, err := time.ParseDuration(g)
		if err != nil || d < 0 {
			return KubeletConfig{}, fmt.Errorf("evictionSoftGracePeriod %s: %q is not a duration", signal, g)
		}
		kc.SoftGrace[signal] = d
	}
	if cfg.CgroupsPerQOS == nil || *cfg.CgroupsPerQOS {
		kc.Kubepods = KubepodsCgroup(cfg.CgroupRoot, cfg.CgroupDriver)
	}
	return kc, nil
}

// configObject is a YAML or JSON configuration file as a JSON object.
func configObject(data []byte) (map[string]any, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.Unmarshal(js, &obj); err != nil {
		return nil, fmt.Errorf("not an object: %w", err)
	}
	if obj == nil {
		obj = map[string]any{}
	}
	return obj, nil
}

// mergePatch applies a JSON merge patch (RFC 7386), as the kubelet does
// with each drop-in: objects merge member by member, null removes, any
// other value replaces.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
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
