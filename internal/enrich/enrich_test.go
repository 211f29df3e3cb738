// SPDX-License-Identifier: Apache-2.0

package enrich

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/cri"
)

const (
	uid     = "0b1e7bd0-4a5e-4c4b-9f34-7d1f1c2a7e10"
	podPath = "/kubepods/burstable/pod" + uid
	redisID = "aaaa000000000000000000000000000000000000000000000000000000000001"
	sideID  = "bbbb000000000000000000000000000000000000000000000000000000000002"
	pauseID = "cccc000000000000000000000000000000000000000000000000000000000003"
	goneID  = "dddd000000000000000000000000000000000000000000000000000000000004"
)

type fakeRuntime map[string]cri.Container

func (f fakeRuntime) Lookup(_ context.Context, id string, _ time.Time) (cri.Container, bool) {
	c, ok := f[id]
	return c, ok
}

// fakeView is a cluster view: it names containers by id and knows the
// memory limits of its pods' containers by pod uid and name.
type fakeView struct{ fakeRuntime }

func (v fakeView) MemoryLimits(c *cri.Container) bool {
	for _, known := range v.fakeRuntime {
		if known.PodUID == c.PodUID && known.Name == c.Name {
			c.MemoryLimit, c.PodMemoryLimit, c.ContainersMemoryLimit = known.MemoryLimit, known.PodMemoryLimit, known.ContainersMemoryLimit
			c.StatusMemoryLimit, c.ResizeInProgress = known.StatusMemoryLimit, known.ResizeInProgress
			return true
		}
	}
	return false
}

var runtime = fakeRuntime{
	redisID: {ID: redisID, Name: "redis", Runtime: "containerd", PodUID: uid, PodName: "cart-7d9f", PodNamespace: "shop", PodLabels: map[string]string{"app": "cart"}},
	sideID:  {ID: sideID, Name: "sidecar", Runtime: "containerd", PodUID: uid, PodName: "cart-7d9f", PodNamespace: "shop"},
	pauseID: {ID: pauseID, Sandbox: true, Runtime: "containerd", PodUID: uid, PodName: "cart-7d9f", PodNamespace: "shop"},
}

