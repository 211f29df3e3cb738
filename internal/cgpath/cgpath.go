// SPDX-License-Identifier: Apache-2.0

// Package cgpath reads a cgroup path the way the kubelet and the container
// runtimes write it: which container, pod, QoS class or systemd unit it names.
package cgpath

import (
	"strings"
)

// Runtimes, as written in Container.Runtime. A path in the cgroupfs layout
// (a bare 64-hex directory) does not say which runtime made it: Runtime is
// empty there and the CRI runtime fills it in.
const (
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimeDocker     = "docker"
	RuntimePodman     = "podman"
)

// QoS classes of a Kubernetes pod.
const (
	QoSGuaranteed = "guaranteed"
	QoSBurstable  = "burstable"
	QoSBestEffort = "besteffort"
)

// Level is what the cgroup itself is, as opposed to what it is inside.
type Level int

// The levels, root-most first.
const (
	LevelOther     Level = iota // not a Kubernetes or container cgroup
	LevelKubepods               // the kubepods cgroup: the node's allocatable
	LevelQoS                    // a QoS class cgroup below kubepods
	LevelPod                    // a pod cgroup
	LevelContainer              // a container cgroup, or a cgroup inside one
)

func (l Level) String() string {
	switch l {
	case LevelKubepods:
		return "kubepods"
	case LevelQoS:
		return "qos"
	case LevelPod:
		return "pod"
	case LevelContainer:
		return "container"
	}
	return "other"
}

// Info is what a cgroup path says about the tasks in it.
type Info struct {
	Level       Level
	Kubepods    bool   // the path is at or below a kubepods cgroup
	QoS         string // QoS class of the pod; empty outside pods
	PodUID      string // with dashes, as in the API; empty outside pods
	ContainerID string // the outermost container on the path
	Runtime     string // from the path's naming; empty when it does not say
	Conmon      bool   // CRI-O's monitor scope of the container, not the container
	Unit        string // the innermost systemd unit (.service or .scope), outside containers
}

// Parse reads a cgroup path (from any hierarchy: v1, v2 or hybrid; relative
// to the hierarchy's root, or not). It never fails: what it cannot read is
// left empty. The kubepods cgroup may sit at any depth (the kubelet's
// --cgroup-root), with the cgroupfs or the systemd driver. The first pod
// and container on the path are the ones named: levels below them may be
// a tenant's, named as it likes.
func Parse(path string) Info {
	var info Info
	prev := ""
	stop := false
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" || seg == "." {
			continue
		}
		parent := prev
		prev = seg
		if info.Level == LevelContainer || stop {
			// Below the container: its own sub-cgroups (systemd in a
			// container, a nested runtime, or a tenant's own names)
			// belong to the same container.
			continue
		}
		if info.Level == LevelPod && info.Kubepods {
			// A pod's cgroup holds its containers' cgroups and nothing
			// else the kubelet makes: a container is its direct child,
			// and what else is below it is not read (a tenant who may
			// create cgroups there could name them kubepods/.../pod<uid>
			// of another pod).
			stop = !parseContainerSegment(seg, &info)
			continue
		}
		if info.Kubepods && info.Level < LevelContainer {
			if parsePodSegment(seg, &info) {
				continue
			}
		}
		if isKubepods(seg) {
			info = Info{Level: LevelKubepods, Kubepods: true}
			continue
		}
		if parseContainerSegment(seg, &info) {
			if info.Runtime == "" && parent == "docker" {
				info.Runtime = RuntimeDocker // Docker's cgroupfs layout: /docker/<id>
			}
			continue
		}
		if info.Level == LevelOther && (strings.HasSuffix(seg, ".service") || strings.HasSuffix(seg, ".scope")) {
			info.Unit = seg
		}
	}
	if info.Level == LevelContainer {
		info.Unit = ""
	}
	return info
}

// isKubepods: kubepods (cgroupfs), kubepods.slice, or <root>-kubepods.slice
// when the kubelet's --cgroup-root is a slice of its own.
func isKubepods(seg string) bool {
	return seg == "kubepods" || seg == "kubepods.slice" || strings.HasSuffix(seg, "-kubepods.slice")
}

