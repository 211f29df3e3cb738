// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
//go:build ignore

/*
 * oomtrace: observe kernel OOM kills.
 *
 * Two kinds of hooks cooperate:
 *  - the decision hook (fentry, else kprobe, on oom_kill_process) records the
 *    struct oom_control of the OOM being handled, keyed by the current task;
 *  - the victim hook (tp_btf, else the classic tracepoint, on mark_victim)
 *    fires once per killed task in the same task context and emits one event,
 *    joined with the decision when one was recorded.
 * Where no decision hook attaches, the victim hook finds the OOM domain itself
 * by walking the trigger's memory cgroups up to the one at its limit.
 *
 * mark_victim also fires for a task that was already exiting when it hit the
 * OOM killer, which then only grants it memory reserves and kills nobody. A
 * real kill sends SIGKILL (SEND_SIG_PRIV) to the victim from the trigger's
 * context just before mark_victim, under task_lock; the signal hook records
 * that, and the victim hook tells the two cases apart by it.
 *
 * Cgroup paths are captured here, in the kernel, because the victim's cgroup
 * is usually removed before user space could look it up.
 */

#include "include/kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "oomtrace.h"
#include "control.h"
#include "task.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/*
 * Set by the loader: 1 when a signal hook of this generation is attached,
 * so that a mark_victim without the OOM killer's SIGKILL is an exiting
 * task granted reserves, not a kill.
 */
const volatile __u8 signal_hooked = 0;

/* Decisions older than this are not joined: they belong to an earlier OOM. */
#define DECISION_MAX_AGE_NS (5ULL * 1000 * 1000 * 1000)
/*
 * A memcg counts as "at its limit" when less than this many pages are left:
 * the failed charge was at most a THP (512 pages of 4 KiB).
 */
#define LIMIT_MARGIN_PAGES 512

struct decision_value {
	struct oom_decision d;
	__u64 memcg; /* struct mem_cgroup *oc->memcg, 0 for a global OOM */
};

/* Sized by the loader (tracer.Config.RingBufferBytes). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} oom_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Keyed by bpf_get_current_pid_tgid() of the task running the OOM killer. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct decision_value);
} decisions SEC(".maps");

struct kill_signal {
	__u64 sender; /* bpf_get_current_pid_tgid() of the sender */
	__u64 ts_boot_ns;
};

/* The OOM killer's SIGKILLs, keyed by the pid of the task they went to. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct kill_signal);
} kill_signals SEC(".maps");

/*
 * Only user space touches this: the seqs of records it wrote out while an
 * earlier record was still held (a kill whose container is being checked),
 * so they are past the ring buffer's consumer position. A process that
 * takes over after a crash skips them instead of writing them twice.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} written SEC(".maps");

/*
 * Only user space touches this: the records of kills it holds (a kill
 * whose container is being checked, a group decision not yet over) once
 * they take more than half the ring buffer, moved here so that their
 * wait does not cost the ring buffer room for other pods' kills. A
 * process that takes over after a crash reads them from here first.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct oom_event);
} spilled SEC(".maps");

#define SIGKILL 9
#define SIGTERM 15
#define SI_USER 0
#define SI_KERNEL 0x80

/* include/linux/sched/signal.h: SEND_SIG_PRIV is ((struct kernel_siginfo *)1). */
#define SEND_SIG_PRIV 1UL
/* A kill and its mark_victim are microseconds apart, under one spinlock. */
#define KILL_SIGNAL_MAX_AGE_NS (1000ULL * 1000 * 1000)

/* Keep the ABI types in BTF so bpf2go can generate their Go twins. */
const struct oom_event *unused_oom_event __attribute__((unused));
const enum event_type *unused_event_type __attribute__((unused));
const enum victim_hook *unused_victim_hook __attribute__((unused));
const enum decision_hook *unused_decision_hook __attribute__((unused));
const enum domain_source *unused_domain_source __attribute__((unused));
const enum signal_hook *unused_signal_hook __attribute__((unused));
const enum rss_unit *unused_rss_unit __attribute__((unused));
const enum stat_index *unused_stat_index __attribute__((unused));
const struct signal_event *unused_signal_event __attribute__((unused));
const struct group_fold *unused_group_fold __attribute__((unused));
const enum forced_by *unused_forced_by __attribute__((unused));
const enum siginfo_kind *unused_siginfo_kind __attribute__((unused));

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		(*v)++;
}

