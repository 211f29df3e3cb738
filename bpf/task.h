/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Reading a task's identity and its memory cgroup, shared by all programs.
 * Include after kernel_types.h, the libbpf headers and oomtrace.h.
 */
#ifndef OOMTRACE_TASK_H
#define OOMTRACE_TASK_H

static __always_inline struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return BPF_CORE_READ(kn, __parent);
	struct kernfs_node___old *old = (void *)kn;
	return BPF_CORE_READ(old, parent);
}

/*
 * Write the path of cg relative to its hierarchy root into out, root first.
 * Names are read with bpf_probe_read_kernel_str: kernfs names live outside
 * the kernfs_node.
 *
 * The root-most CGROUP_DEPTH_MAX levels are kept, and the path is cut at
 * its leaf end when longer than the buffer: what names the pod and the
 * container sits near the root (kubepods/<qos>/pod<uid>/<container>), and
 * below a container its tenant may create cgroups (writable cgroups,
 * sysbox) named as it likes: kept leaf-most, sixteen of them could read
 * kubepods/.../pod<another pod's uid>/<its container>. Since 6.1 the
 * root-most levels are read from cgroup->ancestors, at any depth; before,
 * they are walked up to, and a cgroup deeper than CGROUP_LEVEL_MAX is
 * captured as an empty path, truncated: nothing is better than a guess.
 *
 * A global function: the verifier checks it once, on its own, instead of
 * once per call (its bounded loops are most of a program's verification,
 * and start-up waits for it). Hence cg as a number, read through
 * bpf_probe_read_kernel like every pointer here, and an int result.
 * Before 5.12 the verifier takes no pointer argument of a global function
 * ("Arg#0 type PTR ... is not supported yet"): the objects built with
 * OOMTRACE_BEFORE_5_12 (bpf2go's *Inline, loaded there) inline it.
 */
#ifdef OOMTRACE_BEFORE_5_12
static __always_inline int fill_cgroup_path_global(struct cgroup_path *out, __u64 cg_addr)
#else
__noinline int fill_cgroup_path_global(struct cgroup_path *out, __u64 cg_addr)
#endif
{
	struct cgroup *cg = (struct cgroup *)cg_addr;
	struct kernfs_node *kns[CGROUP_DEPTH_MAX] = {};
	struct kernfs_node *kn;
	__u64 n = 0, off = 0, skip = 0;
	int i, level;

	if (!out || !cg)
		return 0;
	kn = BPF_CORE_READ(cg, kn);
	if (!kn)
		return 0;
	out->id = BPF_CORE_READ(kn, id);
	out->valid = 1;

	level = BPF_CORE_READ(cg, level);
	if (level > CGROUP_DEPTH_MAX) {
		skip = level - CGROUP_DEPTH_MAX;
		out->truncated = 1;
	}
	if (skip && bpf_core_field_exists(cg->ancestors)) {
		/* Since 6.1 the ancestor at any level is one read away, however deep. */
		struct cgroup *anc = NULL;
		__u64 off = bpf_core_field_offset(struct cgroup, ancestors);

		bpf_probe_read_kernel(&anc, sizeof(anc), (void *)cg + off + CGROUP_DEPTH_MAX * sizeof(anc));
		kn = anc ? BPF_CORE_READ(anc, kn) : NULL;
		if (!kn)
			return 0;
		skip = 0;
	} else if (level > CGROUP_LEVEL_MAX) {
		/* Walking up that far is more than the verifier takes. */
		return 0;
	}
	/* Up past the leaf-most levels that do not fit. */
	for (i = 0; i < CGROUP_LEVEL_MAX - CGROUP_DEPTH_MAX; i++) {
		if ((__u64)i >= skip)
			break;
		kn = kn_parent(kn);
		if (!kn)
			return 0;
	}
	/* kns[0] the deepest level kept, kns[n-1] the one below the root. */
	for (i = 0; i < CGROUP_DEPTH_MAX; i++) {
		struct kernfs_node *parent = kn_parent(kn);
		if (!parent)
			break;
		kns[i] = kn;
		n++;
		kn = parent;
	}
	out->depth = n;

	for (i = CGROUP_DEPTH_MAX - 1; i >= 0; i--) {
		const char *name;
		long r;

		if ((__u64)i >= n)
			continue;
		if (off > CGROUP_PATH_LEN - CGROUP_NAME_LEN - 1) {
			out->truncated = 1;
			break;
		}
		out->path[off] = '/';
		off++;
		name = BPF_CORE_READ(kns[i], name);
		r = bpf_probe_read_kernel_str(&out->path[off], CGROUP_NAME_LEN, name);
		if (r > 1)
			off += r - 1;
	}
	if (off == 0) {
		out->path[0] = '/';
		off = 1;
	}
	out->len = off;
	return 0;
}

static __always_inline void fill_cgroup_path(struct cgroup_path *out, struct cgroup *cg)
{
	fill_cgroup_path_global(out, (__u64)cg);
}

static __always_inline struct cgroup_subsys_state *task_memcg_css(struct task_struct *task)
{
	int id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	struct cgroup_subsys_state *css = NULL;

	if (!cset || id < 0 || id >= 16)
		return NULL;
	bpf_core_read(&css, sizeof(css), &cset->subsys[id]);
	return css;
}

static __always_inline void fill_task_info(struct task_info *ti, struct task_struct *task)
{
	ti->pid = BPF_CORE_READ(task, pid);
	ti->tgid = BPF_CORE_READ(task, tgid);
	ti->uid = BPF_CORE_READ(task, real_cred, uid.val);
	ti->oom_score_adj = BPF_CORE_READ(task, signal, oom_score_adj);
	bpf_core_read_str(ti->comm, sizeof(ti->comm), &task->comm);
	ti->cgroup2_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
}

/*
 * The task's process id as its own pid namespace sees it (1: the init of
 * a container's namespace) and that namespace's depth (0: the host's).
 * The process id is the thread group leader's pid: struct pid ends in one
 * struct upid per level, the innermost last.
 */
static __always_inline void task_ns_tgid(struct task_struct *task, __u32 *ns_tgid, __u8 *level)
{
	struct pid *pid;
	unsigned int lvl;
	struct upid up = {};

	if (!bpf_core_field_exists(task->thread_pid)) /* before 4.19 */
		return;
	pid = BPF_CORE_READ(task, group_leader, thread_pid);
	if (!pid)
		return;
	lvl = BPF_CORE_READ(pid, level);
	if (bpf_core_read(&up, sizeof(up), &pid->numbers[lvl]))
		return;
	*ns_tgid = up.nr;
	*level = lvl;
}

/*
 * When task's process started, in /proc/<pid>/stat's unit (USER_HZ, 100
 * on every architecture oomtrace builds for) modulo 2^32. A process that
 * comes out as 0 reads as unknown: it is not checked, as before.
 */
static __always_inline __u32 process_start_ticks(struct task_struct *task)
{
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	__u64 ns;

	if (!leader)
		return 0;
	if (bpf_core_field_exists(leader->start_boottime)) {
		ns = BPF_CORE_READ(leader, start_boottime);
	} else {
		struct task_struct___old *old = (void *)leader;
		ns = BPF_CORE_READ(old, real_start_time);
	}
	return (__u32)(ns / 10000000ULL);
}

/* The kernfs id of a task's memory cgroup; 0 when it has none. */
static __always_inline __u64 task_memcg_id(struct task_struct *task)
{
	struct cgroup_subsys_state *css = task_memcg_css(task);

	if (!css)
		return 0;
	return BPF_CORE_READ(css, cgroup, kn, id);
}

#endif /* OOMTRACE_TASK_H */
