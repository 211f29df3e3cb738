// SPDX-License-Identifier: Apache-2.0

package memcgtest

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// KernelLog reads the kernel's log (/dev/kmsg) from the moment it was
// opened: the kernel's own OOM report is the oracle of the tests.
type KernelLog struct {
	fd    int // raw: an os.File would park a non-blocking read in the poller
	lines []string
}

// OpenKernelLog starts reading the kernel log at its end.
func OpenKernelLog(t testing.TB) *KernelLog {
	t.Helper()
	fd, err := syscall.Open("/dev/kmsg", syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open the kernel log: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if _, err := syscall.Seek(fd, 0, 2); err != nil { // SEEK_END: only what comes next
		t.Fatalf("seek the kernel log: %v", err)
	}
	return &KernelLog{fd: fd}
}

// read takes every record logged so far.
func (k *KernelLog) read() error {
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Read(k.fd, buf)
		switch {
		case errors.Is(err, syscall.EAGAIN):
			return nil
		case errors.Is(err, syscall.EPIPE):
			continue // records overwritten before we read them
		case err != nil:
			return err
		case n <= 0:
			return nil
		}
		// "level,seq,usec,flags;text" then continuation lines; text has
		// non-printable bytes escaped as \xNN.
		rec := string(buf[:n])
		_, text, ok := strings.Cut(strings.SplitN(rec, "\n", 2)[0], ";")
		if ok {
			// One record may hold many lines: before 6.2 the kernel
			// printed a cgroup's whole memory.stat with one printk.
			k.lines = append(k.lines, strings.Split(strings.TrimRight(unescapeKmsg(text), "\n"), "\n")...)
		}
	}
}