static __always_inline void fill_victim_mm(struct oom_event *e, struct task_struct *task)
{
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	if (!mm)
		return;

	e->total_vm = BPF_CORE_READ(mm, total_vm);
	e->pgtables_bytes = BPF_CORE_READ(mm, pgtables_bytes.counter);
	if (bpf_core_type_exists(struct mm_rss_stat)) {
		struct mm_struct___old *old = (void *)mm;
		e->rss_file = BPF_CORE_READ(old, rss_stat.count[0].counter);
		e->rss_anon = BPF_CORE_READ(old, rss_stat.count[1].counter);
		e->rss_swap = BPF_CORE_READ(old, rss_stat.count[2].counter);
		e->rss_shmem = BPF_CORE_READ(old, rss_stat.count[3].counter);
	} else {
		/* The approximate sum, as the kernel's own mark_victim reports it. */
		s64 v;
		v = BPF_CORE_READ(mm, rss_stat[0].count);
		e->rss_file = v > 0 ? v : 0;
		v = BPF_CORE_READ(mm, rss_stat[1].count);
		e->rss_anon = v > 0 ? v : 0;
		v = BPF_CORE_READ(mm, rss_stat[2].count);
		e->rss_swap = v > 0 ? v : 0;
		v = BPF_CORE_READ(mm, rss_stat[3].count);
		e->rss_shmem = v > 0 ? v : 0;
	}
	e->rss_unit = RSS_UNIT_PAGES;
	e->victim_fields |= VICTIM_HAS_RSS | VICTIM_HAS_SWAP;
}

#include "memcg.h"
#include "group.h"

static __always_inline void record_decision(struct oom_control *oc, const char *message, __u8 hook)
{
	__u64 key = bpf_get_current_pid_tgid();
	struct decision_value v = {};

	v.d.ts_boot_ns = bpf_ktime_get_boot_ns();
	v.d.hook = hook;
	v.d.totalpages = BPF_CORE_READ(oc, totalpages);
	v.d.chosen_points = BPF_CORE_READ(oc, chosen_points);
	v.d.chosen_pid = BPF_CORE_READ(oc, chosen, pid);
	v.d.gfp_mask = BPF_CORE_READ(oc, gfp_mask);
	v.d.order = BPF_CORE_READ(oc, order);
	v.d.constraint = BPF_CORE_READ(oc, constraint);
	bpf_probe_read_kernel_str(v.d.message, sizeof(v.d.message), message);
	v.memcg = (__u64)BPF_CORE_READ(oc, memcg);
	bpf_map_update_elem(&decisions, &key, &v, BPF_ANY);
}

SEC("fentry/oom_kill_process")
int BPF_PROG(fentry_oom_kill_process, struct oom_control *oc, const char *message)
{
	if (active_control())
		record_decision(oc, message, DECISION_HOOK_FENTRY);
	return 0;
}

SEC("kprobe/oom_kill_process")
int BPF_KPROBE(kprobe_oom_kill_process, struct oom_control *oc, const char *message)
{
	if (active_control())
		record_decision(oc, message, DECISION_HOOK_KPROBE);
	return 0;
}

static __always_inline void clear_path_header(struct cgroup_path *p)
{
	__builtin_memset(p, 0, __builtin_offsetof(struct cgroup_path, path));
}

/*
 * Common start of both victim hooks: reserve a record, zero its fixed part
 * and path headers, stamp its time and type; the hook fills in the victim.
 * NULL when the ring buffer is full (counted as lost).
 */
