package tracer

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"
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
	d := Decoder{Node: "n1"}
	ev, err := d.DecodeTaskSignal(encodeSignal(t, rawSignal(15, oomtraceSignalHookSIGNAL_HOOK_TP_BTF)))
	if err != nil {
		t.Fatal(err)
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
	if err != nil || ev.Signal != "SIGKILL" || ev.Hook != HookTracepointSignal || ev.Target.Memcg != nil || ev.Target.UID != nil {
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
