// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"

	"github.com/oomtrace/oomtrace/event"
)

func rawSignal(sig int32, hook oomtraceSignalHook) rawSignalEvent {
	var r rawSignalEvent
	r.TsBootNs = 5_000_000_000
	r.Type = uint32(oomtraceEventTypeEVENT_TASK_SIGNAL)
	r.Sig, r.Code, r.Result, r.Hook = sig, 0, 0, uint8(hook)
	r.Target.Pid, r.Target.Tgid, r.Target.Uid = 4242, 4242, 0
	copy(r.Target.Comm[:], []int8{'j', 'a', 'v', 'a'})
	r.Sender.Pid, r.Sender.Tgid = 77, 77
	copy(r.Sender.Comm[:], []int8{'r', 'u', 'n', 'c'})
	r.TargetMemcg.Id, r.TargetMemcg.Valid = 31, 1
	path := "/kubepods/burstable/pod1/c1"
	for i := range path {
		r.TargetMemcg.Path[i] = int8(path[i])
	}
	r.TargetMemcg.Len = uint16(len(path))
	r.TargetUsagePages, r.TargetLimitPages = 16000, 16384
	// 12.50% and 3.00% some, 6.25% and 1.50% full (LOAD_INT.LOAD_FRAC).
	r.TargetPsiAvg = [2][2]uint64{{25600, 6144}, {12800, 3072}}
	r.TargetPsiTotalNs = [2]uint64{9_000_000_000, 4_000_000_000}
	r.TargetPsiValid = 1
	return r
}

func encodeSignal(t testing.TB, r rawSignalEvent) []byte {
	b := make([]byte, SignalEventSize)
	if _, err := binary.Encode(b, binary.NativeEndian, &r); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeTaskSignal(t *testing.T) {
	d := Decoder{Node: "n1", PageSize: 4096}
	ev, err := d.DecodeTaskSignal(encodeSignal(t, rawSignal(15, oomtraceSignalHookSIGNAL_HOOK_TP_BTF)))
	if err != nil {
		t.Fatal(err)
	}
	// The target cgroup's usage and limit, in bytes; no limit is
	// PAGE_COUNTER_MAX pages.
	want := event.Pressure{SomeAvg10: 12.5, SomeAvg60: 3, FullAvg10: 6.25, FullAvg60: 1.5, SomeTotalUS: 9_000_000, FullTotalUS: 4_000_000}
	if m := ev.TargetMemory; m == nil || m.UsageBytes != 16000*4096 || m.LimitBytes == nil || *m.LimitBytes != 64<<20 || m.Pressure == nil || *m.Pressure != want {
		t.Errorf("target memory %s", jsonOf(ev.TargetMemory))
	}
	// A cgroup v1 memcg, or no PSI: no pressure.
	v1 := rawSignal(9, oomtraceSignalHookSIGNAL_HOOK_TP_BTF)
	v1.TargetPsiValid = 0
	if ev, err := d.DecodeTaskSignal(encodeSignal(t, v1)); err != nil || ev.TargetMemory == nil || ev.TargetMemory.Pressure != nil {
		t.Errorf("no PSI: %s, %v", jsonOf(ev.TargetMemory), err)
	}
	unlimited := rawSignal(9, oomtraceSignalHookSIGNAL_HOOK_TP_BTF)
	unlimited.TargetLimitPages = (1<<63 - 1) / 4096
	if ev, err := d.DecodeTaskSignal(encodeSignal(t, unlimited)); err != nil || ev.TargetMemory == nil || ev.TargetMemory.LimitBytes != nil {
		t.Errorf("no limit: %s, %v", jsonOf(ev.TargetMemory), err)
	}
	if ev.Type != "task_signal" || ev.Node != "n1" || ev.Signal != "SIGTERM" || ev.Hook != HookTpBtfSignal ||
		ev.Target.PID != 4242 || ev.Target.Comm != "java" || ev.Sender.Comm != "runc" || ev.Sender.PID != 77 ||
		ev.Target.Memcg == nil || ev.Target.Memcg.Path != "/kubepods/burstable/pod1/c1" || ev.Target.Memcg.ID != 31 ||
		ev.Time.UnixNano() != 5_000_000_000 {
		t.Errorf("decoded %+v (memcg %+v)", ev, ev.Target.Memcg)
	}
	// Classic tracepoint: no cgroup captured, no uid.
	r := rawSignal(9, oomtraceSignalHookSIGNAL_HOOK_TRACEPOINT)
	r.TargetMemcg.Valid = 0
	ev, err = d.DecodeTaskSignal(encodeSignal(t, r))
	if err != nil || ev.Signal != "SIGKILL" || ev.Hook != HookTracepointSignal || ev.Target.Memcg != nil || ev.Target.UID != nil || ev.TargetMemory != nil {
		t.Errorf("tracepoint record: %+v %v", ev, err)
	}
	for name, mutate := range map[string]func(*rawSignalEvent){
		"type":   func(r *rawSignalEvent) { r.Type = uint32(oomtraceEventTypeEVENT_OOM_KILL) },
		"hook":   func(r *rawSignalEvent) { r.Hook = 9 },
		"signal": func(r *rawSignalEvent) { r.Sig = 2 },
	} {
		r := rawSignal(15, oomtraceSignalHookSIGNAL_HOOK_TP_BTF)
		mutate(&r)
		if _, err := d.DecodeTaskSignal(encodeSignal(t, r)); err == nil {
			t.Errorf("bad %s accepted", name)
		}
	}
	if _, err := d.DecodeTaskSignal(encodeSignal(t, rawSignal(15, 1))[:SignalEventSize-1]); !errors.Is(err, ErrShortRecord) {
		t.Errorf("short record: %v", err)
	}
}

func FuzzDecodeTaskSignal(f *testing.F) {
	f.Add(encodeSignal(f, rawSignal(15, oomtraceSignalHookSIGNAL_HOOK_TP_BTF)))
	f.Add(encodeSignal(f, rawSignal(9, oomtraceSignalHookSIGNAL_HOOK_TRACEPOINT)))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := Decoder{Node: "n"}
		ev, err := d.DecodeTaskSignal(b)
		if err != nil {
			return
		}
		if ev.Signal != "SIGTERM" && ev.Signal != "SIGKILL" {
			t.Fatalf("signal %q", ev.Signal)
		}
		if _, err := json.Marshal(ev); err != nil {
			t.Fatal(err)
		}
	})
}
