/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * memory.oom.group kills: the group a victim belongs to, the decision
 * its kills share, and the kills past a decision's first records, only
 * counted.
 *
 * Part of oomtrace.c, which includes it once, where its definitions
 * are first needed; not a header of its own.
 */
#ifndef OOMTRACE_GROUP_H
#define OOMTRACE_GROUP_H

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

#endif /* OOMTRACE_GROUP_H */
