// SPDX-License-Identifier: Apache-2.0

package event

import (
	"math"
	"time"
)

// Type names the kind of an event in its "type" field.
const (
	TypeOOMKill        = "oom_kill"
	TypeCommitRefusal  = "commit_refusal"
	TypeMemoryPressure = "memory_pressure"
	TypeEviction       = "eviction"
	TypeNodeCondition  = "node_condition"
	TypeTaskSignal     = "task_signal"
	TypeUserspaceKill  = "userspace_kill"
	// TypeCgroupPressure: a memory cgroup under pressure before any kill
	// (not the kubelet's node signals, which are TypeMemoryPressure).
	TypeCgroupPressure = "cgroup_memory_pressure"
)

// OOM scopes: what constrained the allocation that failed.
const (
	ScopeMemcg     = "memcg"     // a memory cgroup hit its limit
	ScopeGlobal    = "global"    // the whole system ran out of memory
	ScopeCpuset    = "cpuset"    // the allowed NUMA nodes of a cpuset ran out
	ScopeMempolicy = "mempolicy" // the nodes of a memory policy ran out
	ScopeUnknown   = "unknown"
)

// How the scope and domain of an OOM were determined.
const (
	// SourceOOMControl: read from the kernel's struct oom_control at
	// oom_kill_process (fentry or kprobe): exact.
	SourceOOMControl = "oom_control"
	// SourceMemcgAtLimit: the nearest memory cgroup at or above the
	// trigger's whose usage was within 2 MiB of its limit at the kill.
	SourceMemcgAtLimit = "memcg_at_limit"
	// SourceNoMemcgAtLimit: no memory cgroup above the trigger was at its
	// limit, so the OOM was not a memcg OOM (global, or cpuset/mempolicy).
	SourceNoMemcgAtLimit = "no_memcg_at_limit"
	// SourceMemcgTooDeep: none of the 65 memory cgroups nearest the
	// trigger was at its limit and the root is further up (a tenant's
	// nesting): the domain is not known, and the scope is unknown.
	SourceMemcgTooDeep = "memcg_too_deep"
	// SourceVictimMemcgAtLimit: no memory cgroup above the trigger was at
	// its limit, but the nearest one at or above the victim's was, on
	// cgroup v2: a write of memory.max below usage forced the kill from
	// outside the domain (OOM.ForcedBy).
	SourceVictimMemcgAtLimit = "victim_memcg_at_limit"
)

// What made the kernel run the OOM killer, when it was not a charge that
// failed (OOM.ForcedBy).
const (
	// ForcedByLimitWrite: a write of memory.max below the cgroup's usage
	// (an in-place resize, a runtime's update, a hand's echo). The kernel
	// reclaims, then OOM-kills in the writer's context: the trigger is the
	// writer (runc, crun, the kubelet), outside the domain.
	ForcedByLimitWrite = "limit_write"
)

// Where the limit of a kill's OOM domain came from (Domain.LimitSource).
const (
	LimitFromContainer  = "container"   // the container's own limit (spec.containers[].resources)
	LimitFromContainers = "containers"  // the pod cgroup's limit: the sum of its containers' limits
	LimitFromPodSpec    = "pod_spec"    // the pod-level limit (spec.resources.limits.memory)
	LimitFromNode       = "allocatable" // kubepods or a QoS class cgroup: the node's allocatable
	LimitFromSystem     = "node"        // the machine's memory: no cgroup limit
)

// Where a memory cgroup's identity came from.
const (
	CgroupFromKernel = "kernel" // captured by the BPF program at the event
	CgroupFromProcfs = "procfs" // read from /proc/<pid>/cgroup afterwards
	// CgroupFromCgroupfs: found by walking the cgroup filesystem (the
	// memory pressure watcher's cgroups).
	CgroupFromCgroupfs = "cgroupfs"
)

// OOMKill is one task killed by the kernel's OOM killer.
type OOMKill struct {
	Type string `json:"type"`
	Time Time   `json:"time"`
	Node string `json:"node"`
	// Seq numbers the kills the hooks recorded on this node, from 0 when
	// oomtrace first started after boot: pinned programs keep counting
	// across restarts and upgrades. A gap is a kill recorded but lost
	// (ring buffer full); the same seq twice is a line written again by a
	// process that took over from one killed just after writing it.
	Seq uint64 `json:"seq"`
	// ID is the kill's id on every node and across reboots: the kernel's
	// boot id and Seq ("<boot_id>-<seq>"); a line written twice has the
	// same id. Absent when the boot id could not be read.
	ID      string  `json:"id,omitempty"`
	Hook    string  `json:"hook"`
	Victim  Victim  `json:"victim"`
	Trigger Process `json:"trigger"`
	OOM     OOM     `json:"oom"`
	// Cause classifies the death (Cause* below).
	Cause string `json:"cause,omitempty"`
	// NodeMemory is the node's memory signals when the event was handled;
	// absent when they could not be read.
	NodeMemory *NodeMemory `json:"node_memory,omitempty"`
	// Eviction is the kubelet's eviction of the victim's pod shortly before
	// this kill, if there was one.
	Eviction *EvictionRef `json:"eviction,omitempty"`
	// ContainerSurvived says whether the victim's container still had a
	// process a moment after the kill (--container.check-delay): false
	// when the kill ended the container (its init died, or the kernel
	// killed the whole cgroup), true when the container runs on without
	// the victim. Absent outside containers, or when it was not checked.
	ContainerSurvived *bool `json:"container_survived,omitempty"`
	// PostMortem is what the OOM domain held, read right after the kill;
	// absent when turned off or unreadable.
	PostMortem *PostMortem `json:"postmortem,omitempty"`
	// Pressure is the episode of memory pressure the victim's cgroup (or
	// the domain's) was in before the kill, as cgroup_memory_pressure
	// lines reported it: since when, and what it suffered. Absent when
	// there was none, or the watcher is off.
	Pressure *PressureEpisode `json:"pressure,omitempty"`
	// Truncated says the JSON line was cut to fit 16 KiB: labels,
	// messages, lists and paths may be shortened (each says so where it
	// can: labels_truncated, path_truncated).
	Truncated bool `json:"truncated,omitempty"`
}

