// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// haveTaskPtRegs says whether tracepoint programs may call
// bpf_task_pt_regs (5.15) and bpf_get_current_task_btf (5.11): the
// refusal programs read a failed syscall's arguments through them, and
// otherwise from the top of the task's kernel stack (have_task_pt_regs in
// bpf/refusal.c).
var haveTaskPtRegs = sync.OnceValue(func() bool {
	return features.HaveProgramHelper(ebpf.TracePoint, asm.FnTaskPtRegs) == nil &&
		features.HaveProgramHelper(ebpf.TracePoint, asm.FnGetCurrentTaskBtf) == nil
})

// globalFuncPointerArgs says whether the kernel is 5.12 or later, whose
// verifier takes a pointer argument of a global function (fill_cgroup_path
// in bpf/task.h) and an atomic fetch-and-add (BPF_FETCH): the objects load
// there, the *Inline ones (built with OOMTRACE_BEFORE_5_12) before. From
// the kernel's version, which a kernel of 5.12 or later always says; a
// kernel that backported either loads the *Inline ones, which are right
// everywhere, only slower to verify.
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
