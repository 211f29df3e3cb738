// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"testing"

	"github.com/oomtrace/oomtrace/event"
)

func TestClassifyRefusal(t *testing.T) {
	const gib = 1 << 30
	host0 := hostMemory{Mode: 0, MemTotal: 24 * gib, SwapTotal: 0, CommitLimit: 12 * gib, Committed: gib, AdminReserve: 8 << 20, UserReserve: 128 << 20}
	host1 := host0
	host1.Mode = 1
	host2 := host0
	host2.Mode = 2
	mmap := func(req uint64) refusalFacts {
		return refusalFacts{RequestBytes: req, Accountable: true, TotalVMBytes: gib}
	}
	with := func(f refusalFacts, mod func(*refusalFacts)) refusalFacts { mod(&f); return f }
	cases := []struct {
		name   string
		f      refusalFacts
		h      hostMemory
		reason string
		by     string
	}{
		{"mode 0: more than RAM+swap", mmap(1 << 45), host0, event.ReasonCommit, byMode0},
		{"mode 0: fits RAM+swap", mmap(2 * gib), host0, event.ReasonUnknown, byNoRule},
		{"mode 0: exactly RAM+swap is allowed", mmap(24 * gib), host0, event.ReasonUnknown, byNoRule},
		{"mode 1 never refuses", mmap(1 << 45), host1, event.ReasonUnknown, byMode1},
		{"mode 2: beyond the limit", mmap(11 * gib), host2, event.ReasonCommit, byMode2},
		{"mode 2: within it", mmap(gib), host2, event.ReasonUnknown, byNoRule},
		// 12 GiB limit - 1 GiB committed - 8 MiB admin - 32 MiB user (1 GiB/32):
		// 10.96 GiB allowed; admins keep the admin reserve.
		{"mode 2: into the admin reserve, no CAP_SYS_ADMIN", mmap(11*gib - 36<<20), host2, event.ReasonCommit, byMode2},
		{"mode 2: into the admin reserve, CAP_SYS_ADMIN", with(mmap(11*gib-36<<20), func(f *refusalFacts) { f.CapSysAdmin = true }), host2, event.ReasonUnknown, byNoRule},
		{"rlimit AS is never commit", with(mmap(1<<45), func(f *refusalFacts) { f.Class = refusalRefusalClassCLASS_RLIMIT_AS }), host0, event.ReasonRlimitAS, byRlimitAS},
		{"rlimit DATA", with(mmap(gib), func(f *refusalFacts) { f.Class = refusalRefusalClassCLASS_RLIMIT_DATA }), host2, event.ReasonRlimitData, byRlimitData},
		{"map count", with(mmap(4096), func(f *refusalFacts) { f.Class = refusalRefusalClassCLASS_MAP_COUNT }), host0, event.ReasonMapCount, byMapCount},
		{"beyond any address space", mmap(1 << 60), host0, event.ReasonAddressSpace, byAddressSpace},
		{"address space before rlimit", with(mmap(1<<60), func(f *refusalFacts) { f.Class = refusalRefusalClassCLASS_RLIMIT_AS }), host0, event.ReasonAddressSpace, byAddressSpace},
		{"exact hook wins", with(mmap(4096), func(f *refusalFacts) { f.ExactSeen = true; f.ExactHooked = true }), host0, event.ReasonCommit, byExact},
		{"exact hook silent: not commit", with(mmap(1<<45), func(f *refusalFacts) { f.ExactHooked = true }), host0, event.ReasonUnknown, byExactSilent},
		{"read-only mapping is not accounted", with(mmap(1<<45), func(f *refusalFacts) { f.Accountable = false }), host0, event.ReasonUnknown, byNotAccountable},
	}
	for _, c := range cases {
		reason, by := classifyRefusal(c.f, c.h, 1<<56)
		if reason != c.reason || by != c.by {
			t.Errorf("%s: got %s by %s, want %s by %s", c.name, reason, by, c.reason, c.by)
		}
	}
}

func TestDelta(t *testing.T) {
	for _, c := range []struct{ total, printed, want uint64 }{
		{1, 0, 1}, {10, 1, 9}, {5, 5, 0}, {3, 100, 3},
	} {
		if got := delta(c.total, c.printed); got != c.want {
			t.Errorf("delta(%d, %d) = %d, want %d", c.total, c.printed, got, c.want)
		}
	}
}

func TestReadHostMemoryHere(t *testing.T) {
	h, err := readHostMemory("/proc")
	if err != nil {
		t.Fatal(err)
	}
	if h.MemTotal == 0 || h.CommitLimit == 0 || h.MaxMapCount == 0 || h.Mode < 0 || h.Mode > 2 {
		t.Errorf("implausible host memory: %+v", h)
	}
}
