/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The kernel-to-user ABI of oomtrace. Every struct here is exported to Go by
 * bpf2go (-type), so the Go side is generated from this file's BTF and a
 * layout test keeps both in step. Only append fields; never reorder.
 */
#ifndef OOMTRACE_H
#define OOMTRACE_H

#define TASK_COMM_LEN 16
/* A cgroup path is captured in the kernel, leaf-most levels first kept. */
#define CGROUP_PATH_LEN 1024
#define CGROUP_NAME_LEN 256
#define CGROUP_DEPTH_MAX 16
/* Deeper than this, a path is not captured at all (see fill_cgroup_path). */
#define CGROUP_LEVEL_MAX 64
#define OOM_MESSAGE_LEN 32

enum event_type {
	EVENT_OOM_KILL = 1,
	EVENT_COMMIT_REFUSAL = 2,
	EVENT_TASK_SIGNAL = 3,
};

/* Which program produced the per-victim part of an OOM kill event. */
enum victim_hook {
	VICTIM_HOOK_TP_BTF = 1,     /* tp_btf/mark_victim */
	VICTIM_HOOK_TRACEPOINT = 2, /* tracepoint/oom/mark_victim */
};

/* Which program recorded the OOM decision (struct oom_control). */
enum decision_hook {
	DECISION_HOOK_NONE = 0,
	DECISION_HOOK_FENTRY = 1, /* fentry/oom_kill_process */
	DECISION_HOOK_KPROBE = 2, /* kprobe/oom_kill_process */
};

/* How the OOM domain (the memcg whose limit was hit) was found. */
enum domain_source {
	DOMAIN_UNKNOWN = 0,
	DOMAIN_OOM_CONTROL = 1,       /* oc->memcg from oom_kill_process */
	DOMAIN_MEMCG_AT_LIMIT = 2,    /* nearest ancestor of the trigger's memcg at its limit */
	DOMAIN_NO_MEMCG_AT_LIMIT = 3, /* no ancestor at its limit: not a memcg OOM */
	DOMAIN_TOO_DEEP = 4,          /* none of the CGROUP_LEVEL_MAX + 1 nearest at its limit, the root further up */
	DOMAIN_VICTIM_AT_LIMIT = 5,   /* none above the trigger; the nearest ancestor of the victim's memcg at its limit */
};

/* What made the kernel run the OOM killer, when it was not a charge. */
enum forced_by {
	FORCED_BY_NONE = 0,        /* a charge (or unknown) */
	FORCED_BY_LIMIT_WRITE = 1, /* a memory.max write below usage: the trigger is outside the domain */
};

/*
 * A memory cgroup's counters at the kill, in pages. On cgroup v1 only
 * usage and max mean something (high is the kernel's "max", min and low
 * 0) and swap is not read (memsw is memory and swap together there).
 */
struct memcg_counters {
	__u64 usage;
	__u64 max;
	__u64 high;
	__u64 min;
	__u64 low;
	__u64 swap_usage;
	__u64 swap_max;
	__u8 valid;    /* 0: nothing was read */
	__u8 v2;       /* the memcg is on the default hierarchy: high, min, low and swap are read */
	__u8 has_high; /* the kernel has memory.high in its page counter (5.8+) */
	__u8 _pad[5];
};

/* Which program watches for the OOM killer's SIGKILL. */
enum signal_hook {
	SIGNAL_HOOK_NONE = 0,
	SIGNAL_HOOK_TP_BTF = 1,     /* tp_btf/signal_generate */
	SIGNAL_HOOK_TRACEPOINT = 2, /* tracepoint/signal/signal_generate */
};

/* Units of the victim's rss_* and total_vm. */
enum rss_unit {
	RSS_UNIT_PAGES = 0, /* read from the task's mm: multiply by the page size */
	RSS_UNIT_KIB = 1,   /* read from the classic tracepoint: kB */
};

enum stat_index {
	STAT_OOM_SENT = 0,
	STAT_OOM_LOST = 1,       /* ring buffer reserve failed */
	STAT_SIGNAL_SENT = 2,    /* task signal records */
	STAT_SIGNAL_LOST = 3,    /* task signal ring buffer full */
	STAT_SIGNAL_LIMITED = 4, /* task signals past their target's budget */
	STAT_MAX = 5,
};

struct cgroup_path {
	__u64 id;       /* kernfs node id: the inode of the cgroup directory */
	__u16 depth;    /* levels below the hierarchy root captured */
	__u16 len;      /* bytes used in path, without the NUL */
	__u8 valid;     /* 0: nothing was captured */
	__u8 truncated; /* deeper than CGROUP_DEPTH_MAX or longer than the buffer: the root-most part */
	__u8 _pad[2];
	char path[CGROUP_PATH_LEN];
};