static __always_inline struct oom_event *start_event(struct control *c)
{
	/* Taken before the reserve: a lost record leaves a gap in seq. */
#ifdef OOMTRACE_BEFORE_5_12
	/*
	 * No atomic fetch-and-add before 5.12 (BPF_FETCH: the verifier
	 * refuses the instruction wherever it is, "BPF_STX uses reserved
	 * fields"): a plain increment, safe because every mark_victim runs
	 * under the kernel's oom_lock (out_of_memory's callers hold it).
	 */
	__u64 seq = c->next_seq;

	c->next_seq = seq + 1;
#else
	__u64 seq = __sync_fetch_and_add(&c->next_seq, 1);
#endif
	struct oom_event *e = bpf_ringbuf_reserve(&oom_events, sizeof(*e), 0);
	if (!e) {
		count(STAT_OOM_LOST);
		return NULL;
	}
	/* Path bytes past len are never read: zero only the fixed part. */
	__builtin_memset(e, 0, __builtin_offsetof(struct oom_event, victim_memcg));
	__builtin_memset(&e->group_id, 0, sizeof(*e) - __builtin_offsetof(struct oom_event, group_id));
	clear_path_header(&e->victim_memcg);
	clear_path_header(&e->trigger_memcg);
	clear_path_header(&e->domain);
	e->ts_boot_ns = bpf_ktime_get_boot_ns();
	e->type = EVENT_OOM_KILL;
	e->seq = seq;
	return e;
}

#define PF_EXITING 0x00000004

#include "signal.h"

