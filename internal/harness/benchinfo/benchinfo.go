// SPDX-License-Identifier: Apache-2.0

// Package benchinfo describes the machine a benchmark ran on, for the
// tables `make bench` prints.
package benchinfo

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Machine is "kernel <release>, <CPU model>, <n> CPUs, <date>".
func Machine() string {
	var u syscall.Utsname
	_ = syscall.Uname(&u)
	var release []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		release = append(release, byte(c))
	}
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("kernel %s, %s, %d CPUs, %s", release, model, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
}
