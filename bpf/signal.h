/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Task signals: the OOM killer's SIGKILL (which tells a kill from an
 * exiting task granted reserves) and every other SIGTERM and SIGKILL to a
 * process, within a budget per target cgroup and one for the node.
 *
 * Part of oomtrace.c, which includes it once, where its definitions
 * are first needed; not a header of its own.
 */
#ifndef OOMTRACE_SIGNAL_H
#define OOMTRACE_SIGNAL_H

/* Task signals are rare (stopping processes): a small ring buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} signal_events SEC(".maps");

/*
 * A budget of task signal records per target: its memory cgroup (or, on
 * the classic tracepoint, which does not give the target's task, the
 * sender). A container that signals its own processes in a loop spends its
 * own budget, not the ring buffer's room for the kubelet's stops of other
 * pods: SIGNAL_BUDGET records per SIGNAL_BUDGET_WINDOW_NS, the rest only
 * counted (STAT_SIGNAL_LIMITED). An eviction stops a pod with a few
 * signals per container.
 */
#define SIGNAL_BUDGET 32
#define SIGNAL_BUDGET_WINDOW_NS 1000000000ULL
/*
 * Many cgroups would each have a budget of their own: past its first
 * SIGNAL_BUDGET_FREE records in a window, a target's records also draw on
 * one budget for the node (set by the loader), so a tenant with many
 * cgroups cannot fill the ring buffer, while every cgroup's first few
 * signals (a stop is SIGTERM, then SIGKILL) are still recorded.
 */
#define SIGNAL_BUDGET_FREE 4
const volatile __u32 signal_node_budget = 512;

struct signal_budget {
	__u64 window_start_ns;
	__u32 spent;
	__u32 _pad;
};

static struct signal_budget node_signal_budget;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct signal_budget);
} signal_budgets SEC(".maps");

/* Spend one of b's limit records in its window. */
static __always_inline bool spend_budget(struct signal_budget *b, __u32 limit, __u64 now)
{
	if (now - b->window_start_ns >= SIGNAL_BUDGET_WINDOW_NS) {
		b->window_start_ns = now;
		b->spent = 1;
		return true;
	}
	if (b->spent >= limit)
		return false;
	b->spent++;
	return true;
}

/* Whether a record for key fits its budget; racing CPUs may overspend a little. */
static __always_inline bool spend_signal_budget(__u64 key, __u64 now)
{
	struct signal_budget *b = bpf_map_lookup_elem(&signal_budgets, &key);

	if (!b) {
		struct signal_budget fresh = { .window_start_ns = now, .spent = 1 };
		bpf_map_update_elem(&signal_budgets, &key, &fresh, BPF_ANY);
		return true;
	}
	if (now - b->window_start_ns >= SIGNAL_BUDGET_WINDOW_NS)
		return spend_budget(b, SIGNAL_BUDGET, now);
	if (b->spent >= SIGNAL_BUDGET)
		return false;
	if (b->spent >= SIGNAL_BUDGET_FREE && !spend_budget(&node_signal_budget, signal_node_budget, now))
		return false;
	b->spent++;
	return true;
}

/*
 * The OOM killer's SIGKILL to a process that is an OOM victim already
 * (signal->oom_mm is set by the mark that follows a first kill), sent by
 * a trigger in the middle of a group kill: the group's scan met the task
 * it chose again (or, on kernels that scan threads, another thread of a
 * task it killed), and the kernel killed and counted it again. A mark that
 * follows (another thread than the one marked first) finds no kill signal
 * recorded: it is not reported as a kill. A dying container init's
 * SIGKILLs to its namespace (the same SEND_SIG_PRIV) come from an exiting
 * task, which never runs the OOM killer.
 */
static __always_inline bool oom_recount(struct task_struct *task)
{
	struct task_struct *current = (void *)bpf_get_current_task();
	__u64 key = bpf_get_current_pid_tgid();
	struct group_kill *g;

	if (!BPF_CORE_READ(task, signal, oom_mm) || (BPF_CORE_READ(current, flags) & PF_EXITING))
		return false;
	g = bpf_map_lookup_elem(&group_kills, &key);
	return g && bpf_ktime_get_boot_ns() - g->last_ns < GROUP_KILL_MAX_GAP_NS;
}

static __always_inline void record_kill_signal(__u32 target)
{
	struct kill_signal ks = {
		.sender = bpf_get_current_pid_tgid(),
		.ts_boot_ns = bpf_ktime_get_boot_ns(),
	};
	bpf_map_update_elem(&kill_signals, &target, &ks, BPF_ANY);
}

/*
 * The memory pressure of a cgroup of the default hierarchy, as the PSI
 * files show it: a v1 cgroup's psi group is never updated, and a kernel
 * without PSI has none.
 */
