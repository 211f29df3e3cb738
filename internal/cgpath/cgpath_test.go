// SPDX-License-Identifier: Apache-2.0

package cgpath

import (
	"strings"
	"testing"
	"unicode/utf8"
)

const (
	id  = "4f2a9b7c1d3e5f60718293a4b5c6d7e8f9012345678901234567890abcdef012"
	uid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	// systemd escapes the uid's dashes.
	uidEsc = "1b4e28ba_2fa1_11d2_883f_0016d3cca427"
	// Static pods' uid is the hash of their manifest.
	staticUID = "6f0b5a1c2d3e4f5a6b7c8d9e0f1a2b3c"
	// Another pod's, a tenant would like to be taken for.
	uid2 = "9c0ffee0-2fa1-11d2-883f-0016d3cca427"
	id2  = "0000000000000000000000000000000000000000000000000000000000000bad"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, path string
		want       Info
	}{
		// containerd, cgroupfs driver (this project's CI harness writes these).
		{"containerd cgroupfs burstable", "/kubepods/burstable/pod" + uid + "/" + id,
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBurstable, PodUID: uid, ContainerID: id}},
		{"containerd cgroupfs besteffort", "/kubepods/besteffort/pod" + uid + "/" + id,
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBestEffort, PodUID: uid, ContainerID: id}},
		{"containerd cgroupfs guaranteed", "/kubepods/pod" + uid + "/" + id,
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSGuaranteed, PodUID: uid, ContainerID: id}},
		// Hostile nesting: a tenant that may create cgroups below its
		// container (or, say, a runtime that puts one there) names them
		// as another pod's. The first pod and container are the ones.
		{"tenant names kubepods below its container", "/kubepods/burstable/pod" + uid + "/" + id + "/kubepods/besteffort/pod" + uid2 + "/" + id2,
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBurstable, PodUID: uid, ContainerID: id}},
		{"tenant names kubepods below its pod", "/kubepods/burstable/pod" + uid + "/sub/kubepods/pod" + uid2 + "/" + id2,
			Info{Level: LevelPod, Kubepods: true, QoS: QoSBurstable, PodUID: uid}},
		{"kubepods right below a pod", "/kubepods/pod" + uid + "/kubepods/pod" + uid2 + "/" + id2,
			Info{Level: LevelPod, Kubepods: true, QoS: QoSGuaranteed, PodUID: uid}},
		{"a pod below a pod", "/kubepods/pod" + uid + "/pod" + uid2 + "/" + id2,
			Info{Level: LevelPod, Kubepods: true, QoS: QoSGuaranteed, PodUID: uid}},
		// containerd, systemd driver.
		{"containerd systemd burstable", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidEsc + ".slice/cri-containerd-" + id + ".scope",
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBurstable, PodUID: uid, ContainerID: id, Runtime: RuntimeContainerd}},
		{"containerd systemd guaranteed", "/kubepods.slice/kubepods-pod" + uidEsc + ".slice/cri-containerd-" + id + ".scope",
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSGuaranteed, PodUID: uid, ContainerID: id, Runtime: RuntimeContainerd}},
		{"static pod systemd", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + staticUID + ".slice/cri-containerd-" + id + ".scope",
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBestEffort, PodUID: staticUID, ContainerID: id, Runtime: RuntimeContainerd}},
		// Mixed drivers: kubelet cgroupfs, containerd systemd.
		{"mixed", "/kubepods-burstable-pod" + uidEsc + ".slice:cri-containerd:" + id,
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBurstable, PodUID: uid, ContainerID: id, Runtime: RuntimeContainerd}},
		{"mixed below kubepods", "/kubepods/burstable/kubepods-burstable-pod" + uidEsc + ".slice:cri-containerd:" + id,
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBurstable, PodUID: uid, ContainerID: id, Runtime: RuntimeContainerd}},
		// CRI-O.
		{"crio systemd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidEsc + ".slice/crio-" + id + ".scope",
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBurstable, PodUID: uid, ContainerID: id, Runtime: RuntimeCRIO}},
		{"crio conmon", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidEsc + ".slice/crio-conmon-" + id + ".scope",
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBurstable, PodUID: uid, ContainerID: id, Runtime: RuntimeCRIO, Conmon: true}},
		{"crio cgroupfs", "/kubepods/besteffort/pod" + uid + "/crio-" + id,
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBestEffort, PodUID: uid, ContainerID: id, Runtime: RuntimeCRIO}},
		{"crio systemd container sub-cgroup", "/kubepods.slice/kubepods-pod" + uidEsc + ".slice/crio-" + id + ".scope/container",
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSGuaranteed, PodUID: uid, ContainerID: id, Runtime: RuntimeCRIO}},
		// cri-dockerd.
		{"cri-dockerd systemd", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidEsc + ".slice/docker-" + id + ".scope",
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBestEffort, PodUID: uid, ContainerID: id, Runtime: RuntimeDocker}},
		// kubepods at any depth: --cgroup-root, a test's own root, a kind node.
		{"cgroup root cgroupfs", "/process_api/9a1c672faff8507a685f42af7a44f558/oomtrace-cri/kubepods/burstable/pod" + uid + "/" + id,
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBurstable, PodUID: uid, ContainerID: id}},
		{"cgroup root systemd", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod" + uidEsc + ".slice/cri-containerd-" + id + ".scope",
			Info{Level: LevelContainer, Kubepods: true, QoS: QoSBurstable, PodUID: uid, ContainerID: id, Runtime: RuntimeContainerd}},
		{"kind node", "/system.slice/docker-" + strings.Repeat("ab", 32) + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod" + uidEsc + ".slice/cri-containerd-" + id + ".scope",
			// The outermost container is the kind node itself.
			Info{Level: LevelContainer, ContainerID: strings.Repeat("ab", 32), Runtime: RuntimeDocker}},
		// Levels above the container.
		{"pod cgroupfs", "/kubepods/burstable/pod" + uid, Info{Level: LevelPod, Kubepods: true, QoS: QoSBurstable, PodUID: uid}},
		{"pod systemd", "/kubepods.slice/kubepods-pod" + uidEsc + ".slice", Info{Level: LevelPod, Kubepods: true, QoS: QoSGuaranteed, PodUID: uid}},
		{"qos cgroupfs", "/kubepods/besteffort", Info{Level: LevelQoS, Kubepods: true, QoS: QoSBestEffort}},
		{"qos systemd", "/kubepods.slice/kubepods-burstable.slice", Info{Level: LevelQoS, Kubepods: true, QoS: QoSBurstable}},
		{"qos systemd besteffort", "/kubepods.slice/kubepods-besteffort.slice", Info{Level: LevelQoS, Kubepods: true, QoS: QoSBestEffort}},
		{"kubepods", "/kubepods", Info{Level: LevelKubepods, Kubepods: true}},
		{"kubepods slice", "/kubepods.slice/", Info{Level: LevelKubepods, Kubepods: true}},
		{"pod, unknown leaf", "/kubepods/pod" + uid + "/not-a-container", Info{Level: LevelPod, Kubepods: true, QoS: QoSGuaranteed, PodUID: uid}},
		// Outside Kubernetes.
		{"service", "/system.slice/nginx.service", Info{Unit: "nginx.service"}},
		{"session", "/user.slice/user-1000.slice/session-3.scope", Info{Unit: "session-3.scope"}},
		{"delegated service", "/system.slice/app.service/worker", Info{Unit: "app.service"}},
		{"docker systemd", "/system.slice/docker-" + id + ".scope", Info{Level: LevelContainer, ContainerID: id, Runtime: RuntimeDocker}},
		{"docker cgroupfs", "/docker/" + id, Info{Level: LevelContainer, ContainerID: id, Runtime: RuntimeDocker}},
		{"podman", "/machine.slice/libpod-" + id + ".scope/container", Info{Level: LevelContainer, ContainerID: id, Runtime: RuntimePodman}},
		{"containerd namespace", "/default/" + id, Info{Level: LevelContainer, ContainerID: id}},
		// A container below a systemd unit is the container's, not the unit's.
		{"containerd below its service", "/system.slice/containerd.service/default/" + id, Info{Level: LevelContainer, ContainerID: id}},
		{"rootless podman", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id + ".scope/container",
			Info{Level: LevelContainer, ContainerID: id, Runtime: RuntimePodman}},
		{"root", "/", Info{}},
		{"empty", "", Info{}},
		{"this machine", "/process_api/9a1c672faff8507a685f42af7a44f558", Info{}},
		// Look-alikes that are not what they seem.
		{"pod outside kubepods", "/pod" + uid, Info{}},
		{"short id", "/kubepods/pod" + uid + "/" + id[:63], Info{Level: LevelPod, Kubepods: true, QoS: QoSGuaranteed, PodUID: uid}},
		{"upper-case id", "/docker/" + strings.ToUpper(id), Info{}},
		{"bad uid", "/kubepods/podnot-a-uid", Info{Level: LevelKubepods, Kubepods: true}},
		{"unknown scope prefix", "/system.slice/foo-" + id + ".scope", Info{Unit: "foo-" + id + ".scope"}},
		{"truncated", "/kubepods/burstable/pod" + uid + "/" + id[:20], Info{Level: LevelPod, Kubepods: true, QoS: QoSBurstable, PodUID: uid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parse(tt.path); got != tt.want {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tt.path, got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"/kubepods/burstable/pod" + uid + "/" + id,
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidEsc + ".slice/cri-containerd-" + id + ".scope",
		"/kubepods-burstable-pod" + uidEsc + ".slice:cri-containerd:" + id,
		"/system.slice/nginx.service", "/", "", "::", "/kubepods/pod/", "kubepods-pod.slice",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		info := Parse(path)
		// What it returns is always taken from the path, well-formed.
		if info.ContainerID != "" && (!isContainerID(info.ContainerID) || !strings.Contains(path, info.ContainerID)) {
			t.Fatalf("container id %q from %q", info.ContainerID, path)
		}
		if info.PodUID != "" && (!isUID(info.PodUID) || !info.Kubepods) {
			t.Fatalf("pod uid %q from %q", info.PodUID, path)
		}
		if (info.Level == LevelPod) != (info.PodUID != "" && info.ContainerID == "") && info.Level != LevelContainer {
			t.Fatalf("level %v with pod %q container %q", info.Level, info.PodUID, info.ContainerID)
		}
		if info.Level == LevelContainer && info.ContainerID == "" {
			t.Fatalf("container level without an id: %q", path)
		}
		if info.Unit != "" && (info.Level != LevelOther || !strings.Contains(path, info.Unit) || strings.Contains(info.Unit, "/")) {
			t.Fatalf("unit %q at level %v from %q", info.Unit, info.Level, path)
		}
		if utf8.ValidString(path) && !utf8.ValidString(info.Unit) {
			t.Fatalf("unit %q not valid UTF-8", info.Unit)
		}
		switch info.QoS {
		case "", QoSGuaranteed, QoSBurstable, QoSBestEffort:
		default:
			t.Fatalf("qos %q", info.QoS)
		}
		// Parsing is a pure function of the path.
		if again := Parse(path); again != info {
			t.Fatalf("not deterministic: %+v then %+v", info, again)
		}
	})
}

