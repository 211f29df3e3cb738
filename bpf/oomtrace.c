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

#define SIGKILL 9
#define SIGTERM 15
#define SI_USER 0
#define SI_KERNEL 0x80
/*
 * The group kill a trigger is in the middle of: the kernel kills the
 * chosen victim, counts oom_group_kill on the group, then kills the rest of
 * the group, all from the trigger's context in one oom_kill_process.
 */
struct group_kill {
	__u64 group;       /* struct mem_cgroup * of the oom.group cgroup */
	__u64 decision_ns; /* the decision hook's timestamp; 0 without one */
	__u64 last_ns;     /* the latest kill of the group */
	__u64 first_seq;   /* seq of the decision's first kill */
	__s64 first_kills; /* oom_group_kill read at the first kill; -1: not kept */
	__u32 records;     /* kills of the decision given a record */
	__u32 _pad;
};

/*
 * One decision kills a whole container: on a kubelet's cgroup v2 node
 * (memory.oom.group=1) a container of 1,300 processes would be 1,300
 * records of 3.5 KiB, more than the ring buffer holds, and every other
 * pod's kill meanwhile would be lost. Past this many records (set by the
 * loader) a decision's kills are only counted, in group_folds.
 */
const volatile __u32 group_records_max = 8;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct group_fold);
} group_folds SEC(".maps");

/* Keyed by bpf_get_current_pid_tgid() of the trigger. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct group_kill);
} group_kills SEC(".maps");

/*
 * The kills of one group follow each other in microseconds, each behind
 * one line to the console, which a serial console makes milliseconds.
 */
#define GROUP_KILL_MAX_GAP_NS (1000ULL * 1000 * 1000)

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

static __always_inline bool counter_at_limit(struct page_counter *pc)
{
	unsigned long max = BPF_CORE_READ(pc, max);
	long usage = BPF_CORE_READ(pc, usage.counter);

	if (max <= LIMIT_MARGIN_PAGES || usage < 0)
		return false;
	return (unsigned long)usage >= max - LIMIT_MARGIN_PAGES;
}

static __always_inline bool on_default_hierarchy(struct cgroup_subsys_state *css)
{
	return BPF_CORE_READ(css, cgroup, root, hierarchy_id) == 0;
}

/*
 * A memcg at its limit: memory, or on cgroup v1 memory and swap together
 * (memsw, which OOMs on its own). On v2 the same union member is the swap
 * counter, which never OOMs: a container at its memory.swap.max is not the
 * domain of a kill at its pod's or the node's limit. second is the offset
 * of the second counter checked, memsw's on v1 and memory's again on v2:
 * chosen once per walk, not branched on at every level (the verifier
 * would follow both branches of each).
 */
static __always_inline bool memcg_at_limit(struct mem_cgroup *memcg, unsigned long second)
{
	return counter_at_limit(&memcg->memory) || counter_at_limit((void *)memcg + second);
}

static __always_inline void fill_domain(struct oom_event *e, struct mem_cgroup *memcg)
{
	e->domain_usage_pages = BPF_CORE_READ(memcg, memory.usage.counter);
	e->domain_limit_pages = BPF_CORE_READ(memcg, memory.max);
	fill_cgroup_path(&e->domain, BPF_CORE_READ(memcg, css.cgroup));
}

/*
 * How far up from the victim's memcg a limit write is looked for: its
 * container, its pod, a QoS class, kubepods (a Kubernetes node's levels,
 * with either driver). Each level costs the verifier on every kernel.
 */
#define VICTIM_WALK_LEVELS 4

/*
 * Without oom_control: the memcg whose limit was hit is the trigger's memcg
 * or one of its ancestors (the charge that failed was the trigger's), and it
 * is the nearest one with (almost) no room left.
 */
static __always_inline struct mem_cgroup *find_domain(struct oom_event *e, struct cgroup_subsys_state *css)
{
	unsigned long second = css && on_default_hierarchy(css) ? bpf_core_field_offset(struct mem_cgroup, memory)
								: bpf_core_field_offset(struct mem_cgroup, memsw);
	int i;

	for (i = 0; i < CGROUP_LEVEL_MAX + 1; i++) {
		struct mem_cgroup *memcg = (void *)css;
		if (!css)
			break;
		if (memcg_at_limit(memcg, second)) {
			e->domain_source = DOMAIN_MEMCG_AT_LIMIT;
			fill_domain(e, memcg);
			return memcg;
		}
		css = BPF_CORE_READ(css, parent);
	}
	/* Not up to the root: a tenant's nesting must not read as a global OOM. */
	e->domain_source = css ? DOMAIN_TOO_DEEP : DOMAIN_NO_MEMCG_AT_LIMIT;
	return NULL;
}

