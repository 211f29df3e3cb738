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
			k.lines = append(k.lines, unescapeKmsg(text))
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

// ReportTask is one row of the kernel's "Tasks state" table.
type ReportTask struct {
	PID, UID, TGID                           uint32
	TotalVM, RSS, RSSAnon, RSSFile, RSSShmem uint64 // pages
	PgtablesBytes, SwapEnts                  uint64
	OOMScoreAdj                              int32
	Name                                     string
}

var (
	killedRe = regexp.MustCompile(`Killed process (\d+) \(`)
	// [  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name
	taskRe = regexp.MustCompile(`^\[\s*(\d+)\]\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(-?\d+)\s+(.*)$`)
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
		if m := taskRe.FindStringSubmatch(line); m != nil {
			u := func(i int) uint64 { v, _ := strconv.ParseUint(m[i], 10, 64); return v }
			adj, _ := strconv.ParseInt(m[11], 10, 32)
			r.Tasks[uint32(u(1))] = ReportTask{PID: uint32(u(1)), UID: uint32(u(2)), TGID: uint32(u(3)), TotalVM: u(4), RSS: u(5),
				RSSAnon: u(6), RSSFile: u(7), RSSShmem: u(8), PgtablesBytes: u(9), SwapEnts: u(10), OOMScoreAdj: int32(adj), Name: m[12]}
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