func TestContainerPath(t *testing.T) {
	systemdCtr := "/kubepods.slice/kubepods-pod" + uidEsc + ".slice/crio-" + id + ".scope"
	cgroupfsCtr := "/process_api/kubepods/burstable/pod" + uid + "/" + id
	cases := map[string]string{
		cgroupfsCtr:                     cgroupfsCtr,
		cgroupfsCtr + "/init.scope":     cgroupfsCtr,
		systemdCtr + "/container":       systemdCtr,
		"/kubepods/burstable/pod" + uid: "",
		"/kubepods.slice/kubepods-pod" + uidEsc + ".slice/crio-conmon-" + id + ".scope": "",
		"/system.slice/containerd.service":                                              "",
		"":                                                                              "",
	}
	for path, want := range cases {
		if got := ContainerPath(path); got != want {
			t.Errorf("ContainerPath(%q) = %q, want %q", path, got, want)
		}
	}
}

// FuzzContainerPath: a container's own cgroup is a prefix of the path, at
// a segment boundary, that Parse reads as a container (not CRI-O's monitor)
// with the same pod and container as the whole path.
func FuzzContainerPath(f *testing.F) {
	f.Add("/kubepods/burstable/pod" + uid + "/" + id + "/init.scope")
	f.Add("/kubepods/pod" + uid + "/" + id + "/kubepods/pod" + uid2 + "/" + id2)
	f.Add("/system.slice/docker-" + id + ".scope/x")
	f.Fuzz(func(t *testing.T, path string) {
		c := ContainerPath(path)
		if c == "" {
			return
		}
		if c != path && !strings.HasPrefix(path, c+"/") {
			t.Fatalf("ContainerPath(%q) = %q: not a prefix at a segment boundary", path, c)
		}
		own, whole := Parse(c), Parse(path)
		if own.Level != LevelContainer || own.Conmon || own.ContainerID != whole.ContainerID || own.PodUID != whole.PodUID {
			t.Errorf("ContainerPath(%q) = %q: %+v, the whole path %+v", path, c, own, whole)
		}
	})
}