static __always_inline void fill_memory_pressure(struct signal_event *e, struct cgroup *cgrp)
{
	struct cgroup___psi_embedded *embedded = (void *)cgrp;
	struct psi_group *psi = NULL;
	unsigned long avg_off, total_off;
	int s, p;

	if (!cgrp || BPF_CORE_READ(cgrp, root, hierarchy_id) != 0)
		return;
	if (bpf_core_field_exists(cgrp->psi))
		psi = BPF_CORE_READ(cgrp, psi);
	else if (bpf_core_field_exists(embedded->psi))
		psi = __builtin_preserve_access_index(&embedded->psi);
	if (!psi)
		return;
	avg_off = bpf_core_field_offset(struct psi_group, avg);
	total_off = bpf_core_field_offset(struct psi_group, total);
	for (s = 0; s < 2; s++) {
		int state = s ? PSI_MEM_FULL : PSI_MEM_SOME;

		for (p = 0; p < 2; p++)
			bpf_probe_read_kernel(&e->target_psi_avg[s][p], sizeof(unsigned long),
					      (void *)psi + avg_off + (state * PSI_AVG_PERIODS + p) * sizeof(unsigned long));
		bpf_probe_read_kernel(&e->target_psi_total_ns[s], sizeof(__u64), (void *)psi + total_off + state * sizeof(__u64));
	}
	e->target_psi_valid = 1;
}

/*
 * Any other SIGTERM or SIGKILL to a process is a task signal event: how the
 * kubelet's evictions (through the runtime) and other stops reach it.
 * task is NULL on the classic tracepoint, which only names the target.
 */
static __always_inline void emit_task_signal(int sig, int code, int result, struct task_struct *task,
					     __u32 pid, const char *comm, __u8 hook, __u8 info)
{
	struct task_struct *current = (void *)bpf_get_current_task();
	struct signal_event *e;
	__u64 budget = task ? task_memcg_id(task) : (1ULL << 63) | (bpf_get_current_pid_tgid() >> 32);
	__u64 now = bpf_ktime_get_boot_ns();

	if (!spend_signal_budget(budget, now)) {
		count(STAT_SIGNAL_LIMITED);
		return;
	}
	e = bpf_ringbuf_reserve(&signal_events, sizeof(*e), 0);
	if (!e) {
		count(STAT_SIGNAL_LOST);
		return;
	}
	__builtin_memset(e, 0, __builtin_offsetof(struct signal_event, target_memcg));
	clear_path_header(&e->target_memcg);
	e->ts_boot_ns = now;
	e->type = EVENT_TASK_SIGNAL;
	e->sig = sig;
	e->code = code;
	e->result = result;
	e->hook = hook;
	e->info = info;
	fill_task_info(&e->sender, current);
	if (task) {
		struct cgroup_subsys_state *css = task_memcg_css(task);
		struct mem_cgroup *memcg = (void *)css;

		fill_task_info(&e->target, task);
		fill_cgroup_path(&e->target_memcg, BPF_CORE_READ(css, cgroup));
		if (css) {
			e->target_usage_pages = BPF_CORE_READ(memcg, memory.usage.counter);
			e->target_limit_pages = BPF_CORE_READ(memcg, memory.max);
			fill_memory_pressure(e, BPF_CORE_READ(css, cgroup));
		}
	} else {
		e->target.pid = pid;
		bpf_probe_read_kernel_str(e->target.comm, sizeof(e->target.comm), comm);
	}
	bpf_ringbuf_submit(e, 0);
	count(STAT_SIGNAL_SENT);
}

SEC("tp_btf/signal_generate")
int BPF_PROG(tp_btf_signal_generate, int sig, struct kernel_siginfo *info, struct task_struct *task,
	     int group, int result)
{
	unsigned long i = (unsigned long)info;
	struct control *c;
	int code = SI_USER;
	__u8 kind = SIGINFO_FULL;

	if (sig != SIGKILL && sig != SIGTERM)
		return 0;
	c = active_control();
	if (!c)
		return 0;
	if (sig == SIGKILL && i == SEND_SIG_PRIV) {
		if (oom_recount(task))
			__sync_fetch_and_add(&c->recounted, 1);
		else
			record_kill_signal(BPF_CORE_READ(task, pid));
		return 0;
	}
	if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid))
		return 0;
	/* SEND_SIG_NOINFO (0) is a user's signal; SEND_SIG_PRIV (1) the kernel's. */
	if (i == SEND_SIG_PRIV) {
		code = SI_KERNEL;
		kind = SIGINFO_PRIV;
	} else if (i > SEND_SIG_PRIV) {
		code = BPF_CORE_READ(info, si_code);
	} else {
		kind = SIGINFO_NOINFO;
	}
	emit_task_signal(sig, code, result, task, 0, NULL, SIGNAL_HOOK_TP_BTF, kind);
	return 0;
}

SEC("tracepoint/signal/signal_generate")
int tracepoint_signal_generate(struct trace_event_raw_signal_generate *ctx)
{
	int sig = BPF_CORE_READ(ctx, sig), code = BPF_CORE_READ(ctx, code);

	if (sig != SIGKILL && sig != SIGTERM)
		return 0;
	if (!active_control())
		return 0;
	/* SEND_SIG_PRIV is recorded as si_code SI_KERNEL. */
	if (sig == SIGKILL && code == SI_KERNEL) {
		record_kill_signal(BPF_CORE_READ(ctx, pid));
		return 0;
	}
	emit_task_signal(sig, code, BPF_CORE_READ(ctx, result), NULL, BPF_CORE_READ(ctx, pid), ctx->comm,
			 SIGNAL_HOOK_TRACEPOINT, SIGINFO_UNKNOWN);
	return 0;
}

#endif /* OOMTRACE_SIGNAL_H */
