// SPDX-License-Identifier: Apache-2.0

package tracer

import "github.com/oomtrace/oomtrace/event"

// refusalFacts is what a refused call's record says, in bytes.
type refusalFacts struct {
	RequestBytes uint64
	Accountable  bool // charged to commit: private writable, or shared anonymous
	Class        refusalRefusalClass
	ExactSeen    bool // __vm_enough_memory refused (exact hook)
	ExactHooked  bool // an exact hook is attached: its silence means "not commit"
	CapSysAdmin  bool
	TotalVMBytes uint64
}

// Classified-by values: the rule that decided a refusal's reason.
const (
	byExact          = "vm_enough_memory"
	byAddressSpace   = "request>address_space"
	byMapCount       = "map_count>=max_map_count"
	byRlimitAS       = "total_vm+request>RLIMIT_AS"
	byRlimitData     = "data_vm+request>RLIMIT_DATA"
	byMode0          = "mode0:request>ram+swap"
	byMode2          = "mode2:committed+request>commit_limit-reserves"
	byNotAccountable = "request_not_commit_accounted"
	byMode1          = "mode1:never_refuses"
	byExactSilent    = "vm_enough_memory_did_not_refuse"
	byNoRule         = "no_rule_matched"
)

// classifyRefusal decides why a call was refused, in the order the kernel
// checks (mm/mmap.c do_mmap and mmap_region): address space, map count,
// RLIMIT_AS and RLIMIT_DATA (may_expand_vm), then commit accounting. An
// rlimit failure is never called a commit refusal. addressSpace is the size
// of a process's address space (TASK_SIZE).
func classifyRefusal(f refusalFacts, h hostMemory, addressSpace uint64) (reason, by string) {
	switch {
	case f.ExactSeen:
		return event.ReasonCommit, byExact
	case f.RequestBytes > addressSpace:
		return event.ReasonAddressSpace, byAddressSpace
	case f.Class == refusalRefusalClassCLASS_MAP_COUNT:
		return event.ReasonMapCount, byMapCount
	case f.Class == refusalRefusalClassCLASS_RLIMIT_AS:
		return event.ReasonRlimitAS, byRlimitAS
	case f.Class == refusalRefusalClassCLASS_RLIMIT_DATA:
		return event.ReasonRlimitData, byRlimitData
	case f.ExactHooked:
		// The exact hook saw no refusal from commit accounting.
		return event.ReasonUnknown, byExactSilent
	case !f.Accountable:
		return event.ReasonUnknown, byNotAccountable
	}
	switch h.Mode {
	case 0:
		// mm/util.c: pages > totalram_pages() + total_swap_pages.
		if f.RequestBytes > h.MemTotal+h.SwapTotal {
			return event.ReasonCommit, byMode0
		}
	case 1:
		return event.ReasonUnknown, byMode1
	case 2:
		allowed := int64(h.CommitLimit)
		if !f.CapSysAdmin {
			allowed -= int64(h.AdminReserve)
		}
		allowed -= int64(min(f.TotalVMBytes/32, h.UserReserve))
		if int64(h.Committed)+int64(f.RequestBytes) >= allowed {
			return event.ReasonCommit, byMode2
		}
	}
	return event.ReasonUnknown, byNoRule
}
