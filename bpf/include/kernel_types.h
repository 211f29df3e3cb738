/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Minimal kernel type declarations for CO-RE.
 *
 * Only the fields oomtrace reads are declared. preserve_access_index makes
 * clang record every field access as a BTF relocation, and the loader
 * rewrites the offsets against the running kernel's BTF. Field order and
 * array sizes here therefore do not have to match any particular kernel;
 * names and types do. Flavours (struct foo___old) describe layouts of older
 * kernels and are chosen at load time with bpf_core_field_exists() or
 * bpf_core_type_exists().
 */
#ifndef OOMTRACE_KERNEL_TYPES_H
#define OOMTRACE_KERNEL_TYPES_H

/* Tell bpf_tracing.h that pt_regs uses the kernel's field names (di, si, ...). */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s64 s64;
typedef int pid_t;
typedef unsigned int uid_t;
typedef unsigned int gfp_t;
typedef _Bool bool;
#define true 1
#define false 0

/* From include/uapi/linux/bpf.h: only what the programs use. */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PROG_ARRAY = 3,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_F_NO_PREALLOC = (1U << 0),
	BPF_F_MMAPABLE = (1U << 10),
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
	s64 counter;
} atomic64_t;
typedef atomic64_t atomic_long_t;

typedef struct {
	uid_t val;
} kuid_t;

struct kernfs_node {
	struct kernfs_node *__parent; /* 6.15+ */
	const char *name;
	u64 id;
};

/* Before 6.15 the parent pointer was called parent. */
struct kernfs_node___old {
	struct kernfs_node *parent;
};

struct cgroup_root {
	int hierarchy_id; /* 0: the default (cgroup v2) hierarchy */
};

/*
 * Pressure stall information of a cgroup (CONFIG_PSI). Both arrays are
 * two-dimensional in the kernel and read by offset: avg[state][3] (10 s,
 * 60 s, 300 s; percent in 11-bit fixed point), total[aggregator][state]
 * (ns; the averages' aggregator first).
 */
struct psi_group {
	unsigned long avg[1];
	u64 total[1];
};

/* The states oomtrace reads, enum psi_states since 4.20. */
#define PSI_MEM_SOME 2
#define PSI_MEM_FULL 3
#define PSI_AVG_PERIODS 3

struct cgroup {
	struct kernfs_node *kn;
	int level; /* the root of a hierarchy is 0 */
	struct cgroup_root *root;
	struct psi_group *psi; /* 5.17+: allocated apart */
	/* Since 6.1: every ancestor by level, ancestors[level] the cgroup itself. */
	struct cgroup *ancestors[];
};

/* Before 5.17 the psi group is part of the cgroup. */
struct cgroup___psi_embedded {
	struct psi_group psi;
};

struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys_state *parent;
};

enum cgroup_subsys_id {
	memory_cgrp_id = 4,
};

struct css_set {
	struct cgroup_subsys_state *subsys[16];
	struct cgroup *dfl_cgrp;
};

struct page_counter {
	atomic_long_t usage;
	unsigned long min;  /* memory.min (cgroup v2) */
	unsigned long low;  /* memory.low (cgroup v2) */
	unsigned long high; /* memory.high (cgroup v2, 5.8+) */
	unsigned long max;
};

/*
 * On cgroup v1 the memsw counter limits memory+swap and can trigger an OOM of
 * its own; on v2 the same union member is the swap counter.
 */
struct mem_cgroup {
	struct cgroup_subsys_state css;
	struct page_counter memory;
	struct page_counter memsw;
	struct page_counter swap;       /* the same union member as memsw, by its v2 name */
	bool oom_group;                 /* memory.oom.group (cgroup v2, 4.19+) */
	atomic_long_t memory_events[9]; /* indexed by enum memcg_memory_event */
};

/* MEMCG_OOM_GROUP_KILL since 5.17: read it only where it exists. */
enum memcg_memory_event {
	MEMCG_OOM_GROUP_KILL = 5,
};

struct percpu_counter {
	s64 count;
};