/* victim_css: the victim's memory cgroup, NULL when the hook cannot tell. */
static __always_inline void finish_event(struct control *c, struct oom_event *e, struct cgroup_subsys_state *victim_css)
{
	struct task_struct *current = (void *)bpf_get_current_task();
	struct cgroup_subsys_state *trigger_css = task_memcg_css(current);
	__u64 key = bpf_get_current_pid_tgid();
	__u32 victim = e->victim.pid;
	struct decision_value *dv;
	struct kill_signal *ks;
	struct mem_cgroup *domain;
	__u64 decision_ns = 0;

	ks = bpf_map_lookup_elem(&kill_signals, &victim);
	if (ks && ks->sender == key && e->ts_boot_ns - ks->ts_boot_ns < KILL_SIGNAL_MAX_AGE_NS) {
		e->sigkill_seen = 1;
		bpf_map_delete_elem(&kill_signals, &victim);
	} else if (signal_hooked) {
		__sync_fetch_and_add(&c->exiting, 1);
	}

	fill_task_info(&e->trigger, current);
	fill_cgroup_path(&e->trigger_memcg, BPF_CORE_READ(trigger_css, cgroup));

	dv = bpf_map_lookup_elem(&decisions, &key);
	if (dv && e->ts_boot_ns - dv->d.ts_boot_ns < DECISION_MAX_AGE_NS) {
		e->decision = dv->d;
		e->has_decision = 1;
		e->domain_source = DOMAIN_OOM_CONTROL;
		domain = (void *)dv->memcg;
		decision_ns = dv->d.ts_boot_ns;
		if (domain) {
			fill_domain(e, domain);
		}
	} else {
		domain = find_domain(e, trigger_css);
	}
	if (victim_css) {
		struct mem_cgroup *group = oom_group_of(victim_css, domain);
		if (group)
			mark_group(e, group, decision_ns);
	}
	if (!domain && e->domain_source == DOMAIN_NO_MEMCG_AT_LIMIT)
		domain = find_forced_domain(e, victim_css);
	fill_memcg_counters(&e->domain_counters, domain);
	fill_memcg_counters(&e->victim_counters, (void *)victim_css);
	count(STAT_OOM_SENT);
	/*
	 * User space moves the consumer position only once a kill is written
	 * out, so the kernel's own rule (wake the reader when it has caught
	 * up) would not wake it: always wake it. Kills are rare.
	 */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

SEC("tp_btf/mark_victim")
int BPF_PROG(tp_btf_mark_victim, struct task_struct *task, uid_t uid)
{
	struct cgroup_subsys_state *victim_css;
	struct control *c = active_control();
	struct oom_event *e;

	if (!c)
		return 0;
	victim_css = task_memcg_css(task);
	if (fold_group_kill(c, task, victim_css))
		return 0;
	e = start_event(c);
	if (!e)
		return 0;

	e->victim_hook = VICTIM_HOOK_TP_BTF;
	fill_task_info(&e->victim, task);
	e->victim.uid = uid;
	e->victim_fields |= VICTIM_HAS_IDENTITY;
	fill_victim_mm(e, task);
	e->victim_start_ticks = process_start_ticks(task);
	task_ns_tgid(task, &e->victim_ns_tgid, &e->victim_pidns_level);
	if (e->victim_ns_tgid)
		e->victim_fields |= VICTIM_HAS_NS_PID;
	/* A container's first process has its parent (the runtime's shim)
	 * outside the container's cgroup, whatever its pid namespace. */
	e->victim_parent_memcg = task_memcg_id(BPF_CORE_READ(task, group_leader, real_parent));
	fill_cgroup_path(&e->victim_memcg, BPF_CORE_READ(victim_css, cgroup));
	finish_event(c, e, victim_css);
	return 0;
}

SEC("tracepoint/oom/mark_victim")
int tracepoint_mark_victim(struct trace_event_raw_mark_victim *ctx)
{
	struct task_struct *current = (void *)bpf_get_current_task();
	struct cgroup_subsys_state *victim_css = NULL;
	struct control *c = active_control();
	struct oom_event *e;

	if (!c)
		return 0;
	e = start_event(c);
	if (!e)
		return 0;

	e->victim_hook = VICTIM_HOOK_TRACEPOINT;
	e->victim.pid = BPF_CORE_READ(ctx, pid);
	e->victim.tgid = e->victim.pid;

	/* Since 6.9 the tracepoint carries comm, uid, memory and oom_score_adj. */
	if (bpf_core_field_exists(ctx->__data_loc_comm)) {
		__u32 loc = BPF_CORE_READ(ctx, __data_loc_comm);
		bpf_probe_read_kernel_str(e->victim.comm, sizeof(e->victim.comm),
					  (void *)ctx + (loc & 0xffff));
		e->victim.uid = BPF_CORE_READ(ctx, uid);
		e->victim.oom_score_adj = BPF_CORE_READ(ctx, oom_score_adj);
		e->total_vm = BPF_CORE_READ(ctx, total_vm);
		e->rss_anon = BPF_CORE_READ(ctx, anon_rss);
		e->rss_file = BPF_CORE_READ(ctx, file_rss);
		e->rss_shmem = BPF_CORE_READ(ctx, shmem_rss);
		e->pgtables_bytes = BPF_CORE_READ(ctx, pgtables) * 1024;
		e->rss_unit = RSS_UNIT_KIB;
		e->victim_fields |= VICTIM_HAS_IDENTITY | VICTIM_HAS_RSS;
	}

	/*
	 * The classic tracepoint has no task pointer. When the trigger killed
	 * its own process (the common memcg case) the victim is current or
	 * its thread group leader, and the rest can be read from current: the
	 * mm and the memcg are the process's.
	 */
	if (BPF_CORE_READ(current, pid) == e->victim.pid ||
	    BPF_CORE_READ(current, tgid) == e->victim.pid) {
		__u32 pid = e->victim.pid;
		fill_task_info(&e->victim, current);
		e->victim.pid = pid;
		e->victim_fields |= VICTIM_HAS_IDENTITY;
		fill_victim_mm(e, current);
		e->victim_start_ticks = process_start_ticks(current);
		/* As tp_btf does: read in the kernel, not raced from /proc. */
		task_ns_tgid(current, &e->victim_ns_tgid, &e->victim_pidns_level);
		if (e->victim_ns_tgid)
			e->victim_fields |= VICTIM_HAS_NS_PID;
		e->victim_parent_memcg = task_memcg_id(BPF_CORE_READ(current, group_leader, real_parent));
		victim_css = task_memcg_css(current);
		fill_cgroup_path(&e->victim_memcg, BPF_CORE_READ(victim_css, cgroup));
	}
	finish_event(c, e, victim_css);
	return 0;
}
