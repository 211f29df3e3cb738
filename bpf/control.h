/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The control map: one record shared by every generation of oomtrace's
 * programs on this boot, pinned at <pin path>/control. Its layout never
 * changes (fields are only ever appended into reserved), because programs
 * of an older and a newer oomtrace read it at the same time during an
 * upgrade.
 *
 * Only the active generation's programs record anything: a new oomtrace
 * attaches its programs while the old ones still run, then switches
 * active_generation in one store, then detaches the old ones. No moment
 * without a hook, no event recorded twice.
 */
#ifndef OOMTRACE_CONTROL_H
#define OOMTRACE_CONTROL_H

struct control {
	__u64 active_generation;      /* programs of other generations return at once */
	__u64 next_seq;               /* mark_victim records of every generation so far: the next one's seq */
	__u64 exiting;                /* of those, tasks found exiting and not killed (the signal hook saw no SIGKILL) */
	__u64 kernel_kills_at_create; /* /proc/vmstat oom_kill before any hook of this boot attached */
	__u64 created_unix_ns;        /* when the control map was made */
	/*
	 * Kills the kernel counted (oom_kill) again for a task that is an OOM
	 * victim already: a group kill's scan meets the task it chose again
	 * (and, on kernels that scan threads, every thread of every task that
	 * still has the memory), and kills and counts each; a further mark is
	 * not a further kill of the process.
	 */
	__u64 recounted;
	/*
	 * Kills of a memory.oom.group decision past its group_records_max
	 * records: counted in group_folds under the decision, no record.
	 */
	__u64 folded;
	__u64 reserved[9];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	/* User space sets active_generation by a store into the mapped page:
	 * writing the whole value through a syscall could undo the
	 * programs' concurrent counts. */
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct control);
} control SEC(".maps");

/* Set by the loader: this load's generation. */
const volatile __u64 generation = 0;

/* The control record if this generation is the active one, else NULL. */
static __always_inline struct control *active_control(void)
{
	__u32 zero = 0;
	struct control *c = bpf_map_lookup_elem(&control, &zero);

	if (!c || c->active_generation != generation)
		return NULL;
	return c;
}

#endif
