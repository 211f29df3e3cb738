// SPDX-License-Identifier: Apache-2.0

package nodememory

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/kernfile"
)

const (
	ki = int64(1) << 10
	mi = int64(1) << 20
	gi = int64(1) << 30
)

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func meminfo(t *testing.T, dir string, memTotal int64) string {
	t.Helper()
	write(t, dir, "meminfo", fmt.Sprintf("MemTotal:       %d kB\nMemFree:         1000 kB\nMemAvailable:    2000 kB\n", memTotal/ki))
	return filepath.Join(dir, "meminfo")
}

// v1Tree writes a cgroup v1 memory hierarchy with a cgroupfs kubepods.
func v1Tree(t *testing.T, rootUsage, rootInactive, podsUsage, podsInactive int64, podsLimit string) Source {
	dir := t.TempDir()
	root := filepath.Join(dir, "memory")
	write(t, root, "memory.usage_in_bytes", strconv.FormatInt(rootUsage, 10)+"\n")
	// The kubelet takes total_inactive_file (hierarchical), not inactive_file.
	write(t, root, "memory.stat", fmt.Sprintf("cache 100\nrss 200\ninactive_file 4096\nactive_file 1\ntotal_rss 300\ntotal_inactive_file %d\ntotal_active_file 5\n", rootInactive))
	pods := filepath.Join(root, "kubepods")
	write(t, pods, "memory.usage_in_bytes", strconv.FormatInt(podsUsage, 10)+"\n")
	write(t, pods, "memory.stat", fmt.Sprintf("inactive_file 1\ntotal_inactive_file %d\n", podsInactive))
	write(t, pods, "memory.limit_in_bytes", podsLimit+"\n")
	return Source{Meminfo: meminfo(t, dir, 8*gi), Memory: cgroup.Memory{Root: root, V1: true}, Kubepods: "/kubepods"}
}

// v2Tree writes a unified hierarchy with a systemd kubepods.slice.
func v2Tree(t *testing.T, anon, file, inactive, podsCurrent, podsInactive int64, podsMax string) Source {
	dir := t.TempDir()
	root := filepath.Join(dir, "cgroup")
	write(t, root, "memory.stat", fmt.Sprintf("anon %d\nfile %d\nkernel 4096\nactive_file 7\ninactive_file %d\n", anon, file, inactive))
	pods := filepath.Join(root, "kubepods.slice")
	write(t, pods, "memory.current", strconv.FormatInt(podsCurrent, 10)+"\n")
	write(t, pods, "memory.stat", fmt.Sprintf("anon 1\nfile 2\ninactive_file %d\n", podsInactive))
	write(t, pods, "memory.max", podsMax+"\n")
	return Source{Meminfo: meminfo(t, dir, 8*gi), Memory: cgroup.Memory{Root: root}, Kubepods: "/kubepods.slice"}
}

func mustThresholds(t *testing.T, s string) Thresholds {
	t.Helper()
	th, err := ParseEvictionHard(s, []string{EnforcePods})
	if err != nil {
		t.Fatal(err)
	}
	return th
}

func check(t *testing.T, what string, got *event.MemorySignal, available, capacity, workingSet int64, source string, threshold int64, below bool) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: null", what)
	}
	if got.AvailableBytes != available || got.CapacityBytes != uint64(capacity) || got.WorkingSetBytes != uint64(workingSet) ||
		got.CapacitySource != source || got.ThresholdBytes == nil || *got.ThresholdBytes != uint64(threshold) || got.BelowThreshold != below {
		th := "null"
		if got.ThresholdBytes != nil {
			th = strconv.FormatUint(*got.ThresholdBytes, 10)
		}
		t.Errorf("%s = {available %d capacity %d (%s) working set %d threshold %s below %v}\nwant {available %d capacity %d (%s) working set %d threshold %d below %v}",
			what, got.AvailableBytes, got.CapacityBytes, got.CapacitySource, got.WorkingSetBytes, th, got.BelowThreshold,
			available, capacity, source, workingSet, threshold, below)
	}
}

