// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// TestLayoutMatchesBTF compares every Go struct the decoder reads with the C
// struct in the compiled object's BTF: size, and each member's offset and
// size, recursively. The C struct is the ABI; this catches a stale generate.
func TestLayoutMatchesBTF(t *testing.T) {
	spec, err := loadOomtrace()
	if err != nil {
		t.Fatal(err)
	}
	for name, goType := range map[string]reflect.Type{
		"oom_event":    reflect.TypeOf(rawOOMEvent{}),
		"signal_event": reflect.TypeOf(rawSignalEvent{}),
	} {
		var st *btf.Struct
		if err := spec.Types.TypeByName(name, &st); err != nil {
			t.Fatalf("BTF type %s: %v", name, err)
		}
		compareStruct(t, name, st, goType)
	}
}

func compareStruct(t *testing.T, path string, st *btf.Struct, gt reflect.Type) {
	t.Helper()
	if uint32(gt.Size()) != st.Size {
		t.Errorf("%s: Go size %d, C size %d", path, gt.Size(), st.Size)
	}
	var goFields []reflect.StructField
	for i := 0; i < gt.NumField(); i++ {
		if f := gt.Field(i); f.Name != "_" {
			goFields = append(goFields, f)
		}
	}
	if len(goFields) != len(st.Members) {
		t.Fatalf("%s: Go has %d fields, C has %d members", path, len(goFields), len(st.Members))
	}
	for i, m := range st.Members {
		f := goFields[i]
		p := path + "." + m.Name
		if want := camel(m.Name); f.Name != want {
			t.Errorf("%s: Go field %s, want %s", p, f.Name, want)
		}
		if off := uint32(m.Offset.Bytes()); uint32(f.Offset) != off {
			t.Errorf("%s: Go offset %d, C offset %d", p, f.Offset, off)
		}
		size, err := btf.Sizeof(m.Type)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if int(f.Type.Size()) != size {
			t.Errorf("%s: Go size %d, C size %d", p, f.Type.Size(), size)
		}
		if inner, ok := btf.UnderlyingType(m.Type).(*btf.Struct); ok {
			compareStruct(t, p, inner, f.Type)
		}
	}
}

// camel converts a C member name the way bpf2go does: ts_boot_ns -> TsBootNs.
func camel(s string) string {
	var b strings.Builder
	for _, part := range strings.Split(s, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// TestRingBufferSizes: every ring buffer is sized by the table (or, for
// the OOM kills, by the config), each a power of two of whole pages.
func TestRingBufferSizes(t *testing.T) {
	oom, err := loadOomtrace()
	if err != nil {
		t.Fatal(err)
	}
	refusal, err := loadRefusal()
	if err != nil {
		t.Fatal(err)
	}
	sized := map[string]bool{}
	for _, spec := range []*ebpf.CollectionSpec{oom, refusal} {
		sizeRingBuffers(spec)
		for name, ms := range spec.Maps {
			if ms.Type != ebpf.RingBuf || name == oomtraceMapOomEvents {
				continue
			}
			want, ok := ringBufferBytes[name]
			if !ok {
				t.Errorf("ring buffer %s is not in ringBufferBytes", name)
				continue
			}
			if ms.MaxEntries != want || CheckRingBufferBytes(int(want)) != nil {
				t.Errorf("%s: %d bytes, want %d, a power of two of whole pages", name, ms.MaxEntries, want)
			}
			sized[name] = true
		}
	}
	if len(sized) != len(ringBufferBytes) {
		t.Errorf("sized %v; the table has %v", sized, ringBufferBytes)
	}
}