/* 6.2+: mm->rss_stat is an array of percpu_counter. */
struct mm_struct {
	int map_count;
	unsigned long total_vm;
	unsigned long data_vm;
	unsigned long stack_vm;
	unsigned long start_brk;
	unsigned long brk;
	atomic_long_t pgtables_bytes;
	struct percpu_counter rss_stat[4];
};

/* Before 6.2: struct mm_rss_stat with atomic counters. */
struct mm_rss_stat {
	atomic_long_t count[4];
};

struct mm_struct___old {
	struct mm_rss_stat rss_stat;
};

struct rlimit {
	unsigned long rlim_cur;
	unsigned long rlim_max;
};

struct signal_struct {
	short oom_score_adj;
	struct rlimit rlim[16];
	struct mm_struct *oom_mm; /* set once the process was an OOM victim */
};

/* 6.3+: a u64 bit mask; before, u32 cap[2]: the same 8 bytes either way. */
typedef struct {
	u64 val;
} kernel_cap_t;

struct cred {
	kuid_t uid;
	kernel_cap_t cap_effective;
};

struct pid_namespace;

struct upid {
	int nr;
	struct pid_namespace *ns;
};

/* numbers has level + 1 entries (a flexible array in the kernel). */
struct pid {
	unsigned int level;
	struct upid numbers[1];
};

struct task_struct {
	unsigned int flags; /* PF_* */
	pid_t pid;
	pid_t tgid;
	char comm[16];
	struct mm_struct *mm;
	struct signal_struct *signal;
	const struct cred *real_cred;
	struct css_set *cgroups;
	struct task_struct *group_leader;
	struct task_struct *real_parent;
	struct pid *thread_pid;
	void *stack;        /* the kernel stack: its top holds the syscall's pt_regs */
	u64 start_boottime; /* since 5.5; CLOCK_BOOTTIME ns */
};

/* Before 5.5 the boot-based start time was called real_start_time. */
struct task_struct___old {
	u64 real_start_time;
};

enum oom_constraint {
	CONSTRAINT_NONE,
	CONSTRAINT_CPUSET,
	CONSTRAINT_MEMORY_POLICY,
	CONSTRAINT_MEMCG,
};

struct oom_control {
	struct mem_cgroup *memcg;
	gfp_t gfp_mask;
	int order;
	unsigned long totalpages;
	struct task_struct *chosen;
	long chosen_points;
	enum oom_constraint constraint;
};

/* /sys/kernel/tracing/events/oom/mark_victim/format. Only pid before 6.9. */
struct trace_entry {
	unsigned short type;
};

struct trace_event_raw_mark_victim {
	struct trace_entry ent;
	int pid;
	u32 __data_loc_comm;
	unsigned long total_vm;
	unsigned long anon_rss;
	unsigned long file_rss;
	unsigned long shmem_rss;
	uid_t uid;
	unsigned long pgtables;
	short oom_score_adj;
};

/* /sys/kernel/tracing/events/signal/signal_generate/format */
struct trace_event_raw_signal_generate {
	struct trace_entry ent;
	int sig;
	int code;
	char comm[16];
	pid_t pid;
	int group;
	int result;
};

/* In the kernel si_code sits in an anonymous struct; CO-RE finds it. */
struct kernel_siginfo {
	int si_signo;
	int si_errno;
	int si_code;
};

/* /sys/kernel/tracing/events/syscalls/sys_exit_mmap/format (and the others) */
struct trace_event_raw_sys_exit {
	struct trace_entry ent;
	long id;
	long ret;
};

#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long cx;
	unsigned long r8;
	unsigned long r9;
	unsigned long r10;
	unsigned long sp;
	unsigned long bp;
	unsigned long ax;
	unsigned long ip;
};
#elif defined(__TARGET_ARCH_arm64)
struct user_pt_regs {
	u64 regs[31];
	u64 sp;
	u64 pc;
	u64 pstate;
};
struct pt_regs {
	u64 regs[31];
	u64 sp;
	u64 pc;
	u64 pstate;
	u64 orig_x0;
	u64 syscallno;
};
#endif

#pragma clang attribute pop

#endif /* OOMTRACE_KERNEL_TYPES_H */