// parsePodSegment reads the QoS and pod levels below kubepods.
func parsePodSegment(seg string, info *Info) bool {
	if info.Level == LevelKubepods {
		switch {
		case seg == "burstable", strings.HasSuffix(seg, "kubepods-burstable.slice"):
			info.Level, info.QoS = LevelQoS, QoSBurstable
			return true
		case seg == "besteffort", strings.HasSuffix(seg, "kubepods-besteffort.slice"):
			info.Level, info.QoS = LevelQoS, QoSBestEffort
			return true
		}
	}
	if info.Level != LevelKubepods && info.Level != LevelQoS {
		return false
	}
	// A mixed-driver leaf, "<pod slice>:cri-containerd:<id>", names the pod
	// and the container at once.
	podPart, rest, mixed := strings.Cut(seg, ":")
	uid, qos, ok := podUID(podPart)
	if !ok {
		return false
	}
	info.Level, info.PodUID = LevelPod, uid
	if qos != "" {
		info.QoS = qos
	}
	if info.QoS == "" {
		// Guaranteed pods sit directly below kubepods.
		info.QoS = QoSGuaranteed
	}
	if mixed {
		prefix, id, _ := strings.Cut(rest, ":")
		if isContainerID(id) {
			info.Level, info.ContainerID = LevelContainer, id
			info.Runtime, info.Conmon = runtimeOfPrefix(prefix)
		}
	}
	return true
}

// podUID reads pod<uid> (cgroupfs) or [<root>-]kubepods[-<qos>]-pod<uid>.slice
// (systemd, with the uid's dashes escaped as underscores).
func podUID(seg string) (uid, qos string, ok bool) {
	if rest, found := strings.CutPrefix(seg, "pod"); found {
		return rest, "", isUID(rest)
	}
	name, found := strings.CutSuffix(seg, ".slice")
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(name, "-pod")
	if i < 0 {
		return "", "", false
	}
	uid = strings.ReplaceAll(name[i+len("-pod"):], "_", "-")
	if !isUID(uid) {
		return "", "", false
	}
	switch parent := name[:i]; {
	case strings.HasSuffix(parent, "kubepods-burstable"):
		qos = QoSBurstable
	case strings.HasSuffix(parent, "kubepods-besteffort"):
		qos = QoSBestEffort
	case strings.HasSuffix(parent, "kubepods"):
	default:
		return "", "", false
	}
	return uid, qos, true
}

// isUID accepts API pod uids (UUIDs) and static pods' config hashes (32 hex).
func isUID(s string) bool {
	if len(s) != 36 && len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if len(s) == 36 && (i == 8 || i == 13 || i == 18 || i == 23) {
			if c != '-' {
				return false
			}
			continue
		}
		if !isHex(c) {
			return false
		}
	}
	return true
}

// parseContainerSegment reads a container's own cgroup in each runtime's
// naming: <id> (cgroupfs), <prefix>-<id>.scope (systemd), <prefix>-<id>
// (CRI-O with cgroupfs), or a mixed-driver <slice>:<prefix>:<id>.
func parseContainerSegment(seg string, info *Info) bool {
	if isContainerID(seg) {
		info.Level, info.ContainerID = LevelContainer, seg
		return true
	}
	if parts := strings.Split(seg, ":"); len(parts) == 3 && isContainerID(parts[2]) {
		info.Level, info.ContainerID = LevelContainer, parts[2]
		info.Runtime, info.Conmon = runtimeOfPrefix(parts[1])
		// The pod slice's name says kubepods itself, wherever it sits.
		if uid, qos, ok := podUID(parts[0]); ok && strings.HasSuffix(parts[0], ".slice") {
			info.Kubepods, info.PodUID, info.QoS = true, uid, qos
			if qos == "" {
				info.QoS = QoSGuaranteed
			}
		}
		return true
	}
	name := strings.TrimSuffix(seg, ".scope")
	i := strings.LastIndexByte(name, '-')
	if i < 0 || !isContainerID(name[i+1:]) {
		return false
	}
	runtime, conmon := runtimeOfPrefix(name[:i])
	if runtime == "" {
		return false
	}
	info.Level, info.ContainerID, info.Runtime, info.Conmon = LevelContainer, name[i+1:], runtime, conmon
	return true
}

func runtimeOfPrefix(prefix string) (runtime string, conmon bool) {
	switch prefix {
	case "cri-containerd":
		return RuntimeContainerd, false
	case "crio":
		return RuntimeCRIO, false
	case "crio-conmon":
		return RuntimeCRIO, true
	case "docker":
		return RuntimeDocker, false
	case "libpod":
		return RuntimePodman, false
	case "libpod-conmon":
		return RuntimePodman, true
	}
	return "", false
}

// isContainerID: the 64-hex ids of containerd, CRI-O, Docker and Podman.
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// ContainerPath is the container's own cgroup in path: path cut after the
// segment that makes it a container cgroup (a container's sub-cgroups, as
// systemd in a container makes, belong to it); "" when path is in no
// container.
func ContainerPath(path string) string {
	segs := strings.Split(path, "/")
	for i := range segs {
		prefix := strings.Join(segs[:i+1], "/")
		if info := Parse(prefix); info.Level == LevelContainer && !info.Conmon {
			return prefix
		}
	}
	return ""
}