/*
 * How far up from the victim's memcg a limit write is looked for: its
 * container, its pod, a QoS class, kubepods (a Kubernetes node's levels,
 * with either driver). Each level costs the verifier on every kernel.
 */
#define VICTIM_WALK_LEVELS 4

/*
 * When no memcg above the trigger was at its limit and the victim's memcg
 * or one of its nearest ancestors is, on cgroup v2, the kill was forced by
 * a write of memory.max below usage: the kernel runs the OOM killer in the
 * writer's context (a runtime, the kubelet), outside the domain. cgroup v1
 * refuses such a write (EBUSY) instead. Walked after the group kill is
 * marked (up to the root then, as for a global OOM: the kubelet sets
 * oom.group on containers alone), so that the verifier meets its few
 * branches once, not before every path of the group's walk.
 */
static __always_inline struct mem_cgroup *find_forced_domain(struct oom_event *e, struct cgroup_subsys_state *css)
{
	int i;

	if (!css || !on_default_hierarchy(css))
		return NULL;
	for (i = 0; i < VICTIM_WALK_LEVELS; i++) {
		struct mem_cgroup *memcg = (void *)css;
		if (!css || !BPF_CORE_READ(css, parent)) /* the root has no limit */
			break;
		if (counter_at_limit(&memcg->memory)) {
			e->domain_source = DOMAIN_VICTIM_AT_LIMIT;
			e->forced_by = FORCED_BY_LIMIT_WRITE;
			fill_domain(e, memcg);
			return memcg;
		}
		css = BPF_CORE_READ(css, parent);
	}
	return NULL;
}

/* page_counter.high is memory.high since 5.8; before, it is not read. */
static __always_inline void fill_memcg_counters(struct memcg_counters *mc, struct mem_cgroup *memcg)
{
	struct cgroup_subsys_state *css = (void *)memcg;

	if (!memcg)
		return;
	mc->usage = BPF_CORE_READ(memcg, memory.usage.counter);
	mc->max = BPF_CORE_READ(memcg, memory.max);
	mc->valid = 1;
	if (!on_default_hierarchy(css))
		return;
	mc->v2 = 1;
	mc->min = BPF_CORE_READ(memcg, memory.min);
	mc->low = BPF_CORE_READ(memcg, memory.low);
	if (bpf_core_field_exists(memcg->memory.high)) {
		mc->high = BPF_CORE_READ(memcg, memory.high);
		mc->has_high = 1;
	}
	mc->swap_usage = BPF_CORE_READ(memcg, swap.usage.counter);
	mc->swap_max = BPF_CORE_READ(memcg, swap.max);
}

/*
 * mem_cgroup_get_oom_group(): the highest memcg with memory.oom.group set
 * from the victim's up to the OOM domain (the root for a system-wide OOM);
 * none when the victim is not below the domain. Only cgroup v2 has the
 * file, so on v1 no memcg has the flag.
 */
static __always_inline struct mem_cgroup *oom_group_of(struct cgroup_subsys_state *css, struct mem_cgroup *domain)
{
	struct mem_cgroup *group = NULL;
	int i;

	if (!bpf_core_field_exists(((struct mem_cgroup *)0)->oom_group))
		return NULL;
	for (i = 0; i < CGROUP_LEVEL_MAX + 1; i++) {
		struct mem_cgroup *memcg = (void *)css;
		if (!css || !BPF_CORE_READ(css, parent)) /* the root is never a group */
			break;
		if (BPF_CORE_READ(memcg, oom_group))
			group = memcg;
		if (memcg == domain)
			return group;
		css = BPF_CORE_READ(css, parent);
	}
	return domain ? NULL : group;
}

static __always_inline __s64 group_kill_count(struct mem_cgroup *group)
{
	int idx;

	if (!bpf_core_enum_value_exists(enum memcg_memory_event, MEMCG_OOM_GROUP_KILL))
		return -1;
	idx = bpf_core_enum_value(enum memcg_memory_event, MEMCG_OOM_GROUP_KILL);
	if (idx < 0 || idx >= 9)
		return -1;
	return BPF_CORE_READ(group, memory_events[idx].counter);
}