func unescapeKmsg(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// OOMReport is the kernel's report of one OOM kill, as far as it printed
// it: the kernel rate-limits everything before the "Killed process" line.
type OOMReport struct {
	Lines []string
	// MemcgPath and MemcgStats: "Memory cgroup stats for PATH:" and the
	// memory.stat lines that follow it (values in bytes).
	MemcgPath  string
	MemcgStats map[string]uint64
	// Tasks is the "Tasks state" table by pid (memory in pages).
	Tasks map[uint32]ReportTask
}

// ReportTask is one row of the kernel's "Tasks state" table: its values by
// column name (uid, tgid, total_vm, rss, pgtables_bytes, swapents,
// oom_score_adj; rss_anon, rss_file, rss_shmem since 6.x), memory in pages.
type ReportTask struct {
	PID    uint32
	Values map[string]int64
	Name   string
}

var (
	killedRe = regexp.MustCompile(`Killed process (\d+) \(`)
	// A row of the table: [  pid  ] and the columns its header names.
	taskRe = regexp.MustCompile(`^\[\s*(\d+)\]\s+(.*)$`)
)

// WaitOOMReport waits for the kernel's report of the kill of pid and
// returns it; ok is false when the kernel printed only its "Killed
// process" line (its report was rate-limited).
func (k *KernelLog) WaitOOMReport(t testing.TB, pid int, timeout time.Duration) (OOMReport, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if err := k.read(); err != nil {
			t.Fatalf("read the kernel log: %v", err)
		}
		for i, line := range k.lines {
			if m := killedRe.FindStringSubmatch(line); m != nil && m[1] == strconv.Itoa(pid) {
				return parseReport(k.lines[:i+1])
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"Killed process %d\" in the kernel log in %v", pid, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// parseReport reads the report that ends with the last line: back to the
// "invoked oom-killer" line that starts it.
func parseReport(lines []string) (OOMReport, bool) {
	start := -1
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "invoked oom-killer:") {
			start = i
			break
		}
	}
	r := OOMReport{Lines: lines, MemcgStats: map[string]uint64{}, Tasks: map[uint32]ReportTask{}}
	if start < 0 {
		return r, false
	}
	r.Lines = lines[start:]
	inStats := false
	var columns []string // of the Tasks state table, name last
	for _, line := range r.Lines {
		if p, ok := strings.CutPrefix(line, "Memory cgroup stats for "); ok {
			r.MemcgPath, inStats = strings.TrimSuffix(p, ":"), true
			continue
		}
		if inStats {
			f := strings.Fields(line)
			if len(f) == 2 {
				if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
					r.MemcgStats[f[0]] = v
					continue
				}
			}
			inStats = false
		}
		if h, ok := strings.CutPrefix(line, "[  pid  ]"); ok {
			// The columns changed over time (rss_anon, rss_file and
			// rss_shmem came in 6.x): read them from the header.
			columns = strings.Fields(h)
			continue
		}
		if m := taskRe.FindStringSubmatch(line); m != nil && len(columns) > 1 {
			f := strings.Fields(m[2])
			if len(f) < len(columns) {
				continue
			}
			pid, _ := strconv.ParseUint(m[1], 10, 32)
			rt := ReportTask{PID: uint32(pid), Values: map[string]int64{}, Name: strings.Join(f[len(columns)-1:], " ")}
			for i, c := range columns[:len(columns)-1] {
				rt.Values[c], _ = strconv.ParseInt(f[i], 10, 64)
			}
			r.Tasks[rt.PID] = rt
		}
	}
	return r, len(r.Tasks) > 0 && len(r.MemcgStats) > 0
}

// String is the report as the kernel printed it.
func (r OOMReport) String() string {
	var b bytes.Buffer
	for _, l := range r.Lines {
		fmt.Fprintln(&b, l)
	}
	return b.String()
}

// KilledProcess is the kernel's "Killed process" line of one kill, which it
// never rate-limits: the victim's memory as the OOM killer saw it (kB),
// its uid and oom_score_adj.
type KilledProcess struct {
	PID                                 uint32
	Comm                                string
	TotalVM, AnonRSS, FileRSS, ShmemRSS uint64 // kB
	UID                                 uint32
	Pgtables                            uint64 // kB
	OOMScoreAdj                         int32
}

// killedLineRe is the line of mm/oom_kill.c's __oom_kill_process, the same
// since 5.x ("%s: Killed process %d (%s) total-vm:%lukB, anon-rss:%lukB,
// file-rss:%lukB, shmem-rss:%lukB, UID:%u pgtables:%lukB oom_score_adj:%hd").
var killedLineRe = regexp.MustCompile(`Killed process (\d+) \((.*)\) total-vm:(\d+)kB, anon-rss:(\d+)kB, file-rss:(\d+)kB, shmem-rss:(\d+)kB, UID:(\d+) pgtables:(\d+)kB oom_score_adj:(-?\d+)`)

// ParseKilledProcess reads a "Killed process" line.
func ParseKilledProcess(line string) (KilledProcess, bool) {
	m := killedLineRe.FindStringSubmatch(line)
	if m == nil {
		return KilledProcess{}, false
	}
	n := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
	adj, _ := strconv.ParseInt(m[9], 10, 32)
	return KilledProcess{PID: uint32(n(m[1])), Comm: m[2], TotalVM: n(m[3]), AnonRSS: n(m[4]), FileRSS: n(m[5]),
		ShmemRSS: n(m[6]), UID: uint32(n(m[7])), Pgtables: n(m[8]), OOMScoreAdj: int32(adj)}, true
}

// WaitKilledProcess waits for the kernel's "Killed process" line of pid.
func (k *KernelLog) WaitKilledProcess(t testing.TB, pid int, timeout time.Duration) KilledProcess {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if err := k.read(); err != nil {
			t.Fatalf("read the kernel log: %v", err)
		}
		for _, line := range k.lines {
			if kp, ok := ParseKilledProcess(line); ok && kp.PID == uint32(pid) {
				return kp
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"Killed process %d\" line in the kernel log in %v", pid, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
