// SPDX-License-Identifier: Apache-2.0

// Package testenv holds the conventions of oomtrace's privileged tests:
// the tests of *_kernel_test.go files need root, skip without it unless
// told to fail, and say what they do to the machine before they run.
package testenv

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
)

// Announce tells a person running the privileged tests as root what they
// do to this machine, once per test binary, before any of them runs. It
// writes to the terminal: go test shows a passing package's output only
// with -v, and a warning that only -v shows comes too late. Without a
// terminal (CI) it says nothing.
func Announce(pkg string) {
	if os.Geteuid() != 0 {
		return
	}
	tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer tty.Close()
	fmt.Fprintf(tty, "%s: running as root: the privileged tests (*_kernel_test.go) load BPF programs and OOM-kill their own "+
		"test processes in memory cgroups they create below this process's own, each limited before anything runs in it; "+
		"nothing outside them is killed. Run as a normal user to skip them.\n", pkg)
}

// RequireEnv makes privileged tests fail instead of skip when set to 1:
// CI sets it so that a missing privilege cannot turn the suite green.
const RequireEnv = "OOMTRACE_REQUIRE_PRIVILEGED"

// RequirePrivileged skips (or, under RequireEnv, fails) a test that needs
// root. Every test of a *_kernel_test.go file starts with it, and only
// those do: the privileged tests are the ones in those files.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("privileged test needs root (%s=1)", RequireEnv)
	}
	t.Skip("privileged test: needs root")
}

// SystemdNodeEnv marks the systemd node (a qemu guest with systemd as
// PID 1): the cluster's processes run as systemd units there, and the
// kubelet and containerd use the systemd cgroup driver.
const SystemdNodeEnv = "OOMTRACE_SYSTEMD_NODE"

// SystemdNode says whether this is the systemd node.
func SystemdNode() bool { return os.Getenv(SystemdNodeEnv) == "1" }

var units atomic.Int64

// AsUnit is the command line that runs argv as name: on the systemd node
// in a transient scope unit oomtrace-NAME-N.scope of its own (systemd-run
// --scope execs argv, which stays this process's child; Delegate: it
// manages cgroups below its own, as containerd's and the kubelet's units
// do), elsewhere argv itself.
func AsUnit(name string, argv ...string) []string {
	if !SystemdNode() {
		return argv
	}
	// A name of its own each time: a restarted process's last unit may
	// not be collected yet.
	unit := fmt.Sprintf("oomtrace-%s-%d", name, units.Add(1))
	return append([]string{"systemd-run", "--scope", "--quiet", "--collect", "--unit=" + unit, "--property=Delegate=yes", "--"}, argv...)
}