// PostMortem is the OOM domain's memory and its largest tasks, read when
// the kill is handled (milliseconds after it): the victim's own memory
// may be freed by then, and the victim gone from the tasks (victim.rss_bytes
// is what it held when it was chosen).
type PostMortem struct {
	Time   Time   `json:"time"`   // when it was read
	Cgroup string `json:"cgroup"` // the domain's cgroup path; "/" for a system-wide OOM
	// Memory is the domain's memory by kind; null when not read.
	Memory *MemoryBreakdown `json:"memory_bytes"`
	// TopTasks are the domain's processes with the most resident memory
	// (and swap), most first; at most --postmortem.top-tasks of them. The
	// tasks the kill's decision is killing (the victim; with
	// memory.oom.group, the group's) are left out.
	TopTasks []TaskMemory `json:"top_tasks"`
	// TasksSource says where TopTasks were read: "procfs".
	TasksSource string `json:"tasks_source,omitempty"`
	// Tasks is how many processes the domain had when read, besides those
	// the kill's decision is killing. The kills of one memory.oom.group
	// decision share one post-mortem.
	Tasks int `json:"tasks"`
	// TasksTruncated says the read stopped at its bound (4,096 processes
	// or 250 ms, as a system-wide OOM's of a busy host can): Tasks counts
	// and TopTasks are of the processes read.
	TasksTruncated bool `json:"tasks_truncated,omitempty"`
}

// MemoryBreakdown is a memory cgroup's memory by kind, in bytes, from its
// memory.stat (v1: the hierarchical total_ counters).
type MemoryBreakdown struct {
	Anon  uint64 `json:"anon"`  // anonymous memory: heaps, stacks
	File  uint64 `json:"file"`  // page cache, shmem included
	Shmem uint64 `json:"shmem"` // tmpfs and shared anonymous memory (part of file)
	// Kernel is kernel memory charged to the cgroup (slab, stacks, page
	// tables, sockets...); null where the kernel does not say.
	Kernel *uint64 `json:"kernel"`
	Slab   *uint64 `json:"slab"`   // null on cgroup v1
	Sock   *uint64 `json:"sock"`   // network buffers
	Source string  `json:"source"` // the files read
}

// TaskMemory is one process of an OOM domain and what it held.
type TaskMemory struct {
	PID         uint32 `json:"pid"` // process id
	Comm        string `json:"comm"`
	RSS         RSS    `json:"rss_bytes"`
	OOMScoreAdj int32  `json:"oom_score_adj"`
}

// Causes of a container's death, for OOMKill.Cause and Eviction.Cause.
const (
	CauseOOMContainer      = "kernel_oom_container"       // its container's limit
	CauseOOMPod            = "kernel_oom_pod"             // its pod's limit
	CauseOOMAllocatable    = "kernel_oom_allocatable"     // kubepods: the node's allocatable
	CauseOOMSystem         = "kernel_oom_system"          // the whole machine, no eviction threshold met
	CauseOOMDuringPressure = "kernel_oom_during_pressure" // node-level OOM while a kubelet eviction threshold was met: the kernel acted before the kubelet's next pass
	CauseOOMOther          = "kernel_oom_other"           // another cgroup's limit, a cpuset or a memory policy
	CauseKubeletEviction   = "kubelet_eviction"           // the kubelet evicted the pod
)

// EvictionRef points from a kernel OOM kill to the kubelet's eviction of
// the same pod.
type EvictionRef struct {
	Time          Time    `json:"time"`
	SecondsBefore float64 `json:"seconds_before"` // how long before the kill
	Message       string  `json:"message"`
}