struct task_info {
	__u64 cgroup2_id; /* the task's cgroup on the default (v2) hierarchy */
	__u32 pid;        /* thread id */
	__u32 tgid;       /* process id */
	__u32 uid;
	__s32 oom_score_adj;
	char comm[TASK_COMM_LEN];
};

struct oom_decision {
	__u64 ts_boot_ns;
	__u64 totalpages;
	__s64 chosen_points;
	__u32 chosen_pid;
	__u32 gfp_mask;
	__s32 order;
	__u32 constraint; /* enum oom_constraint */
	__u8 hook;        /* enum decision_hook */
	__u8 _pad[7];
	char message[OOM_MESSAGE_LEN];
};

struct oom_event {
	__u64 ts_boot_ns;
	__u32 type;         /* enum event_type */
	__u8 victim_hook;   /* enum victim_hook */
	__u8 has_decision;  /* decision below is filled */
	__u8 domain_source; /* enum domain_source */
	__u8 rss_unit;      /* enum rss_unit */
	struct task_info victim;
	struct task_info trigger;
	__u64 rss_file;
	__u64 rss_anon;
	__u64 rss_swap;
	__u64 rss_shmem;
	__u64 total_vm; /* in rss_unit */
	__u64 pgtables_bytes;
	__u64 domain_usage_pages;
	__u64 domain_limit_pages;
	__u8 victim_fields;      /* VICTIM_HAS_* below */
	__u8 sigkill_seen;       /* the trigger sent the victim the OOM killer's SIGKILL */
	__u8 victim_pidns_level; /* 0: the host's pid namespace */
	__u8 _pad;
	__u32 victim_ns_tgid;      /* the victim's process id in its own pid namespace */
	__u64 victim_parent_memcg; /* kernfs id of the memory cgroup of the victim's parent process; 0: unknown */
	struct oom_decision decision;
	struct cgroup_path victim_memcg;
	struct cgroup_path trigger_memcg;
	struct cgroup_path domain;
	__u64 seq; /* control.next_seq when recorded: a gap is a record lost */
	/*
	 * memory.oom.group: the cgroup the kernel kills whole for this
	 * decision (the highest ancestor of the victim's memcg with oom.group
	 * set, up to the OOM domain), 0 when the kill is a single one.
	 */
	__u64 group_id;        /* its kernfs id */
	__u64 group_first_seq; /* seq of the decision's first kill: shared by all its kills */
	__s64 group_kills;     /* its memory.events oom_group_kill when recorded; -1: not kept here */
	__u16 group_level;     /* its level below the hierarchy root */
	__u16 _pad2;
	/*
	 * When the victim's process started, as /proc/<pid>/stat's starttime
	 * (clock ticks of 10 ms since boot) modulo 2^32; 0: unknown. What
	 * user space reads of the pid later is the victim's only if it is
	 * the same: a pid reused meanwhile is another process.
	 */
	__u32 victim_start_ticks;
	__u8 forced_by; /* enum forced_by */
	__u8 _pad3[3];
	struct memcg_counters domain_counters; /* the domain's, when there is one */
	struct memcg_counters victim_counters; /* the victim's own memcg (its container), where the hook knows it */
};

/*
 * A SIGTERM or SIGKILL sent to a process by someone other than the OOM
 * killer: how a container runtime stops a container (the kubelet's
 * evictions). Only thread group leaders, once per signal generated.
 */
/* What came with a signal: how it was sent. */
enum siginfo_kind {
	SIGINFO_UNKNOWN = 0, /* the classic tracepoint does not say */
	SIGINFO_NOINFO = 1,  /* SEND_SIG_NOINFO: the kernel for a user, as a cgroup.kill write does */
	SIGINFO_PRIV = 2,    /* SEND_SIG_PRIV: the kernel's own */
	SIGINFO_FULL = 3,    /* a siginfo: kill(2), tgkill(2), pidfd_send_signal(2)... */
};

