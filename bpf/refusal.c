// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
//go:build ignore

/*
 * oomtrace: observe overcommit (commit accounting) refusals.
 *
 * The syscalls that charge commit report failure with -ENOMEM (brk: the old
 * break). Their exit tracepoints return at once unless the call failed, so a
 * successful call costs one comparison. The arguments are read at exit from
 * the task's saved registers: no enter hook, no join map.
 *
 * Where fexit (else kretprobe) on __vm_enough_memory attaches, it marks the
 * thread when commit accounting refused, and the exit hook reports that as
 * an exact commit refusal. Without it, user space classifies each failure
 * from what is captured here.
 *
 * Storms: refusals are counted per (process, syscall, class) in a map, and
 * only the first of each window is sent through the ring buffer. User space
 * reads the exact totals from the map.
 */

#include "include/kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "oomtrace.h"
#include "control.h"
#include "task.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define ENOMEM 12
#define PAGE_SHIFT_4K 12
/* include/uapi/asm-generic/mman*.h */
#define PROT_WRITE 0x2
#define MAP_SHARED 0x01
#define MAP_PRIVATE 0x02
#define MAP_NORESERVE 0x4000
#define MAP_HUGETLB 0x40000
#define CLONE_VM 0x100
/* include/uapi/asm-generic/resource.h */
#define RLIMIT_DATA 2
#define RLIMIT_AS 9
#define EXACT_MAX_AGE_NS (1000ULL * 1000 * 1000)

/* Few records: only the first refusal of each window is sent. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} refusal_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RSTAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} refusal_stats SEC(".maps");

/*
 * Settings, written by the loader into the spec before the programs load
 * (cilium/ebpf's spec.Variables): read-only globals, constants to the
 * verifier, no map lookup on the hot path.
 */
const volatile __u64 refusal_window_ns = 1000000000ULL; /* aggregation window */
const volatile __u32 max_map_count = 0;                 /* vm.max_map_count; 0: not checked */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct refusal_key);
	__type(value, struct refusal_count);
} refusal_counts SEC(".maps");

struct exact_refusal {
	__u64 ts_boot_ns;
	__s64 pages;
	__u8 hook;
	__u8 cap_sys_admin;
	__u8 _pad[6];
};

/* __vm_enough_memory refusals not yet claimed by a syscall exit, per thread. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct exact_refusal);
} exact_refusals SEC(".maps");

const struct refusal_event *unused_refusal_event __attribute__((unused));
const struct refusal_key *unused_refusal_key __attribute__((unused));
const struct refusal_count *unused_refusal_count __attribute__((unused));
const enum refusal_syscall *unused_refusal_syscall __attribute__((unused));
const enum refusal_class *unused_refusal_class __attribute__((unused));
const enum exact_hook *unused_exact_hook __attribute__((unused));
const enum refusal_stat_index *unused_refusal_stat_index __attribute__((unused));

static __always_inline void rcount(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&refusal_stats, &idx);
	if (v)
		(*v)++;
}

static __always_inline void record_exact(long pages, int cap_sys_admin, int ret, __u8 hook)
{
	struct exact_refusal x = {};
	__u64 key;

	if (ret == 0 || !active_control())
		return;
	key = bpf_get_current_pid_tgid();
	x.ts_boot_ns = bpf_ktime_get_boot_ns();
	x.pages = pages;
	x.cap_sys_admin = cap_sys_admin != 0;
	x.hook = hook;
	bpf_map_update_elem(&exact_refusals, &key, &x, BPF_ANY);
}

SEC("fexit/__vm_enough_memory")
int BPF_PROG(fexit_vm_enough_memory, struct mm_struct *mm, long pages, int cap_sys_admin, int ret)
{
	record_exact(pages, cap_sys_admin, ret, EXACT_HOOK_FEXIT);
	return 0;
}

/*
 * A kretprobe cannot see the arguments: the entry probe keeps them per thread.
 */
struct vm_enough_args {
	long pages;
	int cap_sys_admin;
	int _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct vm_enough_args);
} vm_enough_args SEC(".maps");

SEC("kprobe/__vm_enough_memory")
int BPF_KPROBE(kprobe_vm_enough_memory, struct mm_struct *mm, long pages, int cap_sys_admin)
{
	__u64 key = bpf_get_current_pid_tgid();
	struct vm_enough_args a = { .pages = pages, .cap_sys_admin = cap_sys_admin };

	bpf_map_update_elem(&vm_enough_args, &key, &a, BPF_ANY);
	return 0;
}