/*
 * Marks a kill that is part of a group kill with its group and with the
 * first kill of its decision. With a decision hook, a decision is one
 * oom_kill_process. Without one, the kills of one decision are the
 * trigger's kills in the same group with no gap over a second, where the
 * ones after the first read oom_group_kill one above what the first read
 * (the kernel counts it between the chosen victim and the rest).
 */
static __always_inline void mark_group(struct oom_event *e, struct mem_cgroup *group, __u64 decision_ns)
{
	__u64 key = bpf_get_current_pid_tgid();
	struct group_kill *g = bpf_map_lookup_elem(&group_kills, &key);
	__s64 kills = group_kill_count(group);
	bool same = false;

	if (g && g->group == (__u64)group && e->ts_boot_ns - g->last_ns < GROUP_KILL_MAX_GAP_NS) {
		if (decision_ns)
			same = g->decision_ns == decision_ns;
		else
			same = kills < 0 || kills == g->first_kills + 1;
	}
	if (same) {
		g->last_ns = e->ts_boot_ns;
		g->records++;
		e->group_first_seq = g->first_seq;
	} else {
		struct group_kill fresh = {
			.group = (__u64)group,
			.decision_ns = decision_ns,
			.last_ns = e->ts_boot_ns,
			.first_seq = e->seq,
			.first_kills = kills,
			.records = 1,
		};
		bpf_map_update_elem(&group_kills, &key, &fresh, BPF_ANY);
		e->group_first_seq = e->seq;
	}
	e->group_id = BPF_CORE_READ(group, css.cgroup, kn, id);
	e->group_level = BPF_CORE_READ(group, css.cgroup, level);
	e->group_kills = kills;
}

/*
 * Whether the kill of task (its memory cgroup victim_css) is one more of
 * the group decision the trigger is in the middle of, past the records it
 * may have: then it is counted in group_folds and gets no record. Only a
 * real kill (the OOM killer's SIGKILL seen) of a task in the group's
 * cgroup, by the same decision, with no gap: anything else takes the
 * usual path.
 */
static __always_inline bool fold_group_kill(struct control *c, struct task_struct *task,
					    struct cgroup_subsys_state *victim_css)
{
	__u64 key = bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_boot_ns();
	struct group_kill *g = bpf_map_lookup_elem(&group_kills, &key);
	struct cgroup_subsys_state *css = victim_css;
	struct group_fold *f;
	struct kill_signal *ks;
	bool in_group = false;
	__u32 victim;
	int i;

	if (!g || !task || !victim_css || g->records < group_records_max || now - g->last_ns >= GROUP_KILL_MAX_GAP_NS)
		return false;
	if (g->decision_ns) {
		struct decision_value *dv = bpf_map_lookup_elem(&decisions, &key);
		if (!dv || dv->d.ts_boot_ns != g->decision_ns)
			return false;
	} else if (g->first_kills >= 0 && group_kill_count((void *)g->group) != g->first_kills + 1) {
		return false;
	}
	for (i = 0; i < CGROUP_LEVEL_MAX + 1; i++) {
		if (!css)
			break;
		if ((__u64)css == g->group) {
			in_group = true;
			break;
		}
		css = BPF_CORE_READ(css, parent);
	}
	if (!in_group)
		return false;
	victim = BPF_CORE_READ(task, pid);
	ks = bpf_map_lookup_elem(&kill_signals, &victim);
	if (!ks || ks->sender != key || now - ks->ts_boot_ns >= KILL_SIGNAL_MAX_AGE_NS)
		return false;
	bpf_map_delete_elem(&kill_signals, &victim);

	g->last_ns = now;
	f = bpf_map_lookup_elem(&group_folds, &g->first_seq);
	if (f) {
		__sync_fetch_and_add(&f->folded, 1);
		f->last_ns = now;
	} else {
		struct group_fold fresh = { .folded = 1, .last_ns = now };
		bpf_map_update_elem(&group_folds, &g->first_seq, &fresh, BPF_NOEXIST);
	}
	__sync_fetch_and_add(&c->folded, 1);
	return true;
}

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