// Eviction is the kubelet evicting a pod from this node.
type Eviction struct {
	Type string `json:"type"`
	Time Time   `json:"time"` // when the kubelet evicted it
	Node string `json:"node"`
	Pod  Pod    `json:"pod"`
	// Priority is the pod's priority; null when the pod was not known.
	Priority *int32 `json:"priority"`
	// TerminationGracePeriodSeconds is the pod's own; null when the pod
	// was not known. The kubelet's stop began up to this long (at least
	// 2 s: the kubelet's minimum) before Time, which is when its status
	// said so (a hard eviction shortens it to that minimum).
	TerminationGracePeriodSeconds *int64 `json:"termination_grace_period_seconds"`
	Cause                         string `json:"cause"` // kubelet_eviction
	// Source is what told oomtrace: pod_status, the status the kubelet
	// wrote on the pod (never an Event: tenants can write those).
	Source string `json:"source"`
	// Message is the kubelet's message, as written.
	Message string `json:"message"`
	// Parsed from Message: the starved resource, the threshold and what
	// was available, and each offending container.
	StarvedResource     string               `json:"starved_resource"`
	ThresholdBytes      *int64               `json:"threshold_bytes"`
	AvailableBytes      *int64               `json:"available_bytes"`
	OffendingContainers []OffendingContainer `json:"offending_containers"`
	// OffendingPod is the pod clause of the message, which the kubelet
	// writes (beside the containers') for a pod with a pod-level memory
	// request (PodLevelResources): the pod's usage against that request.
	// Omitted when the message has none.
	OffendingPod *OffendingPod `json:"offending_pod,omitempty"`
	// NodeMemory is what oomtrace sampled at the eviction's time.
	NodeMemory *NodeMemory `json:"node_memory,omitempty"`
	// KernelOOMKills are the kernel's OOM kills in this pod shortly before
	// the eviction.
	KernelOOMKills []KillRef `json:"kernel_oom_kills"`
	// ContainerExits are the pod's containers as the API last saw them:
	// how each one ended (the kubelet stops evicted containers with
	// SIGTERM, then SIGKILL: 143 or 137).
	ContainerExits []ContainerExit `json:"container_exits"`
	// KernelSignals are the SIGTERMs and SIGKILLs the kernel saw sent to
	// the pod's processes around the eviction: the kubelet's stop, as it
	// happened.
	KernelSignals []SignalRef `json:"kernel_signals"`
	// Truncated says the JSON line was cut to fit 16 KiB (see OOMKill).
	Truncated bool `json:"truncated,omitempty"`
}

// OffendingContainer is one container the kubelet named in its eviction
// message.
type OffendingContainer struct {
	Name         string `json:"name"`
	UsageBytes   *int64 `json:"usage_bytes"`
	RequestBytes *int64 `json:"request_bytes"`
}

// OffendingPod is the pod the kubelet named in its eviction message, with
// its pod-level request.
type OffendingPod struct {
	Name         string `json:"name"`
	UsageBytes   *int64 `json:"usage_bytes"`
	RequestBytes *int64 `json:"request_bytes"`
}

// KillRef points from an eviction to a kernel OOM kill in the same pod.
type KillRef struct {
	Time          Time    `json:"time"`
	SecondsBefore float64 `json:"seconds_before"` // how long before the eviction
	PID           uint32  `json:"pid"`
	Comm          string  `json:"comm"`
	Container     string  `json:"container"`
	Cause         string  `json:"cause"`
}

// ContainerExit is how a container of an evicted pod ended.
type ContainerExit struct {
	Name string `json:"name"`
	// ContainerID is the runtime's id of the container that ended (or
	// runs), without the runtime's scheme; empty when the API has none.
	ContainerID string `json:"container_id,omitempty"`
	ExitCode    *int32 `json:"exit_code"`        // null while it still runs
	Signal      string `json:"signal,omitempty"` // SIGKILL for 137, SIGTERM for 143
	Reason      string `json:"reason,omitempty"` // OOMKilled, Error, …
	// Init says it is an init container (a sidecar among them: an init
	// container that keeps running); omitted for a regular one.
	Init bool `json:"init,omitempty"`
}

// TaskSignal is a SIGTERM or SIGKILL one process sent another (not the
// OOM killer's): how a container runtime stops a container. oomtrace uses
// it to show how an evicted pod's containers were stopped.
type TaskSignal struct {
	Type   string  `json:"type"`
	Time   Time    `json:"time"`
	Node   string  `json:"node"`
	Hook   string  `json:"hook"`
	Signal string  `json:"signal"` // SIGTERM or SIGKILL
	Code   int32   `json:"code"`   // si_code: 0 from kill(2), 128 from the kernel
	Result int32   `json:"result"` // 0 delivered; 1 ignored, 2 already pending, 3 queue overflow, 4 lost
	Target Process `json:"target"` // on the classic tracepoint: pid and comm only
	Sender Process `json:"sender"`
	// Info says how it was sent: SiginfoFull (kill(2) and its kin: a
	// siginfo), SiginfoNone (the kernel on a user's behalf, as a write
	// to cgroup.kill), SiginfoKernel; empty on the classic tracepoint.
	Info string `json:"info,omitempty"`
	// TargetMemory is the target's memory cgroup's usage and limit as
	// the kernel generated the signal (before the process died and
	// uncharged); null on the classic tracepoint.
	TargetMemory *CgroupMemory `json:"target_memory,omitempty"`
}

// How a signal was sent (TaskSignal.Info).
const (
	SiginfoFull   = "siginfo"
	SiginfoNone   = "noinfo"
	SiginfoKernel = "kernel"
)

// How a user-space killer ended processes (UserspaceKill.Method).
const (
	MethodKill       = "kill"        // kill(2) and its kin, a process at a time
	MethodCgroupKill = "cgroup.kill" // a write to the cgroup's cgroup.kill: every process at once
)

// MaxUserspaceVictims bounds the victims a UserspaceKill lists; its
// VictimCount counts them all.
const MaxUserspaceVictims = 16