func TestReadV1(t *testing.T) {
	// Root: 6 GiB used, 1 GiB of it inactive file -> working set 5 GiB of
	// 8 GiB: 3 GiB available, well above 100 MiB.
	// kubepods: limit 7 GiB (capacity minus reserves) is the kubelet's
	// capacity for allocatableMemory.available, working set 5 GiB - 512 MiB.
	src := v1Tree(t, 6*gi, 1*gi, 5*gi, 512*mi, strconv.FormatInt(7*gi, 10))
	nm, err := src.Read(mustThresholds(t, DefaultEvictionHard), time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "memory.available", nm.MemoryAvailable, 3*gi, 8*gi, 5*gi, CapacityMemTotal, 100*mi, false)
	check(t, "allocatableMemory.available", nm.AllocatableMemoryAvailable, 7*gi-(5*gi-512*mi), 7*gi, 5*gi-512*mi, CapacityKubepodsLimit, 100*mi, false)
}

// TestReadAllocatableAtTheKubeletsEviction: the numbers of a real eviction
// (kubelet 1.37, cgroup v1): kubepods limit 1 GiB, working set 657 MiB + 1
// page of the kubelet's "available: 367024Ki" with threshold 400Mi. The
// kubelet's capacity is the limit, not the Node's allocatable (limit minus
// threshold), which would put available a threshold lower.
func TestReadAllocatableAtTheKubeletsEviction(t *testing.T) {
	limit := 1 * gi
	available := 367024 * ki
	src := v1Tree(t, 2*gi, 0, limit-available, 0, strconv.FormatInt(limit, 10))
	nm, err := src.Read(mustThresholds(t, "memory.available<400Mi"), time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "allocatableMemory.available", nm.AllocatableMemoryAvailable, available, limit, limit-available, CapacityKubepodsLimit, 400*mi, true)
}

// TestReadAtTheThreshold: available equal to the threshold is not below
// it: the kubelet evicts when available < threshold.
func TestReadAtTheThreshold(t *testing.T) {
	limit := 1 * gi
	src := v1Tree(t, 2*gi, 0, limit-400*mi, 0, strconv.FormatInt(limit, 10))
	nm, err := src.Read(mustThresholds(t, "memory.available<400Mi"), time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "allocatableMemory.available", nm.AllocatableMemoryAvailable, 400*mi, limit, limit-400*mi, CapacityKubepodsLimit, 400*mi, false)
}

