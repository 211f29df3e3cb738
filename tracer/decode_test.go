// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/oomtrace/oomtrace/event"
)

func setCString[T ~int8](dst []T, s string) {
	for i := range dst {
		dst[i] = 0
	}
	for i := 0; i < len(s) && i < len(dst); i++ {
		dst[i] = T(s[i])
	}
}

// fixture is a tp_btf record of a memcg self-kill, as the kernel writes it.
func fixture() rawOOMEvent {
	var r rawOOMEvent
	r.TsBootNs = 5_000_000_123
	r.Seq = 1<<40 + 7 // past 32 bits: the field is read whole
	r.Type = uint32(oomtraceEventTypeEVENT_OOM_KILL)
	r.VictimHook = uint8(oomtraceVictimHookVICTIM_HOOK_TP_BTF)
	r.DomainSource = uint8(oomtraceDomainSourceDOMAIN_MEMCG_AT_LIMIT)
	r.RssUnit = uint8(oomtraceRssUnitRSS_UNIT_PAGES)
	r.VictimFields = victimHasIdentity | victimHasRSS | victimHasSwap
	r.SigkillSeen = 1
	r.Victim.Pid, r.Victim.Tgid, r.Victim.Uid, r.Victim.OomScoreAdj = 4242, 4242, 1000, 789
	r.Victim.Cgroup2Id = 77
	setCString(r.Victim.Comm[:], "hog")
	r.Trigger.Pid, r.Trigger.Tgid, r.Trigger.Uid = 4243, 4242, 1000
	setCString(r.Trigger.Comm[:], "hog-worker")
	r.RssAnon, r.RssFile, r.RssShmem, r.RssSwap = 8192, 100, 3, 7
	r.TotalVm = 40000
	r.PgtablesBytes = 204800
	r.DomainUsagePages, r.DomainLimitPages = 8190, 8192
	fillPath(&r, "victim", 3401, "/a/b/pod-x/ctr")
	fillPath(&r, "trigger", 3401, "/a/b/pod-x/ctr")
	fillPath(&r, "domain", 3300, "/a/b/pod-x")
	return r
}

// fillPath sets one of the three cgroup_path members; they share a layout.
func fillPath(r *rawOOMEvent, which string, id uint64, path string) {
	var id_ *uint64
	var valid *uint8
	var n *uint16
	var buf []int8
	switch which {
	case "victim":
		id_, valid, n, buf = &r.VictimMemcg.Id, &r.VictimMemcg.Valid, &r.VictimMemcg.Len, r.VictimMemcg.Path[:]
	case "trigger":
		id_, valid, n, buf = &r.TriggerMemcg.Id, &r.TriggerMemcg.Valid, &r.TriggerMemcg.Len, r.TriggerMemcg.Path[:]
	case "domain":
		id_, valid, n, buf = &r.Domain.Id, &r.Domain.Valid, &r.Domain.Len, r.Domain.Path[:]
	}
	*id_, *valid, *n = id, 1, uint16(len(path))
	setCString(buf, path)
}