// UserspaceKill is SIGKILL from user space (or SIGTERM from a known
// user-space OOM killer) that no kernel OOM decision and no container
// runtime's stop explains, to the processes of one
// cgroup by one killer within a moment: a user-space OOM killer's
// (systemd-oomd, earlyoom, oomd, nohang, Talos's), or anyone's kill -9.
// The kernel's oom_kill count does not move for it and the kubelet says
// nothing of it (the container ends 137 Error, not OOMKilled).
type UserspaceKill struct {
	Type   string `json:"type"`
	Time   Time   `json:"time"` // the first SIGKILL
	Node   string `json:"node"`
	Method string `json:"method"` // MethodKill or MethodCgroupKill
	// Signal is SIGKILL, or SIGTERM from a known user-space OOM killer
	// (earlyoom and nohang send SIGTERM first).
	Signal string  `json:"signal"`
	Killer Process `json:"killer"`
	// KnownKiller names a user-space OOM killer recognised by its name or
	// systemd unit: systemd-oomd, earlyoom, oomd, nohang; empty for
	// another process.
	KnownKiller string `json:"known_killer,omitempty"`
	// Victims are the first MaxUserspaceVictims processes killed, each
	// with its container and pod; VictimCount counts every one.
	Victims     []Process `json:"victims"`
	VictimCount int       `json:"victim_count"`
	// Memory is the victims' memory cgroup as the first SIGKILL was
	// seen, what a killer that acts on pressure or usage acted on; null
	// when it could not be read (gone already).
	Memory *CgroupMemory `json:"memory,omitempty"`
	// Truncated says the JSON line was cut to fit 16 KiB (see OOMKill).
	Truncated bool `json:"truncated,omitempty"`
}

// CgroupMemory is a memory cgroup's usage, limit and pressure at a moment.
type CgroupMemory struct {
	UsageBytes uint64  `json:"usage_bytes"`
	LimitBytes *uint64 `json:"limit_bytes"` // null: no limit
	// SwapBytes is the cgroup's swap use (cgroup v2 memory.swap.current);
	// null where the kernel has no swap accounting.
	SwapBytes *uint64 `json:"swap_bytes,omitempty"`
	// Pressure is the cgroup's memory PSI (memory.pressure, cgroup v2 with
	// PSI enabled); null otherwise.
	Pressure *Pressure `json:"pressure,omitempty"`
}

// Pressure is a PSI file: the share of time (percent, over the last 10 and
// 60 seconds) some or all of the tasks stalled, and the total stall.
type Pressure struct {
	SomeAvg10   float64 `json:"some_avg10"`
	SomeAvg60   float64 `json:"some_avg60"`
	SomeTotalUS uint64  `json:"some_total_us"`
	FullAvg10   float64 `json:"full_avg10"`
	FullAvg60   float64 `json:"full_avg60"`
	FullTotalUS uint64  `json:"full_total_us"`
}

// The states of a cgroup_memory_pressure line.
const (
	PressureStarted = "started" // the episode began
	PressureOngoing = "ongoing" // it goes on (a reminder, every few minutes at most)
	PressureEnded   = "ended"   // it is over: calm again, or the cgroup is gone
)

// Why a memory cgroup is under pressure (PressureEpisode.Reasons).
const (
	// PressureNearLimit: what it cannot reclaim (usage less its page
	// cache) is within a tenth of its limit, or past four fifths of it and
	// growing to it within a minute: a charge will soon fail.
	PressureNearLimit = "near_limit"
	// PressureAboveHigh: it goes over memory.high again and again with
	// little to reclaim: the kernel throttles it.
	PressureAboveHigh = "above_high"
	// PressureStalling: its tasks stall on memory (PSI some avg10 past
	// the threshold) while it hits its limit.
	PressureStalling = "stalling"
)

// CgroupPressure is a memory cgroup with a limit (a container's, a pod's,
// a service's) under memory pressure, before the kernel kills in it: one
// line when the episode starts, a reminder while it lasts, one when it
// ends.
type CgroupPressure struct {
	Type string `json:"type"`
	Time Time   `json:"time"`
	Node string `json:"node"`
	// State is PressureStarted, PressureOngoing or PressureEnded.
	State string `json:"state"`
	Memcg Cgroup `json:"memcg"`
	// Container and Pod name the cgroup's, null when it is none's (a
	// host's service names its Unit).
	Container *Container `json:"container"`
	Pod       *Pod       `json:"pod"`
	Unit      string     `json:"unit,omitempty"`
	// Episode is what the cgroup went through since the episode began.
	Episode PressureEpisode `json:"episode"`
	// Memory is the cgroup's memory at this line.
	Memory PressureSample `json:"memory"`
	// Truncated says the JSON line was cut to fit 16 KiB (see OOMKill).
	Truncated bool `json:"truncated,omitempty"`
}

// PressureEpisode is a memory cgroup's episode of pressure: since when,
// why, and what the kernel counted meanwhile.
type PressureEpisode struct {
	Since           Time    `json:"since"`
	DurationSeconds float64 `json:"duration_seconds"`
	// Reasons are every Pressure* reason seen during the episode.
	Reasons []string `json:"reasons"`
	// MaxEvents counts the charges that hit the limit and had to reclaim
	// (memory.events max; cgroup v1: memory.failcnt), HighEvents those
	// over memory.high (cgroup v2), during the episode.
	MaxEvents  uint64 `json:"max_events"`
	HighEvents uint64 `json:"high_events"`
	// StallSeconds is the time some of its tasks stalled on memory during
	// the episode (memory.pressure some total; cgroup v2 with PSI).
	StallSeconds   float64 `json:"stall_seconds"`
	PeakUsageBytes uint64  `json:"peak_usage_bytes"`
}