func proc(pid uint32, path string) event.Process {
	return event.Process{PID: pid, TGID: pid, Memcg: &event.Cgroup{ID: uint64(len(path)), Path: path}}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestProcess(t *testing.T) {
	tests := []struct {
		name string
		path string
		want string // {container, pod, unit} as JSON
	}{
		{"container", podPath + "/" + redisID,
			`{"container":{"id":"` + redisID + `","name":"redis","runtime":"containerd"},"pod":{"uid":"` + uid + `","name":"cart-7d9f","namespace":"shop","qos":"burstable","labels":{"app":"cart"}}}`},
		{"sandbox", podPath + "/" + pauseID,
			`{"container":{"id":"` + pauseID + `","name":"","runtime":"containerd"},"pod":{"uid":"` + uid + `","name":"cart-7d9f","namespace":"shop","qos":"burstable"}}`},
		{"runtime does not know it", podPath + "/" + goneID,
			`{"container":{"id":"` + goneID + `","name":"","runtime":""},"pod":{"uid":"` + uid + `","name":"","namespace":"","qos":"burstable"}}`},
		// The path's directory names are not proof (a tenant may make
		// them): a container the runtime puts in another pod is not named.
		{"runtime names another pod", "/kubepods/pod11111111-2222-3333-4444-555555555555/" + redisID,
			`{"container":{"id":"` + redisID + `","name":"","runtime":"containerd"},"pod":{"uid":"11111111-2222-3333-4444-555555555555","name":"","namespace":"","qos":"guaranteed"}}`},
		{"systemd runtime prefix wins", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b1e7bd0_4a5e_4c4b_9f34_7d1f1c2a7e10.slice/crio-" + sideID + ".scope",
			`{"container":{"id":"` + sideID + `","name":"sidecar","runtime":"cri-o"},"pod":{"uid":"` + uid + `","name":"cart-7d9f","namespace":"shop","qos":"burstable"}}`},
		{"plain docker", "/system.slice/docker-" + goneID + ".scope",
			`{"container":{"id":"` + goneID + `","name":"","runtime":"docker"},"pod":null}`},
		{"service", "/system.slice/nginx.service", `{"container":null,"pod":null,"unit":"nginx.service"}`},
		{"pod cgroup itself", podPath, `{"container":null,"pod":{"uid":"` + uid + `","name":"","namespace":"","qos":"burstable"}}`},
	}
	e := &Enricher{Resolver: runtime}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := proc(1, tt.path)
			e.Process(context.Background(), &p, time.Time{})
			got := jsonOf(t, struct {
				Container *event.Container `json:"container"`
				Pod       *event.Pod       `json:"pod"`
				Unit      string           `json:"unit,omitempty"`
			}{p.Container, p.Pod, p.Unit})
			if got != tt.want {
				t.Errorf("\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestProcessWithoutRuntime(t *testing.T) {
	p := proc(1, podPath+"/"+redisID)
	(&Enricher{}).Process(context.Background(), &p, time.Time{})
	if p.Container == nil || p.Container.ID != redisID || p.Container.Name != "" || p.Pod == nil || p.Pod.UID != uid {
		t.Errorf("path-only attribution: %+v %+v", p.Container, p.Pod)
	}
	// No memcg: nothing to read, nothing invented.
	p = event.Process{PID: 1}
	(&Enricher{Resolver: runtime}).Process(context.Background(), &p, time.Time{})
	if p.Container != nil || p.Pod != nil || p.Unit != "" {
		t.Errorf("no memcg: %+v %+v %q", p.Container, p.Pod, p.Unit)
	}
}

func oomKill(victimPath, domainPath, scope string) event.OOMKill {
	ev := event.OOMKill{Victim: event.Victim{Process: proc(10, victimPath)}, Trigger: proc(11, victimPath), OOM: event.OOM{Scope: scope}}
	if domainPath != "" {
		ev.OOM.Domain = &event.Domain{Cgroup: &event.Cgroup{ID: 99, Path: domainPath}, LimitBytes: 1 << 26}
	}
	return ev
}

func TestOOMKill(t *testing.T) {
	// The idle sidecar is killed for the redis container's allocation: the
	// pod's limit was hit.
	ev := oomKill(podPath+"/"+sideID, podPath, event.ScopeMemcg)
	ev.Trigger = proc(11, podPath+"/"+redisID)
	(&Enricher{Resolver: runtime}).OOMKill(context.Background(), &ev)
	if ev.Victim.Container.Name != "sidecar" || ev.Trigger.Container.Name != "redis" {
		t.Errorf("victim %+v trigger %+v", ev.Victim.Container, ev.Trigger.Container)
	}
}

// TestContainerInit: where the pod shares one pid namespace, a container's
// first process is not process 1; its parent outside the container says
// it is the container's init.
func TestContainerInit(t *testing.T) {
	yes, no := true, false
	ctr := podPath + "/" + redisID
	cases := []struct {
		name      string
		kernel    *bool // what the pid namespace said
		parent    uint64
		container bool
		want      *bool
	}{
		{"shared pid namespace, parent is the shim", &no, 7, true, &yes},
		{"worker: parent in the container", &no, uint64(len(ctr)), true, &no},
		{"pid 1 of its namespace", &yes, uint64(len(ctr)), true, &yes},
		{"namespace unknown, parent outside", nil, 7, true, &yes},
		{"parent unknown", &no, 0, true, &no},
		{"not in a container", &no, 7, false, &no},
	}
	for _, c := range cases {
		ev := oomKill(ctr, ctr, event.ScopeMemcg)
		ev.Victim.Init, ev.Victim.ParentMemcgID = c.kernel, c.parent
		if !c.container {
			ev.Victim.Memcg.Path = "/system.slice/cron.service"
		}
		(&Enricher{}).OOMKill(context.Background(), &ev)
		if (ev.Victim.Init == nil) != (c.want == nil) || ev.Victim.Init != nil && *ev.Victim.Init != *c.want {
			t.Errorf("%s: init %v, want %v", c.name, ev.Victim.Init, c.want)
		}
	}
}

// TestResolvers: a container the runtime does not know (its socket
// missing, or the runtime not answering) is named by the next resolver,
// the cluster's view; the runtime's answer comes first.
func TestResolvers(t *testing.T) {
	view := fakeRuntime{
		goneID:  {ID: goneID, Name: "worker", Runtime: "containerd", PodUID: uid, PodName: "cart-7d9f", PodNamespace: "shop"},
		redisID: {ID: redisID, Name: "not-redis", PodUID: uid},
	}
	e := Enricher{Resolver: Resolvers{runtime, view}}
	unknown := "eeee000000000000000000000000000000000000000000000000000000000005"
	for id, want := range map[string]string{redisID: "redis", goneID: "worker", unknown: ""} {
		p := proc(1, podPath+"/"+id)
		e.Process(context.Background(), &p, time.Now())
		if p.Container == nil || p.Container.Name != want {
			t.Errorf("%s: container %s, want named %q", id[:4], jsonOf(t, p.Container), want)
		}
		if want != "" && (p.Pod == nil || p.Pod.Name != "cart-7d9f") {
			t.Errorf("%s: pod %s", id[:4], jsonOf(t, p.Pod))
		}
	}
	if _, ok := (Resolvers{}).Lookup(context.Background(), redisID, time.Now()); ok {
		t.Error("no resolver named a container")
	}
}

// TestResolversSpecLimits: the runtime names a container, the cluster
// view adds its pod's memory limits; a view that places the id in
// another pod adds nothing.
func TestResolversSpecLimits(t *testing.T) {
	mib := func(n uint64) *uint64 { n <<= 20; return &n }
	view := fakeRuntime{redisID: {ID: redisID, Name: "redis", PodUID: uid, MemoryLimit: mib(64), ContainersMemoryLimit: mib(64), ResizeInProgress: true}}
	e := Enricher{Resolver: Resolvers{runtime, fakeView{view}}}
	p := proc(1, podPath+"/"+redisID)
	e.Process(context.Background(), &p, time.Now())
	if c := p.Container; c == nil || c.Name != "redis" || c.MemoryLimitBytes == nil || *c.MemoryLimitBytes != 64<<20 ||
		p.Pod == nil || p.Pod.ContainersMemoryLimitBytes == nil || !p.Pod.ResizeInProgress || p.Pod.Name != "cart-7d9f" {
		t.Errorf("container %s pod %s: want the runtime's names and the view's limits", jsonOf(t, p.Container), jsonOf(t, p.Pod))
	}
	view[redisID] = cri.Container{ID: redisID, Name: "redis", PodUID: "another", MemoryLimit: mib(64)}
	p = proc(1, podPath+"/"+redisID)
	e.Process(context.Background(), &p, time.Now())
	if p.Container == nil || p.Container.MemoryLimitBytes != nil {
		t.Errorf("container %s: limits from a view of another pod", jsonOf(t, p.Container))
	}
}