func encode(t testing.TB, r rawOOMEvent) []byte {
	t.Helper()
	b, err := binary.Append(nil, binary.NativeEndian, &r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != OOMEventSize {
		t.Fatalf("encoded %d bytes, want %d", len(b), OOMEventSize)
	}
	return b
}

var testDecoder = Decoder{
	Node:     "node-1",
	BootID:   "0d4c6b4e-1c2a-4f5e-9b8a-3e2f1d0c9b8a",
	PageSize: 4096,
	WallTime: func(ns uint64) time.Time { return time.Unix(1_800_000_000, 0).Add(time.Duration(ns)) },
}

func TestDecodeTpBtfMemcgKill(t *testing.T) {
	ev, seen, err := testDecoder.DecodeOOMKill(encode(t, fixture()))
	if err != nil {
		t.Fatal(err)
	}
	if !seen {
		t.Error("sigkill_seen lost")
	}
	u32 := func(v uint32) *uint32 { return &v }
	i32 := func(v int32) *int32 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	want := event.OOMKill{
		Type: "oom_kill",
		Time: event.Time{Time: time.Unix(1_800_000_005, 123)},
		Node: "node-1",
		Seq:  1<<40 + 7,
		ID:   "0d4c6b4e-1c2a-4f5e-9b8a-3e2f1d0c9b8a-1099511627783",
		Hook: "tp_btf/mark_victim",
		Victim: event.Victim{
			Process: event.Process{PID: 4242, TGID: 4242, Comm: "hog", UID: u32(1000), Cgroup2ID: 77,
				Memcg: &event.Cgroup{ID: 3401, Path: "/a/b/pod-x/ctr", Source: "kernel"}},
			OOMScoreAdj:   i32(789),
			RSS:           &event.RSS{Anon: 8192 * 4096, File: 100 * 4096, Shmem: 3 * 4096, Swap: u64(7 * 4096)},
			TotalVMBytes:  u64(40000 * 4096),
			PgtablesBytes: u64(204800),
		},
		Trigger: event.Process{PID: 4243, TGID: 4242, Comm: "hog-worker", UID: u32(1000),
			Memcg: &event.Cgroup{ID: 3401, Path: "/a/b/pod-x/ctr", Source: "kernel"}},
		OOM: event.OOM{
			Scope: "memcg", ScopeSource: "memcg_at_limit",
			Domain: &event.Domain{Cgroup: &event.Cgroup{ID: 3300, Path: "/a/b/pod-x", Source: "kernel"},
				UsageBytes: 8190 * 4096, LimitBytes: 8192 * 4096},
		},
	}
	assertJSONEqual(t, ev, want)
}

func TestDecodeClassicTracepointKiB(t *testing.T) {
	r := fixture()
	r.VictimHook = uint8(oomtraceVictimHookVICTIM_HOOK_TRACEPOINT)
	r.RssUnit = uint8(oomtraceRssUnitRSS_UNIT_KIB)
	r.VictimFields = victimHasIdentity | victimHasRSS // no swap in the tracepoint
	r.VictimMemcg.Valid = 0                           // victim was not current
	ev, _, err := testDecoder.DecodeOOMKill(encode(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Hook != HookTracepointMarkVictim {
		t.Errorf("hook = %q", ev.Hook)
	}
	// Every figure of the tracepoint is in KiB, each scaled on its own.
	rss := ev.Victim.RSS
	if rss.Anon != r.RssAnon*1024 || rss.File != r.RssFile*1024 || rss.Shmem != r.RssShmem*1024 || rss.Swap != nil ||
		*ev.Victim.TotalVMBytes != r.TotalVm*1024 {
		t.Errorf("KiB units: rss=%+v total_vm=%d, want anon %d, file %d, shmem %d KiB, total_vm %d KiB",
			*rss, *ev.Victim.TotalVMBytes, r.RssAnon, r.RssFile, r.RssShmem, r.TotalVm)
	}
	if r.RssFile == 0 || r.RssShmem == 0 || r.RssFile == r.RssAnon || r.RssShmem == r.RssFile {
		t.Fatalf("the fixture's rss figures must be distinct and non-zero to tell them apart: %d %d %d", r.RssAnon, r.RssFile, r.RssShmem)
	}
	if ev.Victim.Memcg != nil {
		t.Errorf("victim memcg = %+v, want nil when not captured", ev.Victim.Memcg)
	}
}

func TestDecodePre69TracepointHasOnlyPID(t *testing.T) {
	r := fixture()
	r.VictimHook = uint8(oomtraceVictimHookVICTIM_HOOK_TRACEPOINT)
	r.VictimFields = 0
	ev, _, err := testDecoder.DecodeOOMKill(encode(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Victim.Comm != "" || ev.Victim.UID != nil || ev.Victim.OOMScoreAdj != nil || ev.Victim.RSS != nil || ev.Victim.TotalVMBytes != nil {
		t.Errorf("unknown fields must be empty/null: %+v", ev.Victim)
	}
}

func TestDecodeDecision(t *testing.T) {
	r := fixture()
	r.HasDecision = 1
	r.DomainSource = uint8(oomtraceDomainSourceDOMAIN_OOM_CONTROL)
	r.Decision.Hook = uint8(oomtraceDecisionHookDECISION_HOOK_KPROBE)
	r.Decision.Constraint = 3
	r.Decision.Totalpages = 8192
	r.Decision.ChosenPid = 4242
	r.Decision.ChosenPoints = 9000
	r.Decision.GfpMask = 0xcc0
	r.Decision.Order = 0
	setCString(r.Decision.Message[:], "Memory cgroup out of memory")
	ev, _, err := testDecoder.DecodeOOMKill(encode(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Hook != "kprobe/oom_kill_process+tp_btf/mark_victim" {
		t.Errorf("hook = %q", ev.Hook)
	}
	want := event.Decision{Constraint: "memcg", TotalPages: 8192, ChosenPID: 4242, ChosenPoints: 9000,
		GFPMask: "0xcc0", Order: 0, Message: "Memory cgroup out of memory"}
	if ev.OOM.Decision == nil || *ev.OOM.Decision != want {
		t.Errorf("decision = %+v, want %+v", ev.OOM.Decision, want)
	}
	if ev.OOM.Scope != "memcg" || ev.OOM.ScopeSource != "oom_control" {
		t.Errorf("scope = %s/%s", ev.OOM.Scope, ev.OOM.ScopeSource)
	}

	// A global OOM: constraint none, no memcg.
	r.Decision.Constraint = 0
	r.Domain.Valid = 0
	ev, _, err = testDecoder.DecodeOOMKill(encode(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if ev.OOM.Scope != "global" || ev.OOM.Domain != nil {
		t.Errorf("global OOM: scope=%s domain=%+v", ev.OOM.Scope, ev.OOM.Domain)
	}
}

func TestDecodeNoMemcgAtLimit(t *testing.T) {
	r := fixture()
	r.DomainSource = uint8(oomtraceDomainSourceDOMAIN_NO_MEMCG_AT_LIMIT)
	r.Domain.Valid = 0
	ev, _, err := testDecoder.DecodeOOMKill(encode(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if ev.OOM.Scope != "global" || ev.OOM.ScopeSource != "no_memcg_at_limit" || ev.OOM.Domain != nil {
		t.Errorf("oom = %+v", ev.OOM)
	}
}

func TestDecodeMemcgTooDeep(t *testing.T) {
	r := fixture()
	r.DomainSource = uint8(oomtraceDomainSourceDOMAIN_TOO_DEEP)
	r.Domain.Valid = 0
	ev, _, err := testDecoder.DecodeOOMKill(encode(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if ev.OOM.Scope != "unknown" || ev.OOM.ScopeSource != "memcg_too_deep" || ev.OOM.Domain != nil {
		t.Errorf("oom = %+v: want an unknown scope, not a global OOM", ev.OOM)
	}
}

// TestDecodeLimitWrite: a kill no charge explains, whose domain the walk
// found from the victim, says forced_by limit_write and scope memcg.
func TestDecodeLimitWrite(t *testing.T) {
	r := fixture()
	r.DomainSource = uint8(oomtraceDomainSourceDOMAIN_VICTIM_AT_LIMIT)
	r.ForcedBy = uint8(oomtraceForcedByFORCED_BY_LIMIT_WRITE)
	ev, _, err := testDecoder.DecodeOOMKill(encode(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if ev.OOM.Scope != "memcg" || ev.OOM.ScopeSource != "victim_memcg_at_limit" || ev.OOM.ForcedBy != "limit_write" || ev.OOM.Domain == nil {
		t.Errorf("oom = %+v", ev.OOM)
	}
}

// TestDecodeDecisionLimitWrite: with oom_control, a trigger outside the
// domain (a runtime writing memory.max) is a forced kill; one in it or
// below it, or a path cut short, is not.
func TestDecodeDecisionLimitWrite(t *testing.T) {
	for _, tc := range []struct {
		trigger string
		cut     bool
		want    string
	}{
		{"/system.slice/containerd.service", false, event.ForcedByLimitWrite},
		{"/a/b/pod-xy", false, event.ForcedByLimitWrite},
		{"/a/b/pod-x/ctr", false, ""},
		{"/a/b/pod-x", false, ""},
		{"/system.slice", true, ""},
	} {
		r := fixture()
		r.HasDecision = 1
		r.DomainSource = uint8(oomtraceDomainSourceDOMAIN_OOM_CONTROL)
		r.Decision.Hook = uint8(oomtraceDecisionHookDECISION_HOOK_FENTRY)
		r.Decision.Constraint = 3
		fillPath(&r, "trigger", 99, tc.trigger)
		if tc.cut {
			r.TriggerMemcg.Truncated = 1
		}
		ev, _, err := testDecoder.DecodeOOMKill(encode(t, r))
		if err != nil {
			t.Fatal(err)
		}
		if ev.OOM.ForcedBy != tc.want {
			t.Errorf("trigger %s (cut %v), domain /a/b/pod-x: forced_by %q, want %q", tc.trigger, tc.cut, ev.OOM.ForcedBy, tc.want)
		}
	}
}

// TestDecodeMemcgCounters: a v2 domain's bounds and swap and the victim's
// cgroup's counters, in pages, become bytes; the kernel's "max"
// (PAGE_COUNTER_MAX) is absent (null for the victim's limit); v1 has
// usage and limit alone; nothing read, nothing written.
func TestDecodeMemcgCounters(t *testing.T) {
	const pageCounterMax = math.MaxInt64 / 4096
	r := fixture()
	r.DomainCounters = oomtraceMemcgCounters{Usage: 16384, Max: 16384, High: 12288, Min: 1024, Low: 2048, SwapUsage: 100, SwapMax: pageCounterMax, Valid: 1, V2: 1, HasHigh: 1}
	r.VictimCounters = oomtraceMemcgCounters{Usage: 8000, Max: pageCounterMax, High: pageCounterMax, SwapUsage: 2048, SwapMax: 2048, Valid: 1, V2: 1, HasHigh: 1}
	ev, _, err := testDecoder.DecodeOOMKill(encode(t, r))
	if err != nil {
		t.Fatal(err)
	}
	d, m := ev.OOM.Domain, ev.Victim.MemcgMemory
	if got := jsonOf(d.MemcgBounds); got != `{"high_bytes":50331648,"min_bytes":4194304,"low_bytes":8388608,"swap_usage_bytes":409600}` {
		t.Errorf("domain bounds %s", got)
	}
	if got := jsonOf(m); got != `{"usage_bytes":32768000,"limit_bytes":null,"min_bytes":0,"low_bytes":0,"swap_usage_bytes":8388608,"swap_limit_bytes":8388608}` {
		t.Errorf("victim's memcg %s", got)
	}
	r.DomainCounters = oomtraceMemcgCounters{Usage: 16384, Max: 16384, High: pageCounterMax, Valid: 1}
	r.VictimCounters = oomtraceMemcgCounters{}
	ev, _, err = testDecoder.DecodeOOMKill(encode(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if ev.OOM.Domain.MemcgBounds != (event.MemcgBounds{}) || ev.Victim.MemcgMemory != nil {
		t.Errorf("v1: domain bounds %s, victim's memcg %s; want none", jsonOf(ev.OOM.Domain.MemcgBounds), jsonOf(ev.Victim.MemcgMemory))
	}
}

func TestDecodeTruncatedRecord(t *testing.T) {
	b := encode(t, fixture())
	for _, n := range []int{0, 1, 8, OOMEventSize / 2, OOMEventSize - 1} {
		_, _, err := testDecoder.DecodeOOMKill(b[:n])
		if !errors.Is(err, ErrShortRecord) {
			t.Errorf("%d bytes: err = %v, want ErrShortRecord", n, err)
		}
	}
}

func TestDecodeOversizedRecord(t *testing.T) {
	b := append(encode(t, fixture()), bytes.Repeat([]byte{0xff}, 64)...)
	ev, _, err := testDecoder.DecodeOOMKill(b)
	if err != nil {
		t.Fatalf("oversized record: %v", err)
	}
	if ev.Victim.PID != 4242 || ev.OOM.Domain.Path != "/a/b/pod-x" {
		t.Errorf("oversized record decoded wrong: %+v", ev)
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	cases := map[string]func(*rawOOMEvent){
		"type":          func(r *rawOOMEvent) { r.Type = 99 },
		"victim hook":   func(r *rawOOMEvent) { r.VictimHook = 0 },
		"decision hook": func(r *rawOOMEvent) { r.HasDecision = 1; r.Decision.Hook = 0 },
		"domain source": func(r *rawOOMEvent) { r.DomainSource = 42 },
		"forced by":     func(r *rawOOMEvent) { r.ForcedBy = 9 },
	}
	for name, mutate := range cases {
		r := fixture()
		mutate(&r)
		if _, _, err := testDecoder.DecodeOOMKill(encode(t, r)); err == nil {
			t.Errorf("%s: garbage accepted", name)
		}
	}
}

// Raw kernel bytes pass through unchanged: a path length beyond the buffer
// is clamped, a missing NUL is tolerated.
func TestDecodeHostileStrings(t *testing.T) {
	r := fixture()
	comm := "a\"b\n\x01\xff\xfe"
	setCString(r.Victim.Comm[:], comm)
	for i := range r.VictimMemcg.Path {
		r.VictimMemcg.Path[i] = 'x'
	}
	r.VictimMemcg.Len = 65535
	ev, _, err := testDecoder.DecodeOOMKill(encode(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Victim.Comm != comm {
		t.Errorf("comm = %q, want %q", ev.Victim.Comm, comm)
	}
	if len(ev.Victim.Memcg.Path) != len(r.VictimMemcg.Path) {
		t.Errorf("path length %d, want clamped to %d", len(ev.Victim.Memcg.Path), len(r.VictimMemcg.Path))
	}
}

func TestEventSizeMatchesGenerated(t *testing.T) {
	if OOMEventSize != int(unsafe.Sizeof(oomtraceOomEvent{})) {
		t.Fatal("OOMEventSize drifted")
	}
}

func FuzzDecodeOOMKill(f *testing.F) {
	f.Add(encode(f, fixture()))
	r := fixture()
	r.HasDecision, r.DomainSource = 1, uint8(oomtraceDomainSourceDOMAIN_OOM_CONTROL)
	r.Decision.Hook = 1
	f.Add(encode(f, r))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, _, err := testDecoder.DecodeOOMKill(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode as valid JSON.
		assertValidJSON(t, ev)
	})
}

// TestDecodeGroupKill: a member of a memory.oom.group kill; its group is the
// victim's container cgroup (level 4 of /a/b/pod-x/ctr) or an ancestor.
func TestDecodeGroupKill(t *testing.T) {
	for _, tc := range []struct {
		level     uint16
		kills     int64
		firstSeq  uint64
		path      string
		truncated bool
		chosen    bool
	}{
		{level: 4, kills: 3, firstSeq: 1<<40 + 5, path: "/a/b/pod-x/ctr"},
		{level: 3, kills: 0, firstSeq: 1<<40 + 7, path: "/a/b/pod-x", chosen: true},
		{level: 0, kills: -1, firstSeq: 1<<40 + 6, path: "/"},
		// Above the victim's own path: nothing to cut, unknown.
		{level: 5, kills: 1, firstSeq: 1<<40 + 6, path: "", truncated: true},
	} {
		r := fixture()
		r.GroupId, r.GroupLevel, r.GroupKills, r.GroupFirstSeq = 3300, tc.level, tc.kills, tc.firstSeq
		ev, _, err := testDecoder.DecodeOOMKill(encode(t, r))
		if err != nil {
			t.Fatal(err)
		}
		g := ev.OOM.Group
		if g == nil {
			t.Fatalf("level %d: no group", tc.level)
		}
		if g.Cgroup.ID != 3300 || g.Cgroup.Path != tc.path || g.Cgroup.PathTruncated != tc.truncated || g.Cgroup.Source != "kernel" ||
			g.DecisionSeq != tc.firstSeq || g.Chosen != tc.chosen {
			t.Errorf("level %d: group %+v, want path %q truncated %v decision %d chosen %v", tc.level, g, tc.path, tc.truncated, tc.firstSeq, tc.chosen)
		}
		if (tc.kills < 0) != (g.GroupKills == nil) || (g.GroupKills != nil && *g.GroupKills != uint64(tc.kills)) {
			t.Errorf("level %d: oom_group_kill %v, want %d", tc.level, g.GroupKills, tc.kills)
		}
	}
	// A truncated victim path that ends at the group's level may end in
	// part of the group's name.
	r := fixture()
	r.VictimMemcg.Truncated = 1
	r.GroupId, r.GroupLevel, r.GroupFirstSeq = 3401, 4, r.Seq
	ev, _, err := testDecoder.DecodeOOMKill(encode(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if g := ev.OOM.Group; g == nil || g.Cgroup.Path != "" || !g.Cgroup.PathTruncated {
		t.Errorf("group of a truncated victim path: %+v", g)
	}
	// Not a group kill: no group.
	if ev, _, _ := testDecoder.DecodeOOMKill(encode(t, fixture())); ev.OOM.Group != nil {
		t.Errorf("single kill has group %+v", ev.OOM.Group)
	}
}

// TestDecodeRecordIsBinaryDecode: the copy that decodes records gives what
// encoding/binary's field-by-field decoding gives, for every raw record
// type, on random bytes: the generated structs' layout is the C one.
func TestDecodeRecordIsBinaryDecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		checkDecodeRecord[rawOOMEvent](t, rng)
		checkDecodeRecord[rawSignalEvent](t, rng)
		checkDecodeRecord[rawRefusal](t, rng)
	}
}

func checkDecodeRecord[T rawOOMEvent | rawSignalEvent | rawRefusal](t *testing.T, rng *rand.Rand) {
	t.Helper()
	var want, got T
	record := make([]byte, unsafe.Sizeof(want)+8) // a tail is ignored
	for i := range record {
		record[i] = byte(rng.Uint32())
	}
	if _, err := binary.Decode(record[:unsafe.Sizeof(want)], binary.NativeEndian, &want); err != nil {
		t.Fatal(err)
	}
	decodeRecord(&got, record)
	// Padding is skipped by binary.Decode and copied by decodeRecord:
	// compare what both see, the fields.
	if !reflect.DeepEqual(fieldsOf(want), fieldsOf(got)) {
		t.Fatalf("%T: decodeRecord %+v, binary.Decode %+v", want, got, want)
	}
}

// fieldsOf is v's named fields (blank padding left out).
func fieldsOf(v any) []any {
	rv := reflect.ValueOf(v)
	var out []any
	for i := range rv.NumField() {
		if rv.Type().Field(i).Name != "_" {
			out = append(out, rv.Field(i).Interface())
		}
	}
	return out
}

// TestInlineObjectsHaveNoAtomicFetch: the objects loaded before 5.12 have
// no atomic fetch-and-add, which 5.10's verifier refuses wherever it is,
// even in a branch never taken ("BPF_STX uses reserved fields"); the
// others take their seq with one.
func TestInlineObjectsHaveNoAtomicFetch(t *testing.T) {
	fetches := func(load func() (*ebpf.CollectionSpec, error)) int {
		t.Helper()
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range spec.Programs {
			for _, ins := range p.Instructions {
				if op := ins.OpCode.AtomicOp(); op != asm.InvalidAtomic && op != asm.AddAtomic {
					n++
				}
			}
		}
		return n
	}
	for name, load := range map[string]func() (*ebpf.CollectionSpec, error){"oomtraceInline": loadOomtraceInline, "refusalInline": loadRefusalInline} {
		if n := fetches(load); n != 0 {
			t.Errorf("%s: %d atomic fetch instructions", name, n)
		}
	}
	if fetches(loadOomtrace) == 0 {
		t.Error("oomtrace: no atomic fetch-and-add: is this test still looking at the right instructions?")
	}
}
