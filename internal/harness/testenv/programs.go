// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
)

// oomtracePrograms are the names of oomtrace's BPF programs, whole (as
// cilium/ebpf reads them from the program's BTF, where it has one: fentry,
// tp_btf) and as the kernel keeps them (15 bytes).
var oomtracePrograms = func() map[string]bool {
	names := map[string]bool{}
	for _, n := range []string{"tp_btf_mark_victim", "tracepoint_mark_victim", "tp_btf_signal_generate", "tracepoint_signal_generate",
		"fentry_oom_kill_process", "kprobe_oom_kill_process", "fexit_vm_enough_memory", "kprobe_vm_enough_memory", "kretprobe_vm_enough_memory",
		"sys_exit_mmap", "sys_exit_brk", "sys_exit_mremap", "sys_exit_mprotect", "sys_exit_clone", "sys_exit_clone3",
		"sys_exit_fork", "sys_exit_vfork", "sys_exit_shmget", "sys_exit_execve"} {
		names[n] = true
		names[n[:min(len(n), 15)]] = true
	}
	return names
}()

// ProgramNames lists every loaded BPF program as id:name, or why not.
func ProgramNames() []string {
	var all []string
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return all
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			all = append(all, fmt.Sprintf("%d:(%v)", id, err))
			continue
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			all = append(all, fmt.Sprintf("%d:(info: %v)", id, err))
			continue
		}
		all = append(all, fmt.Sprintf("%d:%s", id, info.Name))
	}
}

// OomtracePrograms lists, as id:name, the loaded BPF programs whose names
// are oomtrace's.
func OomtracePrograms() []string {
	var found []string
	for _, p := range ProgramNames() {
		if _, name, _ := strings.Cut(p, ":"); oomtracePrograms[name] {
			found = append(found, p)
		}
	}
	return found
}
