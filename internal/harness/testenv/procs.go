// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Procs are a test's background processes (a control plane's), each in a
// process group of its own (^C on the test does not reach it first),
// started in Dir and logging to Dir/NAME.log, appended: a restarted
// process's log keeps what the last one said. On the systemd node each
// runs as a systemd unit (AsUnit).
type Procs struct {
	Dir    string
	cmds   map[string]*exec.Cmd
	exited map[string]chan struct{}
}

// NewProcs returns the processes of dir, none running.
func NewProcs(dir string) *Procs {
	return &Procs{Dir: dir, cmds: map[string]*exec.Cmd{}, exited: map[string]chan struct{}{}}
}

// Start starts bin as name.
func (p *Procs) Start(t *testing.T, name, bin string, args ...string) {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(p.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	argv := AsUnit(name, append([]string{bin}, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = p.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.cmds[name], p.exited[name] = cmd, exited
}

// Stop stops name, if it runs: SIGTERM, and SIGKILL after 10 s (an API
// server drains its watches first: not worth waiting for).
func (p *Procs) Stop(name string) {
	cmd := p.cmds[name]
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited[name]:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-p.exited[name]
	}
	delete(p.cmds, name)
	delete(p.exited, name)
}

// StopAll stops every process still running.
func (p *Procs) StopAll() {
	for name := range p.cmds {
		p.Stop(name)
	}
}

// Pid is name's process id; 0 when it does not run.
func (p *Procs) Pid(name string) int {
	if cmd := p.cmds[name]; cmd != nil {
		return cmd.Process.Pid
	}
	return 0
}

// Log is name's log so far.
func (p *Procs) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, name+".log"))
	return string(b)
}

// WaitFor waits up to timeout until ready returns nil. When what names a
// process, its exit fails the test at once; either failure shows the end
// of its log.
func (p *Procs) WaitFor(t *testing.T, what string, timeout time.Duration, ready func() error) {
	t.Helper()
	start := time.Now()
	for {
		err := ready()
		if err == nil {
			t.Logf("%s ready in %v", what, time.Since(start).Round(time.Millisecond))
			return
		}
		select {
		case <-p.exited[what]: // nil, never ready, for no process
			t.Fatalf("%s exited: %v\n%s", what, p.cmds[what].ProcessState, Tail(p.Log(what), 40))
		default:
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s not ready after %v: %v\n%s", what, timeout, err, Tail(p.Log(what), 40))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
