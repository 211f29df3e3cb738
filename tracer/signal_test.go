package tracer

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/memcgtest"
)

// waitSignal waits for a task signal to pid.
func (c *collector) waitSignal(t *testing.T, pid int, sig string) event.TaskSignal {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		for _, ev := range c.signals {
			if int(ev.Target.PID) == pid && ev.Signal == sig {
				c.mu.Unlock()
				return ev
			}
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-deadline:
			t.Fatalf("no %s to %d seen", sig, pid)
		}
	}
}

// TestTaskSignals: a SIGTERM and a SIGKILL from this test to processes in
// a cgroup of its own, on both signal hooks: sender, target, hook, and on
// tp_btf the target's cgroup captured in the kernel.
func TestTaskSignals(t *testing.T) {
	for _, hook := range []string{HookTpBtf, HookTracepoint} {
		t.Run(hook, func(t *testing.T) {
			c := startTracer(t, Config{VictimHook: hook, Node: "n"})
			cg := memcgtest.New(t, nil, 0)
			h := cg.Start(t, memcgtest.HogOptions{Bytes: 1 << 20, Idle: true})
			// SIGTERM ends the hog (Go's default), so SIGKILL goes to a
			// second one.
			if err := syscall.Kill(h.PID, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			term := c.waitSignal(t, h.PID, "SIGTERM")
			h2 := cg.Start(t, memcgtest.HogOptions{Bytes: 1 << 20, Idle: true})
			if err := syscall.Kill(h2.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			kill := c.waitSignal(t, h2.PID, "SIGKILL")
			for _, ev := range []event.TaskSignal{term, kill} {
				if ev.Type != "task_signal" || ev.Code != 0 || ev.Result != 0 || int(ev.Sender.TGID) != syscall.Getpid() {
					t.Errorf("%s: %+v", ev.Signal, ev)
				}
				want := HookTpBtfSignal
				if hook == HookTracepoint {
					want = HookTracepointSignal
				}
				if ev.Hook != want {
					t.Errorf("%s: hook %q, want %q", ev.Signal, ev.Hook, want)
				}
				if ev.Target.Comm == "" {
					t.Errorf("%s: no target comm", ev.Signal)
				}
			}
			// The classic tracepoint cannot capture the target's cgroup
			// (it is read from /proc when the target still lives then).
			if hook == HookTpBtf {
				for _, ev := range []event.TaskSignal{term, kill} {
					if ev.Target.Memcg == nil || ev.Target.Memcg.Path != cg.Path || ev.Target.Memcg.Source != event.CgroupFromKernel {
						t.Errorf("%s: target memcg %+v, want %s from the kernel", ev.Signal, ev.Target.Memcg, cg.Path)
					}
				}
			}
		})
	}
}

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