func TestReadV1Unlimited(t *testing.T) {
	// No kubepods limit (v1 says LONG_MAX rounded to pages): cAdvisor
	// gives the kubelet no available bytes, so there is no allocatable
	// signal. Inactive above usage floors at 0.
	src := v1Tree(t, 8*gi-50*mi, 0, 10*mi, 20*mi, "9223372036854771712")
	nm, err := src.Read(mustThresholds(t, "memory.available<10%"), time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	tenPercent := (8 * gi) / 10
	check(t, "memory.available", nm.MemoryAvailable, 50*mi, 8*gi, 8*gi-50*mi, CapacityMemTotal, tenPercent, true)
	if nm.AllocatableMemoryAvailable != nil {
		t.Errorf("allocatableMemory.available without a kubepods limit: %+v", *nm.AllocatableMemoryAvailable)
	}
}

func TestReadV2(t *testing.T) {
	// The v2 root has no memory.current: usage is anon + file.
	src := v2Tree(t, 3*gi, 2*gi, 1536*mi, 2*gi, 256*mi, strconv.FormatInt(6*gi, 10))
	nm, err := src.Read(mustThresholds(t, "memory.available<500Mi,allocatableMemory.available<1Gi,nodefs.available<10%"), time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "memory.available", nm.MemoryAvailable, 8*gi-(5*gi-1536*mi), 8*gi, 5*gi-1536*mi, CapacityMemTotal, 500*mi, false)
	check(t, "allocatableMemory.available", nm.AllocatableMemoryAvailable, 6*gi-(2*gi-256*mi), 6*gi, 2*gi-256*mi, CapacityKubepodsLimit, 1*gi, false)
	src = v2Tree(t, 3*gi, 2*gi, 1536*mi, 2*gi, 256*mi, "max")
	if nm, err := src.Read(mustThresholds(t, DefaultEvictionHard), time.Unix(1, 0)); err != nil || nm.AllocatableMemoryAvailable != nil {
		t.Errorf("kubepods memory.max max: %+v %v", nm.AllocatableMemoryAvailable, err)
	}
}

// TestReadNotEnforced: with enforceNodeAllocatable [none] the kubelet has
// no allocatable threshold; the signal is still read, never below.
func TestReadNotEnforced(t *testing.T) {
	th, err := ParseEvictionHard(DefaultEvictionHard, []string{"none"})
	if err != nil {
		t.Fatal(err)
	}
	src := v1Tree(t, 2*gi, 0, 7*gi, 0, strconv.FormatInt(7*gi, 10))
	nm, err := src.Read(th, time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	a := nm.AllocatableMemoryAvailable
	if a == nil || a.ThresholdBytes != nil || a.BelowThreshold || a.AvailableBytes != 0 {
		t.Errorf("allocatable without enforcement: %+v", a)
	}
}

func TestReadNoKubepods(t *testing.T) {
	src := v2Tree(t, 1*gi, 1*gi, 0, 0, 0, "max")
	src.Kubepods = ""
	nm, err := src.Read(mustThresholds(t, DefaultEvictionHard), time.Unix(1, 0))
	if err != nil || nm.MemoryAvailable == nil || nm.AllocatableMemoryAvailable != nil {
		t.Errorf("without kubepods: %+v %v", nm, err)
	}
}

func TestReadBrokenFiles(t *testing.T) {
	src := v1Tree(t, 1*gi, 0, 0, 0, "max")
	os.WriteFile(filepath.Join(src.Root, "memory.usage_in_bytes"), []byte("lots\n"), 0o644)
	if _, err := src.Read(nil, time.Unix(1, 0)); err == nil {
		t.Error("garbage usage read without error")
	}
	src = v2Tree(t, 1, 1, 1, 1, 1, "max")
	os.WriteFile(filepath.Join(src.Root, "memory.stat"), []byte("anon 5\n"), 0o644)
	if _, err := src.Read(nil, time.Unix(1, 0)); err == nil || !strings.Contains(err.Error(), "file") {
		t.Errorf("missing file key: %v", err)
	}
	os.WriteFile(src.Meminfo, []byte("MemFree: 1 kB\n"), 0o644)
	if _, err := src.Read(nil, time.Unix(1, 0)); err == nil {
		t.Error("meminfo without MemTotal read without error")
	}
}

// TestReadThisHost compares the signal with this machine's own files, read
// before and after (memory moves in between).
func TestReadThisHost(t *testing.T) {
	src, err := Detect("/proc", "")
	if err != nil {
		t.Skipf("no memory hierarchy: %v", err)
	}
	workingSet := func() int64 {
		if src.V1 {
			u, err := kernfile.ReadUint(filepath.Join(src.Root, "memory.usage_in_bytes"))
			if err != nil {
				t.Fatal(err)
			}
			st, _ := src.Stat("/")
			return int64(u) - int64(st["total_inactive_file"])
		}
		st, _ := src.Stat("/")
		return int64(st["anon"]+st["file"]) - int64(st["inactive_file"])
	}
	memTotal, _, _, err := readMeminfo("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	before := workingSet()
	nm, err := src.Read(mustThresholds(t, DefaultEvictionHard), time.Now())
	after := workingSet()
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := min(before, after)-64*mi, max(before, after)+64*mi
	ws := int64(nm.MemoryAvailable.WorkingSetBytes)
	if ws < lo || ws > hi || nm.MemoryAvailable.CapacityBytes != memTotal || nm.MemoryAvailable.AvailableBytes != int64(memTotal)-ws {
		t.Errorf("memory.available %+v: working set outside [%d, %d] or capacity != MemTotal %d", *nm.MemoryAvailable, lo, hi, memTotal)
	}
	t.Logf("this host (%s, v1=%v): memory.available = %d MiB of %d MiB, working set %d MiB; kubepods %q",
		src.Root, src.V1, nm.MemoryAvailable.AvailableBytes>>20, memTotal>>20, ws>>20, src.Kubepods)
}

func TestSampler(t *testing.T) {
	src := v1Tree(t, 2*gi, 0, 1*gi, 0, strconv.FormatInt(4*gi, 10))
	now := time.Unix(1000, 0)
	var got []event.MemoryPressure
	s := NewSampler(src, mustThresholds(t, "memory.available<1Gi"), SamplerOptions{
		Node: "n1", MaxAge: time.Second, Now: func() time.Time { return now },
	})
	s.setHandler(func(mp event.MemoryPressure) { got = append(got, mp) })
	setRoot := func(usage int64) {
		write(t, src.Root, "memory.usage_in_bytes", strconv.FormatInt(usage, 10))
	}
	s.sample(true) // 6 GiB available: nothing to say
	if len(got) != 0 {
		t.Fatalf("first sample above threshold reported %+v", got)
	}
	now = now.Add(10 * time.Second)
	setRoot(7*gi + 512*mi) // 512 MiB available < 1 GiB
	if nm, _ := s.Sample(); !nm.MemoryAvailable.BelowThreshold {
		t.Fatalf("not below: %+v", nm.MemoryAvailable)
	}
	if len(got) != 1 || got[0].SignalName != MemoryAvailable || !got[0].BelowThreshold || got[0].AvailableBytes != 512*mi ||
		got[0].SinceSeconds == nil || *got[0].SinceSeconds != 10 || got[0].Node != "n1" || got[0].Type != "memory_pressure" {
		t.Fatalf("crossing down: %+v", got)
	}
	// Within MaxAge the sample is reused: no new read, no new event.
	setRoot(1 * gi)
	now = now.Add(500 * time.Millisecond)
	if nm, _ := s.Sample(); !nm.MemoryAvailable.BelowThreshold {
		t.Error("sample within MaxAge was read again")
	}
	now = now.Add(30 * time.Second)
	s.Sample()
	if len(got) != 2 || got[1].BelowThreshold || *got[1].SinceSeconds != 30.5 {
		t.Fatalf("crossing up: %+v", got)
	}
	// History: what the node looked like at a past moment.
	if nm, ok := s.At(time.Unix(1010, 0).Add(100 * time.Millisecond)); !ok || !nm.AnyBelow() {
		t.Errorf("at 1010.1: %+v ok=%v, want under pressure", nm, ok)
	}
	if nm, ok := s.At(time.Unix(1005, 0)); !ok || nm.AnyBelow() {
		t.Errorf("at 1005: %+v ok=%v, want not under pressure", nm, ok)
	}
	if _, ok := s.At(time.Unix(999, 0)); ok {
		t.Error("a sample before the first one")
	}
}

// TestSamplerHistoryBounded: the sampler keeps History's worth of
// samples, however long it runs.
func TestSamplerHistoryBounded(t *testing.T) {
	src := v1Tree(t, 2*gi, 0, 1*gi, 0, strconv.FormatInt(4*gi, 10))
	now := time.Unix(3000, 0)
	s := NewSampler(src, mustThresholds(t, "memory.available<1Gi"), SamplerOptions{History: time.Minute, Now: func() time.Time { return now }})
	for range 600 {
		s.sample(true)
		now = now.Add(time.Second)
	}
	s.mu.Lock()
	n, oldest := len(s.history), s.history[0].Time.Time
	s.mu.Unlock()
	if n > 61 || now.Sub(oldest) > time.Minute+time.Second {
		t.Errorf("%d samples kept, the oldest %v old; want a minute's (61 at most)", n, now.Sub(oldest))
	}
	if _, ok := s.At(now.Add(-5 * time.Minute)); ok {
		t.Error("a sample from before the history")
	}
}

// TestSamplerDecided: an eviction at an API time (whole seconds) carries
// the sample that shows the kubelet's view: below the threshold if a sample
// near the decision was, not merely the last sample before the second.
func TestSamplerDecided(t *testing.T) {
	src := v1Tree(t, 2*gi, 0, 1*gi, 0, strconv.FormatInt(4*gi, 10))
	now := time.Unix(2000, 0)
	s := NewSampler(src, mustThresholds(t, "memory.available<1Gi"), SamplerOptions{Now: func() time.Time { return now }})
	setRoot := func(usage int64) { write(t, src.Root, "memory.usage_in_bytes", strconv.FormatInt(usage, 10)) }
	s.sample(true) // 2000.0: above
	now = time.Unix(2003, 0).Add(-200 * time.Millisecond)
	s.sample(true) // 2002.8: above
	setRoot(7*gi + 512*mi)
	now = time.Unix(2003, 0).Add(600 * time.Millisecond)
	s.sample(true) // 2003.6: below
	setRoot(1 * gi)
	now = time.Unix(2006, 0)
	s.sample(true) // 2006.0: above again

	// The kubelet's Event says 2003 (it decided within that second): the
	// last sample at or before 2003 is above, the one at 2003.6 below.
	if nm, ok := s.At(time.Unix(2003, 0)); !ok || nm.AnyBelow() {
		t.Fatalf("At(2003) = %+v, want the sample above the threshold", nm)
	}
	nm, ok := s.Decided(time.Unix(2003, 0), 10*time.Second, time.Second)
	if !ok || !nm.AnyBelow() || !nm.Time.Equal(time.Unix(2003, 0).Add(600*time.Millisecond)) {
		t.Errorf("Decided(2003) = %v %+v, want the sample at 2003.6, below", ok, nm)
	}
	// No sample below in the window: the nearest one.
	nm, ok = s.Decided(time.Unix(2006, 0).Add(300*time.Millisecond), time.Second, time.Second)
	if !ok || nm.AnyBelow() || !nm.Time.Equal(time.Unix(2006, 0)) {
		t.Errorf("Decided(2006.3) = %v %+v, want the sample at 2006", ok, nm)
	}
	// Nothing in the window: the last one before.
	nm, ok = s.Decided(time.Unix(2100, 0), time.Second, time.Second)
	if !ok || !nm.Time.Equal(time.Unix(2006, 0)) {
		t.Errorf("Decided(2100) = %v %+v, want the sample at 2006", ok, nm)
	}
}

// TestSamplerNear: the sampler samples fast near a threshold.
func TestSamplerNear(t *testing.T) {
	src := v1Tree(t, 2*gi, 0, 1*gi, 0, strconv.FormatInt(4*gi, 10))
	s := NewSampler(src, mustThresholds(t, "memory.available<1Gi"), SamplerOptions{})
	sig := func(available int64) event.NodeMemory {
		th := uint64(gi)
		return event.NodeMemory{MemoryAvailable: &event.MemorySignal{AvailableBytes: available, ThresholdBytes: &th}}
	}
	for _, tt := range []struct {
		available int64
		near      bool
	}{{6 * gi, false}, {2*gi + 1, false}, {2*gi - 1, true}, {gi / 2, true}, {-gi, true}} {
		if got := s.near(sig(tt.available)); got != tt.near {
			t.Errorf("available %d: near %v, want %v", tt.available, got, tt.near)
		}
	}
	if s.near(event.NodeMemory{MemoryAvailable: &event.MemorySignal{AvailableBytes: 1}}) {
		t.Error("near without a threshold")
	}
}

func TestSamplerStartsBelow(t *testing.T) {
	src := v1Tree(t, 8*gi-10*mi, 0, 8*gi-50*mi, 0, strconv.FormatInt(8*gi, 10)) // allocatable: 8 GiB limit - working set = 50 MiB
	var got []event.MemoryPressure
	s := NewSampler(src, mustThresholds(t, DefaultEvictionHard), SamplerOptions{})
	s.setHandler(func(mp event.MemoryPressure) { got = append(got, mp) })
	s.Sample()
	// Both signals start below: reported, with no "since".
	if len(got) != 2 || got[0].SinceSeconds != nil || !got[0].BelowThreshold {
		t.Fatalf("start below: %+v", got)
	}
}

// TestSamplerSoftThreshold: each sample says the soft threshold and its
// grace period beside the hard one, and whether the signal is below it.
func TestSamplerSoftThreshold(t *testing.T) {
	src := v1Tree(t, 8*gi-10*mi, 0, 8*gi-50*mi, 0, strconv.FormatInt(8*gi, 10)) // allocatable: 50 MiB available
	soft := mustThresholds(t, "memory.available<1Gi,allocatableMemory.available<100Mi")
	s := NewSampler(src, mustThresholds(t, "memory.available<10Mi"), SamplerOptions{
		Soft: soft, SoftGrace: map[string]time.Duration{MemoryAvailable: time.Minute, AllocatableMemoryAvailable: 90 * time.Second}})
	nm, ok := s.sample(true)
	if !ok {
		t.Fatal("no sample")
	}
	a := nm.AllocatableMemoryAvailable
	if a == nil || a.SoftThresholdBytes == nil || *a.SoftThresholdBytes != uint64(100*mi) || a.SoftGracePeriod != "1m30s" || !a.BelowSoftThreshold || a.BelowThreshold {
		t.Errorf("allocatable %+v, want soft 100Mi for 1m30s, below it, not below the hard one", a)
	}
	m := nm.MemoryAvailable
	if m == nil || m.SoftThresholdBytes == nil || *m.SoftThresholdBytes != uint64(gi) || m.SoftGracePeriod != "1m0s" || m.BelowSoftThreshold != (m.AvailableBytes < gi) {
		t.Errorf("memory.available %+v, want soft 1Gi for 1m0s", m)
	}
	// Without soft thresholds: none said.
	nm, _ = NewSampler(src, mustThresholds(t, DefaultEvictionHard), SamplerOptions{}).sample(true)
	if nm.MemoryAvailable.SoftThresholdBytes != nil || nm.MemoryAvailable.SoftGracePeriod != "" {
		t.Errorf("soft threshold without one: %+v", nm.MemoryAvailable)
	}
}

// TestSamplerDecidedSoft: a soft eviction's decision is shown by the sample
// below the soft threshold, not by a nearer one after the pod let go; a
// sample below the hard threshold comes first.
func TestSamplerDecidedSoft(t *testing.T) {
	src := v1Tree(t, 2*gi, 0, 1*gi, 0, strconv.FormatInt(4*gi, 10))
	now := time.Unix(2000, 0)
	s := NewSampler(src, mustThresholds(t, "memory.available<100Mi"), SamplerOptions{Now: func() time.Time { return now },
		Soft: mustThresholds(t, "memory.available<1Gi"), SoftGrace: map[string]time.Duration{MemoryAvailable: 10 * time.Second}})
	setRoot := func(usage int64) { write(t, src.Root, "memory.usage_in_bytes", strconv.FormatInt(usage, 10)) }
	setRoot(7*gi + 512*mi) // below the soft threshold, above the hard one
	now = time.Unix(1995, 0)
	s.sample(true)
	setRoot(1 * gi)
	now = time.Unix(2000, 0)
	s.sample(true) // the pod has stopped: above both
	nm, ok := s.Decided(time.Unix(2000, 0), 10*time.Second, time.Second)
	if !ok || !nm.Time.Equal(time.Unix(1995, 0)) || !nm.MemoryAvailable.BelowSoftThreshold || nm.MemoryAvailable.BelowThreshold {
		t.Errorf("Decided(2000) = %v %+v, want the sample at 1995, below the soft threshold", ok, nm.MemoryAvailable)
	}
	setRoot(8*gi - 50*mi) // below the hard threshold too
	now = time.Unix(1993, 0)
	s.history = nil
	s.sample(true)
	now = time.Unix(1995, 0)
	setRoot(7*gi + 512*mi)
	s.sample(true)
	if nm, _ := s.Decided(time.Unix(1996, 0), 10*time.Second, time.Second); !nm.Time.Equal(time.Unix(1993, 0)) {
		t.Errorf("Decided(1996) = %+v, want the sample at 1993, below the hard threshold", nm)
	}
}

// TestReadSwap: a node's swap, from meminfo, rides with the signals;
// none without swap.
func TestReadSwap(t *testing.T) {
	src := v1Tree(t, 6*gi, 1*gi, 5*gi, 512*mi, strconv.FormatInt(7*gi, 10))
	nm, err := src.Read(mustThresholds(t, DefaultEvictionHard), time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if nm.SwapTotalBytes != nil || nm.SwapFreeBytes != nil {
		t.Errorf("no swap: total %v free %v", nm.SwapTotalBytes, nm.SwapFreeBytes)
	}
	write(t, filepath.Dir(src.Meminfo), "meminfo", "MemTotal:       8388608 kB\nSwapTotal:       1048576 kB\nSwapFree:         262144 kB\n")
	nm, err = src.Read(mustThresholds(t, DefaultEvictionHard), time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if nm.SwapTotalBytes == nil || *nm.SwapTotalBytes != uint64(gi) || nm.SwapFreeBytes == nil || *nm.SwapFreeBytes != uint64(256*mi) {
		t.Errorf("swap: total %v free %v, want 1 GiB and 256 MiB", nm.SwapTotalBytes, nm.SwapFreeBytes)
	}
}
