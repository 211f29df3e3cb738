package tracer

import (
	"errors"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
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