SEC("kretprobe/__vm_enough_memory")
int BPF_KRETPROBE(kretprobe_vm_enough_memory, int ret)
{
	__u64 key = bpf_get_current_pid_tgid();
	struct vm_enough_args *a = bpf_map_lookup_elem(&vm_enough_args, &key);

	if (!a)
		return 0;
	record_exact(a->pages, a->cap_sys_admin, ret, EXACT_HOOK_KRETPROBE);
	bpf_map_delete_elem(&vm_enough_args, &key);
	return 0;
}

/*
 * Whether bpf_task_pt_regs (5.15) and bpf_get_current_task_btf (5.11) are
 * there: set by the loader, which probes for them. The verifier drops the
 * branch this kernel does not take.
 */
const volatile __u8 have_task_pt_regs = 1;

/* THREAD_SIZE of x86_64 and arm64 (4 KiB pages, no KASAN). */
#define KERNEL_STACK_SIZE (16 * 1024)

/* The registers saved at syscall entry: the arguments are still there at exit. */
static __always_inline struct pt_regs *syscall_regs(void)
{
	struct task_struct *task;
	void *stack;

	if (have_task_pt_regs)
		return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	/*
	 * Before 5.15: where task_pt_regs() finds them, at the top of the
	 * task's kernel stack (x86_64 and arm64 keep no padding above them).
	 * Read through bpf_probe_read_kernel like every pointer here.
	 */
	task = (struct task_struct *)bpf_get_current_task();
	stack = BPF_CORE_READ(task, stack);
	return (struct pt_regs *)(stack + KERNEL_STACK_SIZE - bpf_core_type_size(struct pt_regs));
}

/* The first argument alone: what brk's hot path needs to decide. */
static __always_inline __u64 read_arg0(struct pt_regs *regs)
{
#if defined(__TARGET_ARCH_x86)
	return BPF_CORE_READ(regs, di);
#elif defined(__TARGET_ARCH_arm64)
	/* x0 holds the return value by now: the first argument is orig_x0. */
	return BPF_CORE_READ(regs, orig_x0);
#endif
}

/* All six arguments; only for calls that failed. */
static __always_inline void read_args(struct pt_regs *regs, __u64 args[6])
{
	args[0] = read_arg0(regs);
#if defined(__TARGET_ARCH_x86)
	args[1] = BPF_CORE_READ(regs, si);
	args[2] = BPF_CORE_READ(regs, dx);
	args[3] = BPF_CORE_READ(regs, r10);
	args[4] = BPF_CORE_READ(regs, r8);
	args[5] = BPF_CORE_READ(regs, r9);
#elif defined(__TARGET_ARCH_arm64)
	args[1] = BPF_CORE_READ(regs, regs[1]);
	args[2] = BPF_CORE_READ(regs, regs[2]);
	args[3] = BPF_CORE_READ(regs, regs[3]);
	args[4] = BPF_CORE_READ(regs, regs[4]);
	args[5] = BPF_CORE_READ(regs, regs[5]);
#endif
}

/* Bytes the call asked commit accounting for, from its arguments. */
static __always_inline __u64 request_bytes(__u16 sc, __u64 args[6], long ret, struct mm_struct *mm,
					   bool *private_writable)
{
	*private_writable = false;
	switch (sc) {
	case SYSCALL_MMAP: {
		__u64 prot = args[2], flags = args[3];
		/* mm/mmap.c accountable_mapping(), shmem_acct_size() */
		*private_writable = !(flags & MAP_HUGETLB) &&
				    (((flags & MAP_PRIVATE) && (prot & PROT_WRITE)) ||
				     (flags & MAP_SHARED));
		return args[1];
	}
	case SYSCALL_BRK:
		*private_writable = true;
		return args[0] > (__u64)ret ? args[0] - (__u64)ret : 0;
	case SYSCALL_MREMAP:
		*private_writable = true;
		return args[2] > args[1] ? args[2] - args[1] : 0;
	case SYSCALL_MPROTECT:
		*private_writable = (args[2] & PROT_WRITE) != 0;
		return args[1];
	case SYSCALL_SHMGET:
		return args[1];
	case SYSCALL_CLONE:
	case SYSCALL_CLONE3:
	case SYSCALL_FORK:
	case SYSCALL_VFORK:
		/*
		 * dup_mmap charges the parent's private writable mappings:
		 * data_vm and stack_vm are their size.
		 */
		*private_writable = true;
		return (BPF_CORE_READ(mm, data_vm) + BPF_CORE_READ(mm, stack_vm)) << PAGE_SHIFT_4K;
	}
	return 0;
}

