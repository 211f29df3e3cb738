/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The OOM domain without a decision hook: the walk up the memory cgroups
 * to the one at its limit, and a memcg's counters at the kill.
 *
 * Part of oomtrace.c, which includes it once, where its definitions
 * are first needed; not a header of its own.
 */
#ifndef OOMTRACE_MEMCG_H
#define OOMTRACE_MEMCG_H

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

#endif /* OOMTRACE_MEMCG_H */