// PressureSample is a memory cgroup's memory at a moment: usage against
// the limits, and how much of it is page cache the kernel can reclaim.
type PressureSample struct {
	UsageBytes uint64  `json:"usage_bytes"`
	LimitBytes *uint64 `json:"limit_bytes"` // memory.max; null: none
	// HighBytes is memory.high (cgroup v2); null: none.
	HighBytes *uint64 `json:"high_bytes,omitempty"`
	// FileBytes is its page cache, InactiveFileBytes the part the kernel
	// reclaims first; AnonBytes its anonymous memory (memory.stat).
	FileBytes         uint64 `json:"file_bytes"`
	InactiveFileBytes uint64 `json:"inactive_file_bytes"`
	AnonBytes         uint64 `json:"anon_bytes"`
	// SecondsToLimit is when what it cannot reclaim reaches the limit at
	// the pace it grew over the last seconds; absent when that is further
	// than the watcher's horizon (a minute), or it does not grow.
	SecondsToLimit *float64 `json:"seconds_to_limit,omitempty"`
	// Pressure is its memory PSI (cgroup v2 with PSI); null otherwise.
	Pressure *Pressure `json:"pressure,omitempty"`
}

// SignalRef points from an eviction to a signal its pod's containers got.
type SignalRef struct {
	Time         Time    `json:"time"`
	SecondsAfter float64 `json:"seconds_after"` // after the eviction; negative before it
	PID          uint32  `json:"pid"`
	Comm         string  `json:"comm"`
	Container    string  `json:"container"`         // the container's name, else its id; empty for the sandbox
	Sandbox      bool    `json:"sandbox,omitempty"` // the pod's sandbox (pause) process
	Signal       string  `json:"signal"`
	SenderPID    uint32  `json:"sender_pid"`
	SenderComm   string  `json:"sender_comm"`
}

// NodeCondition is a change of the Node's MemoryPressure condition.
type NodeCondition struct {
	Type           string `json:"type"`
	Time           Time   `json:"time"` // the condition's lastTransitionTime
	Node           string `json:"node"`
	Condition      string `json:"condition"` // MemoryPressure
	Status         string `json:"status"`    // True, False, Unknown
	PreviousStatus string `json:"previous_status"`
	Reason         string `json:"reason"`
	Message        string `json:"message"`
	// SincePreviousSeconds is the time since the previous transition
	// (how long the previous status lasted); null for the first one seen.
	SincePreviousSeconds *float64 `json:"since_previous_seconds"`
}

// Process identifies a task and the memory cgroup it was charged to.
type Process struct {
	PID       uint32  `json:"pid"`  // thread id
	TGID      uint32  `json:"tgid"` // process id
	Comm      string  `json:"comm"` // raw kernel bytes; JSON replaces invalid UTF-8
	UID       *uint32 `json:"uid,omitempty"`
	Memcg     *Cgroup `json:"memcg"`      // null when it could not be determined
	Cgroup2ID uint64  `json:"cgroup2_id"` // the task's cgroup on the unified hierarchy
	// Container and Pod are null when the task is in none; Unit names the
	// systemd unit of a task outside containers.
	Container *Container `json:"container"`
	Pod       *Pod       `json:"pod"`
	Unit      string     `json:"unit,omitempty"`
	// InVictimCgroup, on a kill's trigger in JSON lines: the trigger ran
	// in the victim's memory cgroup, and its container, pod and unit are
	// the victim's, not repeated (null here).
	InVictimCgroup bool `json:"in_victim_cgroup,omitempty"`
}

// Container is the container a task ran in: the id from its cgroup path,
// the name from the container runtime (empty when the runtime could not say).
type Container struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Runtime string `json:"runtime"` // containerd, cri-o, docker, podman; empty when unknown
	// MemoryLimitBytes is the container's memory limit in the pod spec
	// (spec.containers[].resources.limits.memory), from the cluster view;
	// absent without it or without a limit. The limit the kernel enforced
	// is the domain's: they differ while a resize is in progress.
	MemoryLimitBytes *uint64 `json:"memory_limit_bytes,omitempty"`
	// StatusMemoryLimitBytes is the limit the kubelet reports applied
	// (status.containerStatuses[].resources.limits.memory).
	StatusMemoryLimitBytes *uint64 `json:"status_memory_limit_bytes,omitempty"`
}

