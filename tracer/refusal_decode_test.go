// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/oomtrace/oomtrace/event"
)

func refusalFixture() rawRefusal {
	var r rawRefusal
	r.TsBootNs = 7_000_000_000
	r.Type = uint32(oomtraceEventTypeEVENT_COMMIT_REFUSAL)
	r.Syscall = uint16(refusalRefusalSyscallSYSCALL_MMAP)
	r.Class = uint8(refusalRefusalClassCLASS_OTHER)
	r.Process.Pid, r.Process.Tgid, r.Process.Uid = 501, 500, 1000
	setCString(r.Process.Comm[:], "java")
	r.Total = 1
	r.Ret = -12
	r.RequestBytes = 1 << 45
	r.Args = [6]uint64{0, 1 << 45, 3, 0x22, ^uint64(0), 0}
	r.TotalVmPages = 1000
	r.RlimitAs, r.RlimitData = ^uint64(0), ^uint64(0)
	r.Accountable = 1
	r.Memcg.Id, r.Memcg.Valid, r.Memcg.Len = 42, 1, uint16(len("/kubepods/pod1/c1"))
	setCString(r.Memcg.Path[:], "/kubepods/pod1/c1")
	return r
}

func encodeRefusal(t testing.TB, r rawRefusal) []byte {
	t.Helper()
	b, err := binary.Append(nil, binary.NativeEndian, &r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var testRefusalDecoder = refusalDecoder{
	Node: "node-1", PageSize: 4096, AddressSpace: 1 << 56,
	WallTime: func(ns uint64) time.Time { return time.Unix(1_800_000_000, 0).Add(time.Duration(ns)) },
}

var testHost = hostMemory{Mode: 0, Ratio: 50, MemTotal: 24 << 30, CommitLimit: 12 << 30, Committed: 1 << 30}

func decodeRefusal(t testing.TB, d refusalDecoder, b []byte) (event.CommitRefusal, error) {
	raw, err := d.decodeRaw(b)
	if err != nil {
		return event.CommitRefusal{}, err
	}
	return d.event(&raw, testHost)
}

func TestDecodeRefusal(t *testing.T) {
	ev, err := decodeRefusal(t, testRefusalDecoder, encodeRefusal(t, refusalFixture()))
	if err != nil {
		t.Fatal(err)
	}
	uid := uint32(1000)
	want := event.CommitRefusal{
		Type: "commit_refusal", Time: event.Time{Time: time.Unix(1_800_000_007, 0)}, Node: "node-1",
		Hook: "tracepoint/syscalls/sys_exit_mmap",
		Process: event.Process{PID: 501, TGID: 500, Comm: "java", UID: &uid,
			Memcg: &event.Cgroup{ID: 42, Path: "/kubepods/pod1/c1", Source: "kernel"}},
		Syscall: "mmap", RequestBytes: 1 << 45, Reason: "commit", ClassifiedBy: byMode0,
		Overcommit: event.Overcommit{Mode: 0, Ratio: 50, CommitLimitBytes: 12 << 30, CommittedBytes: 1 << 30},
		Count:      1,
	}
	assertJSONEqual(t, ev, want)
}

func TestDecodeRefusalExactHook(t *testing.T) {
	r := refusalFixture()
	r.ExactHook = uint8(refusalExactHookEXACT_HOOK_KRETPROBE)
	r.Class = uint8(refusalRefusalClassCLASS_EXACT)
	r.RequestBytes = 4096 // would not be commit by the fallback rules
	d := testRefusalDecoder
	d.ExactHooked = true
	ev, err := decodeRefusal(t, d, encodeRefusal(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Hook != "kretprobe/__vm_enough_memory+tracepoint/syscalls/sys_exit_mmap" || ev.Reason != "commit" || ev.ClassifiedBy != byExact {
		t.Errorf("exact: %+v", ev)
	}
}

func TestDecodeRefusalRejects(t *testing.T) {
	b := encodeRefusal(t, refusalFixture())
	if _, err := decodeRefusal(t, testRefusalDecoder, b[:len(b)-1]); !errors.Is(err, ErrShortRecord) {
		t.Errorf("truncated: %v", err)
	}
	if _, err := decodeRefusal(t, testRefusalDecoder, append(b, 1, 2, 3)); err != nil {
		t.Errorf("oversized: %v", err)
	}
	for name, mut := range map[string]func(*rawRefusal){
		"type":       func(r *rawRefusal) { r.Type = 1 },
		"syscall":    func(r *rawRefusal) { r.Syscall = 99 },
		"class":      func(r *rawRefusal) { r.Class = 99 },
		"exact hook": func(r *rawRefusal) { r.ExactHook = 9 },
	} {
		r := refusalFixture()
		mut(&r)
		if _, err := decodeRefusal(t, testRefusalDecoder, encodeRefusal(t, r)); err == nil {
			t.Errorf("%s: garbage accepted", name)
		}
	}
}

func TestRefusalLayoutMatchesBTF(t *testing.T) {
	spec, err := loadRefusal()
	if err != nil {
		t.Fatal(err)
	}
	for name, goType := range map[string]reflect.Type{
		"refusal_event": reflect.TypeOf(rawRefusal{}),
		"refusal_key":   reflect.TypeOf(refusalRefusalKey{}),
		"refusal_count": reflect.TypeOf(refusalRefusalCount{}),
	} {
		var st *btf.Struct
		if err := spec.Types.TypeByName(name, &st); err != nil {
			t.Fatalf("BTF type %s: %v", name, err)
		}
		compareStruct(t, name, st, goType)
	}
}

func FuzzDecodeRefusal(f *testing.F) {
	f.Add(encodeRefusal(f, refusalFixture()))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeRefusal(t, testRefusalDecoder, b)
		if err == nil {
			assertValidJSON(t, ev)
		}
	})
}