struct signal_event {
	__u64 ts_boot_ns;
	__u32 type; /* EVENT_TASK_SIGNAL */
	__s32 sig;
	__s32 code;   /* si_code: SI_USER (0) for kill(2), SI_KERNEL (0x80) */
	__s32 result; /* the kernel's TRACE_SIGNAL_*: 0 delivered, 1 ignored, ... */
	__u8 hook;    /* enum signal_hook */
	__u8 info;    /* enum siginfo_kind */
	__u8 _pad[6];
	/*
	 * The target's memory cgroup as the signal is generated, before the
	 * process dies and uncharges: what a user-space OOM killer acted on.
	 * 0 on the classic tracepoint.
	 */
	__u64 target_usage_pages;
	__u64 target_limit_pages;
	/*
	 * Its memory pressure (cgroup v2 with PSI): some and full, the 10 s
	 * and 60 s averages (percent in 11-bit fixed point) and the totals
	 * (ns). target_psi_valid 0: none (cgroup v1, no PSI).
	 */
	__u64 target_psi_avg[2][2];
	__u64 target_psi_total_ns[2];
	__u8 target_psi_valid;
	__u8 _pad3[7];
	struct task_info target;         /* pid and comm only on the classic tracepoint */
	struct task_info sender;         /* the current task */
	struct cgroup_path target_memcg; /* not on the classic tracepoint */
};

/*
 * The kills of a memory.oom.group decision that got no record of their
 * own (past group_records_max), keyed by the decision's group_first_seq.
 * User space reads it once the decision is over.
 */
struct group_fold {
	__u64 folded;  /* kills counted here */
	__u64 last_ns; /* the latest of them */
};

#define VICTIM_HAS_IDENTITY (1 << 0)
#define VICTIM_HAS_RSS (1 << 1)
#define VICTIM_HAS_SWAP (1 << 2)
#define VICTIM_HAS_NS_PID (1 << 3)

/* The syscalls whose failures are watched for commit refusals. */
enum refusal_syscall {
	SYSCALL_MMAP = 1,
	SYSCALL_BRK = 2,
	SYSCALL_MREMAP = 3,
	SYSCALL_MPROTECT = 4,
	SYSCALL_CLONE = 5,
	SYSCALL_CLONE3 = 6,
	SYSCALL_FORK = 7,
	SYSCALL_VFORK = 8,
	SYSCALL_SHMGET = 9,
	SYSCALL_EXECVE = 10,
};

/* Which program told that __vm_enough_memory refused. */
enum exact_hook {
	EXACT_HOOK_NONE = 0,
	EXACT_HOOK_FEXIT = 1,     /* fexit/__vm_enough_memory */
	EXACT_HOOK_KRETPROBE = 2, /* kretprobe/__vm_enough_memory */
};

/*
 * What the kernel can tell about a failure by itself, checked in the order
 * the kernel checks them. Part of the aggregation key, so that refusals of
 * different kinds are never counted together.
 */
enum refusal_class {
	CLASS_OTHER = 0,       /* commit, address space or unknown: user space decides */
	CLASS_MAP_COUNT = 1,   /* mm->map_count at vm.max_map_count */
	CLASS_RLIMIT_AS = 2,   /* total_vm + request > RLIMIT_AS */
	CLASS_RLIMIT_DATA = 3, /* data_vm + request > RLIMIT_DATA */
	CLASS_EXACT = 4,       /* __vm_enough_memory refused (exact hook) */
};

enum refusal_stat_index {
	RSTAT_FAILED = 0, /* every failed call seen, exact */
	RSTAT_SENT = 1,   /* records written to the ring buffer */
	RSTAT_LOST = 2,   /* records the ring buffer had no room for */
	RSTAT_MAX = 3,
};

struct refusal_key {
	__u32 tgid;
	__u16 syscall; /* enum refusal_syscall */
	__u8 class;    /* enum refusal_class */
	__u8 _pad;
};

struct refusal_count {
	__u64 total;           /* refusals for this key since it was created */
	__u64 window_start_ns; /* when the current window's record was sent */
};

struct refusal_event {
	__u64 ts_boot_ns;
	__u32 type;      /* EVENT_COMMIT_REFUSAL */
	__u16 syscall;   /* enum refusal_syscall */
	__u8 class;      /* enum refusal_class */
	__u8 exact_hook; /* enum exact_hook that saw the refusal, 0 if none */
	struct task_info process;
	__u64 total; /* refusal_count.total when this record was sent */
	__s64 ret;   /* the syscall's return value */
	__u64 request_bytes;
	__u64 args[6]; /* the syscall's arguments, from the saved registers */
	__u64 total_vm_pages;
	__u64 data_vm_pages;
	__u64 stack_vm_pages;
	__u64 rlimit_as;   /* bytes, RLIM_INFINITY = all ones */
	__u64 rlimit_data; /* bytes */
	__u64 cap_effective;
	__s64 exact_pages; /* pages __vm_enough_memory was asked for */
	__u32 map_count;
	__u8 exact_cap_sys_admin;
	__u8 accountable; /* the request is charged to commit (private writable, shared anon) */
	__u8 _pad[2];
	struct cgroup_path memcg;
};

#endif /* OOMTRACE_H */
