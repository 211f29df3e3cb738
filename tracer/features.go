package tracer

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// haveAtomicFetch says whether the kernel's verifier takes an atomic
// fetch-and-add (BPF_FETCH, 5.12): 5.10 refuses it ("BPF_STX uses reserved
// fields"), and the programs then take their seq another way (see
// atomic_fetch in bpf/oomtrace.c). Probed once, with a socket filter that
// does one on its stack; any error but the verifier's refusal (no
// privilege: the tracer says so itself) counts as yes.
var haveAtomicFetch = sync.OnceValue(func() bool {
	err := probeAtomicFetch()
	return err == nil || !errors.Is(err, unix.EINVAL)
})

func probeAtomicFetch() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, 0),
			asm.StoreMem(asm.RFP, -8, asm.R1, asm.DWord),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.Mov.Imm(asm.R1, 1),
			asm.FetchAdd.Mem(asm.R2, asm.R1, asm.DWord, 0),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return err
	}
	return prog.Close()
}

// haveTaskPtRegs says whether tracepoint programs may call
// bpf_task_pt_regs (5.15) and bpf_get_current_task_btf (5.11): the
// refusal programs read a failed syscall's arguments through them, and
// otherwise from the top of the task's kernel stack (have_task_pt_regs in
// bpf/refusal.c).
var haveTaskPtRegs = sync.OnceValue(func() bool {
	return features.HaveProgramHelper(ebpf.TracePoint, asm.FnTaskPtRegs) == nil &&
		features.HaveProgramHelper(ebpf.TracePoint, asm.FnGetCurrentTaskBtf) == nil
})

// globalFuncPointerArgs says whether the verifier takes a pointer argument
// of a global function (5.12): the objects that have one (fill_cgroup_path
// in bpf/task.h) load there, the *Inline ones before. From the kernel's
// version: a probe would need a program with BTF function info, and a
// kernel of 5.12 or later always has it.
var globalFuncPointerArgs = sync.OnceValue(func() bool {
	major, minor, ok := kernelVersion()
	return !ok || major > 5 || major == 5 && minor >= 12
})

// kernelVersion is the running kernel's major and minor version.
func kernelVersion() (major, minor int, ok bool) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, 0, false
	}
	n, _ := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	return major, minor, n == 2
}