/*
 * The body of every syscall exit hook: one program the stubs below tail-call
 * into, so that the verifier checks it once, not once per syscall (start-up
 * waits for it). The stub hands over the syscall in failed_syscall.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} refusal_body SEC(".maps");

/* From a stub to the body it tail-calls: the same CPU, without preemption. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} failed_syscall SEC(".maps");

static __always_inline int on_exit(struct trace_event_raw_sys_exit *ctx, __u16 sc)
{
	/* A direct (CO-RE relocated) context load: no helper call on the hot path. */
	long ret = ctx->ret;
	__u32 zero = 0, *slot;

	/*
	 * The hot path: every successful call returns here. brk reports
	 * failure by returning the old break, so it needs its argument: one
	 * register read, the rest only once the call has failed.
	 */
	if (sc == SYSCALL_BRK) {
		__u64 want;

		if (ret < 0)
			return 0; /* brk never fails this way */
		want = read_arg0(syscall_regs());
		if (want == 0 || want <= (__u64)ret)
			return 0; /* a query, a shrink, or the growth it asked for */
	} else if (ret != -ENOMEM) {
		return 0;
	}
	/* Only the active generation's stubs go on (the body is shared). */
	if (!active_control())
		return 0;
	slot = bpf_map_lookup_elem(&failed_syscall, &zero);
	if (!slot)
		return 0;
	*slot = sc;
	bpf_tail_call(ctx, &refusal_body, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int sys_exit_refusal(struct trace_event_raw_sys_exit *ctx)
{
	long ret = ctx->ret;
	__u32 zero = 0, *slot;
	__u16 sc;
	struct task_struct *task;
	struct refusal_count *cnt, fresh = {};
	struct refusal_key key = {};
	struct exact_refusal *x;
	struct refusal_event *e;
	struct mm_struct *mm;
	struct signal_struct *sig;
	bool private_writable;
	__u64 args[6] = {}, now, pid_tgid, req, pages, rlim_as, rlim_data;
	__u32 map_count;
	__u8 exact_hook = 0, exact_cap = 0;
	__s64 exact_pages = 0;

	slot = bpf_map_lookup_elem(&failed_syscall, &zero);
	if (!slot)
		return 0;
	sc = *slot;
	read_args(syscall_regs(), args);

	rcount(RSTAT_FAILED);
	now = bpf_ktime_get_boot_ns();
	pid_tgid = bpf_get_current_pid_tgid();
	task = (struct task_struct *)bpf_get_current_task(); /* _btf is 5.11+ */
	mm = BPF_CORE_READ(task, mm);
	sig = BPF_CORE_READ(task, signal);

	x = bpf_map_lookup_elem(&exact_refusals, &pid_tgid);
	if (x) {
		if (now - x->ts_boot_ns < EXACT_MAX_AGE_NS) {
			exact_hook = x->hook;
			exact_cap = x->cap_sys_admin;
			exact_pages = x->pages;
		}
		bpf_map_delete_elem(&exact_refusals, &pid_tgid);
	}

	req = request_bytes(sc, args, ret, mm, &private_writable);
	pages = (req + 4095) >> PAGE_SHIFT_4K;
	map_count = BPF_CORE_READ(mm, map_count);
	rlim_as = BPF_CORE_READ(sig, rlim[RLIMIT_AS].rlim_cur);
	rlim_data = BPF_CORE_READ(sig, rlim[RLIMIT_DATA].rlim_cur);

	/* The order of mm/mmap.c: map count, then may_expand_vm, then accounting. */
	key.class = CLASS_OTHER;
	if (exact_hook) {
		key.class = CLASS_EXACT;
	} else if ((sc == SYSCALL_MMAP || sc == SYSCALL_MREMAP || sc == SYSCALL_MPROTECT) &&
		   max_map_count && map_count >= max_map_count) {
		key.class = CLASS_MAP_COUNT;
	} else if ((sc == SYSCALL_MMAP || sc == SYSCALL_MREMAP || sc == SYSCALL_BRK) &&
		   ((BPF_CORE_READ(mm, total_vm) + pages) << PAGE_SHIFT_4K) > rlim_as) {
		key.class = CLASS_RLIMIT_AS;
	} else if ((sc == SYSCALL_MMAP || sc == SYSCALL_MREMAP || sc == SYSCALL_BRK) && private_writable &&
		   ((BPF_CORE_READ(mm, data_vm) + pages) << PAGE_SHIFT_4K) > rlim_data) {
		key.class = CLASS_RLIMIT_DATA;
	}
	key.tgid = pid_tgid >> 32;
	key.syscall = sc;

	cnt = bpf_map_lookup_elem(&refusal_counts, &key);
	if (!cnt) {
		bpf_map_update_elem(&refusal_counts, &key, &fresh, BPF_NOEXIST);
		cnt = bpf_map_lookup_elem(&refusal_counts, &key);
		if (!cnt)
			return 0;
	}
	__sync_fetch_and_add(&cnt->total, 1);
	/* Not the first refusal of its window: counted, nothing sent. */
	if (cnt->window_start_ns && now - cnt->window_start_ns < refusal_window_ns)
		return 0;
	cnt->window_start_ns = now;

	e = bpf_ringbuf_reserve(&refusal_events, sizeof(*e), 0);
	if (!e) {
		rcount(RSTAT_LOST);
		return 0;
	}
	__builtin_memset(e, 0, __builtin_offsetof(struct refusal_event, memcg.path));
	e->ts_boot_ns = now;
	e->type = EVENT_COMMIT_REFUSAL;
	e->syscall = sc;
	e->class = key.class;
	e->exact_hook = exact_hook;
	e->exact_cap_sys_admin = exact_cap;
	e->exact_pages = exact_pages;
	fill_task_info(&e->process, task);
	e->total = cnt->total;
	e->ret = ret;
	e->request_bytes = req;
	e->args[0] = args[0];
	e->args[1] = args[1];
	e->args[2] = args[2];
	e->args[3] = args[3];
	e->args[4] = args[4];
	e->args[5] = args[5];
	e->total_vm_pages = BPF_CORE_READ(mm, total_vm);
	e->data_vm_pages = BPF_CORE_READ(mm, data_vm);
	e->stack_vm_pages = BPF_CORE_READ(mm, stack_vm);
	e->rlimit_as = rlim_as;
	e->rlimit_data = rlim_data;
	{
		/*
		 * kernel_cap_t is a u64 since 6.3 and u32 cap[2] before: the same
		 * eight bytes, so read them whole at the relocated offset.
		 */
		const struct cred *cred = BPF_CORE_READ(task, real_cred);
		bpf_core_read(&e->cap_effective, sizeof(e->cap_effective), &cred->cap_effective);
	}
	e->map_count = map_count;
	e->accountable = private_writable;
	{
		struct cgroup_subsys_state *css = task_memcg_css(task);
		fill_cgroup_path(&e->memcg, BPF_CORE_READ(css, cgroup));
	}
	rcount(RSTAT_SENT);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

#define SYSCALL_EXIT(name, id)                                    \
	SEC("tracepoint/syscalls/sys_exit_" #name)                \
	int sys_exit_##name(struct trace_event_raw_sys_exit *ctx) \
	{                                                         \
		return on_exit(ctx, id);                          \
	}

SYSCALL_EXIT(mmap, SYSCALL_MMAP)
SYSCALL_EXIT(brk, SYSCALL_BRK)
SYSCALL_EXIT(mremap, SYSCALL_MREMAP)
SYSCALL_EXIT(mprotect, SYSCALL_MPROTECT)
SYSCALL_EXIT(clone, SYSCALL_CLONE)
SYSCALL_EXIT(clone3, SYSCALL_CLONE3)
SYSCALL_EXIT(fork, SYSCALL_FORK)
SYSCALL_EXIT(vfork, SYSCALL_VFORK)
SYSCALL_EXIT(shmget, SYSCALL_SHMGET)
SYSCALL_EXIT(execve, SYSCALL_EXECVE)