// Pod is the Kubernetes pod a task ran in: the uid and QoS class from its
// cgroup path, the name, namespace and labels from the container runtime.
type Pod struct {
	UID       string `json:"uid"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	QoS       string `json:"qos"` // guaranteed, burstable, besteffort; empty when unknown
	// Labels are the pod's, at most MaxLabels of them (the first by key)
	// and MaxLabelBytes in all: a tenant writes them. Shared, not copied,
	// between the events of one pod: never modify.
	Labels map[string]string `json:"labels,omitempty"`
	// LabelsTruncated says the pod had more labels than Labels holds.
	LabelsTruncated bool `json:"labels_truncated,omitempty"`
	// Owner is the workload the pod belongs to, from its controller owner
	// reference (a ReplicaSet's Deployment where the pod-template-hash
	// says so); nil without the cluster view, or for a pod of none.
	Owner *PodOwner `json:"owner,omitempty"`
	// MemoryLimitBytes is the pod-level memory limit
	// (spec.resources.limits.memory), from the cluster view; absent
	// without one.
	MemoryLimitBytes *uint64 `json:"memory_limit_bytes,omitempty"`
	// ContainersMemoryLimitBytes is the sum of its containers' memory
	// limits when every container has one: what the kubelet sets as the
	// pod cgroup's limit without a pod-level one. Absent otherwise.
	ContainersMemoryLimitBytes *uint64 `json:"containers_memory_limit_bytes,omitempty"`
	// ResizeInProgress says the pod had a PodResizeInProgress condition
	// (an in-place resize being applied) when the event was read.
	ResizeInProgress bool `json:"resize_in_progress,omitempty"`
}

// PodOwner is a pod's workload: kind and name, in the pod's namespace.
type PodOwner struct {
	Kind string `json:"kind"` // Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, Node (a static pod)...
	Name string `json:"name"`
}

// String is "Kind/name", as a metric label says it.
func (o *PodOwner) String() string {
	if o == nil {
		return ""
	}
	return o.Kind + "/" + o.Name
}

// Victim is the killed task and the memory it held when it was chosen.
type Victim struct {
	Process
	// NSPID is the victim's process id in its own pid namespace; null
	// when it could not be read (the task was gone).
	NSPID *uint32 `json:"ns_pid"`
	// Init says the victim was its container's init: process 1 of a pid
	// namespace other than the host's, or, in a container, a process
	// whose parent is outside the container's cgroup (the runtime started
	// it: the container's first process also where the pod shares one
	// pid namespace). Null when unknown.
	Init *bool `json:"init"`
	// ParentMemcgID is the id of the memory cgroup of the victim's parent
	// process (0: unknown): a container's first process has its parent,
	// the runtime, outside the container's cgroup.
	ParentMemcgID uint64  `json:"parent_memcg_id,omitempty"`
	OOMScoreAdj   *int32  `json:"oom_score_adj"`
	RSS           *RSS    `json:"rss_bytes"`      // null on kernels that do not say
	TotalVMBytes  *uint64 `json:"total_vm_bytes"` // null on kernels that do not say
	PgtablesBytes *uint64 `json:"pgtables_bytes"` // null on kernels that do not say
	// MemcgMemory is the victim's own memory cgroup (its container's) at
	// the kill: its usage, limit, memory.high, .min, .low and swap, which
	// say what the container was allowed beside the domain's limit.
	// Absent where the hook cannot read it (the classic tracepoint).
	MemcgMemory *MemcgMemory `json:"memcg_memory,omitempty"`
}

// RSS is resident memory by kind, in bytes.
type RSS struct {
	Anon  uint64  `json:"anon"`
	File  uint64  `json:"file"`
	Shmem uint64  `json:"shmem"`
	Swap  *uint64 `json:"swap"` // swapped-out bytes; null where the hook cannot see them
}

// Cgroup is a cgroup captured at the event. Path is relative to the root of
// the hierarchy it belongs to (the v1 memory hierarchy on hybrid hosts).
type Cgroup struct {
	ID            uint64 `json:"id"`   // kernfs id: the inode of the cgroup directory
	Path          string `json:"path"` // raw kernel bytes; JSON replaces invalid UTF-8
	PathTruncated bool   `json:"path_truncated,omitempty"`
	Source        string `json:"source"` // CgroupFromKernel or CgroupFromProcfs
}

// OOM is the decision that killed the victim.
type OOM struct {
	Scope       string    `json:"scope"`
	ScopeSource string    `json:"scope_source"`
	Domain      *Domain   `json:"domain,omitempty"` // the memcg whose limit was hit
	Decision    *Decision `json:"decision,omitempty"`
	// ForcedBy says what forced the kill when it was not a charge that
	// failed: ForcedByLimitWrite. Omitted for a charge.
	ForcedBy string `json:"forced_by,omitempty"`
	// Group is the memory.oom.group kill this kill is part of: one OOM
	// decision that killed every process of a cgroup (the kubelet sets
	// oom.group on every container on cgroup v2). Absent for a single kill.
	Group *GroupKill `json:"group,omitempty"`
}

// GroupKill is one OOM decision that killed a whole cgroup: the kernel
// kills the task it chose, then every other process of the cgroup with
// memory.oom.group=1 (but those with oom_score_adj -1000).
type GroupKill struct {
	// Cgroup is the cgroup killed whole: the highest one with oom.group
	// set between the victim's and the OOM domain. Its path is the
	// victim's cgroup path cut at its level (empty and truncated when the
	// victim's path was cut above it).
	Cgroup Cgroup `json:"cgroup"`
	// DecisionSeq is the seq of the decision's first kill (the task the
	// kernel chose): every kill of the one decision carries it.
	DecisionSeq uint64 `json:"decision_seq"`
	// Chosen says this kill is the task the kernel chose; the others were
	// killed for being in the group.
	Chosen bool `json:"chosen"`
	// GroupKills is the cgroup's memory.events oom_group_kill when the kill
	// was recorded (one per decision, counted after the chosen task's
	// kill); null on kernels before 5.17, which do not count it.
	GroupKills *uint64 `json:"oom_group_kill,omitempty"`
	// Folded, on the chosen kill only, is how many kills of the decision
	// past its first eight have no event of their own: one decision over
	// a container of many processes would otherwise fill the kernel's
	// ring buffer and lose every other pod's kill meanwhile. The metrics
	// and the Kubernetes Event count them; omitted when none.
	Folded uint64 `json:"folded,omitempty"`
}

// Kinds of OOM domain: which limit an OOM kill hit.
const (
	DomainContainer   = "container"   // the victim's container cgroup
	DomainPod         = "pod"         // its pod's cgroup
	DomainAllocatable = "allocatable" // kubepods or a QoS class cgroup: the node's allocatable
	DomainSystem      = "system"      // the whole machine (a global OOM)
	DomainOther       = "other"       // another cgroup, or a cpuset or memory policy
)

// Domain is what ran out of memory: for a memcg OOM the memory cgroup whose
// limit was hit, with its counter at the kill; for a global OOM only the kind.
type Domain struct {
	Kind string `json:"kind,omitempty"` // Domain* above; set by the enrichment
	*Cgroup
	UsageBytes uint64 `json:"usage_bytes,omitempty"`
	LimitBytes uint64 `json:"limit_bytes,omitempty"`
	// LimitSource says whose limit LimitBytes is (LimitFrom* above): on a
	// pod cgroup the sum of its containers' limits, which a one-container
	// pod hits before its container does (the sandbox is charged there
	// too), or a pod-level limit. Empty when it cannot be told (a pod
	// cgroup without the cluster view's spec, a cgroup of another kind).
	LimitSource string `json:"limit_source,omitempty"`
	// The domain's other bounds at the kill, on cgroup v2.
	MemcgBounds
}

// MemcgBounds are a cgroup v2 memory cgroup's bounds besides memory.max,
// and its swap, read in the kernel at the kill. All are absent on cgroup
// v1 (where memory.high, .min and .low do not exist and swap is counted
// with memory) and on the classic tracepoint's records that could not
// read the cgroup.
type MemcgBounds struct {
	HighBytes *uint64 `json:"high_bytes,omitempty"` // memory.high; absent: max (or v1)
	MinBytes  *uint64 `json:"min_bytes,omitempty"`  // memory.min: protected from reclaim
	LowBytes  *uint64 `json:"low_bytes,omitempty"`  // memory.low: protected best-effort
	// SwapUsageBytes is memory.swap.current: memory swapped out. With the
	// kubelet's LimitedSwap a kill at memory.max means the swap limit was
	// full too, or the node's swap.
	SwapUsageBytes *uint64 `json:"swap_usage_bytes,omitempty"`
	SwapLimitBytes *uint64 `json:"swap_limit_bytes,omitempty"` // memory.swap.max; absent: max (or v1)
}

// MemcgMemory is a memory cgroup's counters at the kill.
type MemcgMemory struct {
	UsageBytes uint64  `json:"usage_bytes"`
	LimitBytes *uint64 `json:"limit_bytes"` // memory.max; null: max
	MemcgBounds
}

// Decision is the kernel's struct oom_control at oom_kill_process.
type Decision struct {
	Constraint   string `json:"constraint"`    // none, cpuset, memory_policy, memcg
	TotalPages   uint64 `json:"total_pages"`   // size of the OOM domain in pages
	ChosenPID    uint32 `json:"chosen_pid"`    // the task the badness scan chose
	ChosenPoints int64  `json:"chosen_points"` // its badness
	GFPMask      string `json:"gfp_mask"`      // hexadecimal
	Order        int32  `json:"order"`         // allocation order; -1 for sysrq
	Message      string `json:"message"`
}

// Reasons a memory request was refused (CommitRefusal.Reason).
const (
	ReasonCommit       = "commit"        // overcommit accounting (__vm_enough_memory) refused
	ReasonRlimitAS     = "rlimit_as"     // the address-space limit (RLIMIT_AS)
	ReasonRlimitData   = "rlimit_data"   // the data-segment limit (RLIMIT_DATA)
	ReasonMapCount     = "map_count"     // vm.max_map_count mappings already
	ReasonAddressSpace = "address_space" // no room in the address space
	ReasonUnknown      = "unknown"
)

// CommitRefusal is a memory request the kernel refused at allocation time,
// before any OOM kill: ENOMEM from mmap, mremap, mprotect, fork and the
// like, or a brk that left the break where it was.
type CommitRefusal struct {
	Type    string  `json:"type"`
	Time    Time    `json:"time"`
	Node    string  `json:"node"`
	Hook    string  `json:"hook"`
	Process Process `json:"process"`
	Syscall string  `json:"syscall"`
	// RequestBytes is what the call asked for: the length of a mapping, the
	// growth of a brk or mremap, and for fork the parent's private writable
	// memory that the child would be charged for.
	RequestBytes uint64 `json:"request_bytes"`
	Reason       string `json:"reason"`
	// ClassifiedBy names the rule that decided Reason.
	ClassifiedBy string     `json:"classified_by"`
	Overcommit   Overcommit `json:"overcommit"`
	// Count is how many refusals this line stands for. The first refusal of
	// a process, syscall and reason is written at once with count 1; the
	// ones that follow within the aggregation window are written as one
	// line with Repeated set, carrying the details of the latest of them.
	Count    uint64 `json:"count"`
	Repeated bool   `json:"repeated,omitempty"`
	// Processes, on a line that folds the refusals of a cgroup past its
	// allowance of lines (20 at once, then one a second), is how many
	// processes they came from; Process is the latest of them. Absent on
	// a line of one process.
	Processes uint64 `json:"processes,omitempty"`
	// NodeMemory is the node's memory signals when the line was handled.
	NodeMemory *NodeMemory `json:"node_memory,omitempty"`
	// Truncated says the JSON line was cut to fit 16 KiB (see OOMKill).
	Truncated bool `json:"truncated,omitempty"`
}

// Overcommit is the host's commit accounting, sampled when the line is written.
type Overcommit struct {
	Mode             int    `json:"mode"`  // vm.overcommit_memory: 0 heuristic, 1 always, 2 never
	Ratio            int    `json:"ratio"` // vm.overcommit_ratio, percent
	CommitLimitBytes uint64 `json:"commit_limit_bytes"`
	CommittedBytes   uint64 `json:"committed_bytes"` // Committed_AS
}

// NodeMemory is the node's memory as the kubelet's eviction manager sees it,
// sampled by oomtrace: both memory signals and their hard thresholds.
type NodeMemory struct {
	Time Time `json:"time"` // when the cgroup files were read
	// MemoryAvailable is memory.available: MemTotal minus the root
	// cgroup's working set.
	MemoryAvailable *MemorySignal `json:"memory_available"`
	// AllocatableMemoryAvailable is allocatableMemory.available: the pods'
	// allocatable memory minus the kubepods cgroup's working set; null
	// without a kubepods cgroup.
	AllocatableMemoryAvailable *MemorySignal `json:"allocatable_memory_available"`
	// SwapTotalBytes and SwapFreeBytes are /proc/meminfo's: on a node with
	// swap (NodeSwap) a kill may come with swap full; absent without swap.
	SwapTotalBytes *uint64 `json:"swap_total_bytes,omitempty"`
	SwapFreeBytes  *uint64 `json:"swap_free_bytes,omitempty"`
}

// AnyBelow reports whether any signal is below its hard threshold: the
// kubelet would evict at its next pass.
func (nm NodeMemory) AnyBelow() bool {
	return nm.MemoryAvailable != nil && nm.MemoryAvailable.BelowThreshold ||
		nm.AllocatableMemoryAvailable != nil && nm.AllocatableMemoryAvailable.BelowThreshold
}

// MemorySignal is one of the kubelet's memory eviction signals (not a Unix
// signal: see TaskSignal). Available may be negative.
type MemorySignal struct {
	AvailableBytes  int64   `json:"available_bytes"`
	CapacityBytes   uint64  `json:"capacity_bytes"`
	CapacitySource  string  `json:"capacity_source"`   // mem_total, kubepods_limit or node_allocatable
	WorkingSetBytes uint64  `json:"working_set_bytes"` // usage minus inactive file pages
	ThresholdBytes  *uint64 `json:"threshold_bytes"`   // the hard eviction threshold; null when none
	BelowThreshold  bool    `json:"below_threshold"`   // available < threshold: the kubelet would act
	// SoftThresholdBytes is the soft eviction threshold (evictionSoft) and
	// SoftGracePeriod how long the signal must stay below it before the
	// kubelet evicts (evictionSoftGracePeriod, a Go duration); absent when
	// the kubelet has none for this signal.
	SoftThresholdBytes *uint64 `json:"soft_threshold_bytes,omitempty"`
	SoftGracePeriod    string  `json:"soft_grace_period,omitempty"`
	BelowSoftThreshold bool    `json:"below_soft_threshold,omitempty"` // available < the soft threshold
}

// MemoryPressure is a kubelet memory signal crossing its hard eviction
// threshold, either way, as oomtrace sampled it.
type MemoryPressure struct {
	Type string `json:"type"`
	Time Time   `json:"time"`
	Node string `json:"node"`
	// SignalName is memory.available or allocatableMemory.available.
	SignalName string `json:"signal"`
	MemorySignal
	// Since is how long the signal had been on the other side, in
	// seconds; null for the first sample after oomtrace started.
	SinceSeconds *float64 `json:"since_seconds"`
}

// Time is a wall-clock instant written as RFC 3339 with nanoseconds, in UTC.
type Time struct{ time.Time }

// Layout is the RFC 3339 layout of Time, with all nine fractional digits.
const Layout = "2006-01-02T15:04:05.000000000Z07:00"

// MarshalJSON writes the time in Layout.
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(Layout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, Layout)
	return append(b, '"'), nil
}

// UnmarshalJSON reads a time in RFC 3339.
func (t *Time) UnmarshalJSON(b []byte) error {
	return t.Time.UnmarshalJSON(b)
}

// Seconds is a duration in seconds, rounded to the microsecond: a float
// of a nanosecond count prints noise (2.9997199500000002).
func Seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1e6) / 1e6
}

// Event is one event oomtrace writes out: OOMKill, CommitRefusal,
// MemoryPressure, Eviction or NodeCondition. The set is closed: a sink
// takes an Event and switches on its type, and a new kind of event adds a
// case, not a method to every sink.
type Event interface{ isEvent() }

func (OOMKill) isEvent()        {}
func (CommitRefusal) isEvent()  {}
func (MemoryPressure) isEvent() {}
func (Eviction) isEvent()       {}
func (NodeCondition) isEvent()  {}
func (UserspaceKill) isEvent()  {}
func (CgroupPressure) isEvent() {}

// TaskSignal is an event to the pipeline's stage only (which makes the
// user-space kills of them); no output writes it.
func (TaskSignal) isEvent() {}
