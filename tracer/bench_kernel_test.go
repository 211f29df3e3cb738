// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/oomtrace/oomtrace/internal/harness/benchinfo"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// benchEnv turns on TestBenchHotPath: `make bench` sets it.
const benchEnv = "OOMTRACE_BENCH"

// The bpftrace equivalent of oomtrace's mmap refusal hook, written the way
// such scripts usually are: arguments saved at entry, joined at exit.
const bpftraceJoin = `tracepoint:syscalls:sys_enter_mmap { @len[tid] = args->len; }
tracepoint:syscalls:sys_exit_mmap /@len[tid]/ {
	if (args->ret == -12) { printf("%d %s %llu\n", pid, comm, @len[tid]); }
	delete(@len[tid]);
}
`

// hotPathMode is one way to run the mmap loop.
type hotPathMode struct {
	name  string
	setup func(t *testing.T) (progs []*ebpf.Program, teardown func())
}

// TestBenchHotPath measures what the refusal hooks cost a program whose
// mmaps succeed: an mmap+munmap loop with no hook, an empty program on
// sys_exit_mmap (the floor), oomtrace, and a bpftrace enter/exit join, in
// one run, interleaved, median of several rounds. It prints a markdown table.
func TestBenchHotPath(t *testing.T) {
	testenv.RequirePrivileged(t)
	if os.Getenv(benchEnv) != "1" {
		t.Skip("benchmark: run with make bench")
	}
	testenv.RequirePrivileged(t)
	const calls, rounds = 200000, 7
	restore := setSysctl(t, "/proc/sys/kernel/bpf_stats_enabled", "0")
	defer restore()

	modes := []hotPathMode{
		{"no hook", func(*testing.T) ([]*ebpf.Program, func()) { return nil, func() {} }},
		{"empty program on sys_exit_mmap (floor)", setupEmpty},
		{"oomtrace (sys_exit_mmap, early return)", setupOomtrace},
		{"bpftrace sys_enter_mmap + sys_exit_mmap join", setupBpftrace},
	}
	wall := make([][]float64, len(modes))
	perRun := make([][]float64, len(modes))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for r := 0; r < rounds; r++ {
		for i, m := range modes {
			t.Logf("round %d: %s", r+1, m.name)
			progs, teardown := m.setup(t)
			mmapLoop(calls / 10) // warm up
			wall[i] = append(wall[i], mmapLoop(calls))
			if len(progs) > 0 {
				writeSysctl(t, "/proc/sys/kernel/bpf_stats_enabled", "1")
				before := progStats(t, progs)
				mmapLoop(calls)
				after := progStats(t, progs)
				writeSysctl(t, "/proc/sys/kernel/bpf_stats_enabled", "0")
				// BPF nanoseconds per mmap call, all programs summed.
				perRun[i] = append(perRun[i], float64(after.ns-before.ns)/float64(calls))
			}
			teardown()
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nmmap+munmap of 4 KiB, %d calls per run, median of %d rounds; %s\n\n", calls, rounds, benchinfo.Machine())
	b.WriteString("| hook on mmap | ns per mmap+munmap | wall overhead | BPF ns per mmap (kernel stats) | vs floor |\n")
	b.WriteString("|---|---:|---:|---:|---:|\n")
	base := median(wall[0])
	floor := median(perRun[1])
	for i, m := range modes {
		w := median(wall[i])
		over, bpfNs, vsFloor := "", "", ""
		if i > 0 {
			over = fmt.Sprintf("%+.1f%%", 100*(w-base)/base)
			bpfNs = fmt.Sprintf("%.0f", median(perRun[i]))
			vsFloor = fmt.Sprintf("%.2fx", median(perRun[i])/floor)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s |\n", m.name, w, over, bpfNs, vsFloor)
	}
	fmt.Fprintf(&b, "\nbpftrace join / oomtrace, BPF time per call: %.1fx\n", median(perRun[3])/median(perRun[2]))
	fmt.Println(b.String())
}

// mmapLoop maps and unmaps 4 KiB n times and returns ns per pair.
func mmapLoop(n int) float64 {
	start := time.Now()
	for i := 0; i < n; i++ {
		addr, _, errno := syscall.RawSyscall6(syscall.SYS_MMAP, 0, 4096, mmapProtRW, mmapPrivAnon, ^uintptr(0), 0)
		if errno == 0 {
			syscall.RawSyscall(syscall.SYS_MUNMAP, addr, 4096, 0)
		}
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

// setupEmpty attaches the floor: a program that returns at once (what
// clang makes of an empty C function: r0 = 0; exit), built here so that
// the shipped objects carry no program only benchmarks use.
func setupEmpty(t *testing.T) ([]*ebpf.Program, func()) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "sys_exit_mmap_empty",
		Type:         ebpf.TracePoint,
		License:      "Dual MIT/GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := link.Tracepoint("syscalls", "sys_exit_mmap", prog, nil)
	if err != nil {
		t.Fatal(err)
	}
	return []*ebpf.Program{prog}, func() { l.Close(); prog.Close() }
}

func setupOomtrace(t *testing.T) ([]*ebpf.Program, func()) {
	tr, err := New(Config{Refusals: true})
	if err != nil {
		t.Fatal(err)
	}
	var progs []*ebpf.Program
	for _, a := range tr.attachers() {
		for _, p := range a.progs {
			info, err := p.Info()
			if err == nil && info.Name == refusalProgSysExitMmap {
				progs = append(progs, p)
			}
		}
	}
	if len(progs) != 1 {
		t.Fatalf("found %d sys_exit_mmap programs in the tracer", len(progs))
	}
	return progs, func() { tr.Close() }
}

func setupBpftrace(t *testing.T) ([]*ebpf.Program, func()) {
	bin, err := exec.LookPath("bpftrace")
	if err != nil {
		t.Fatalf("bpftrace not installed: %v", err)
	}
	before := programIDs(t)
	script := filepath.Join(t.TempDir(), "join.bt")
	if err := os.WriteFile(script, []byte(bpftraceJoin), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	attaching := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Attaching") {
				close(attaching)
			}
		}
	}()
	select {
	case <-attaching:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("bpftrace did not attach within a minute")
	}
	// Attached once both programs are loaded and in use.
	var progs []*ebpf.Program
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		progs = progs[:0]
		for _, id := range programIDs(t) {
			if slices.Contains(before, id) {
				continue
			}
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				continue
			}
			if info, err := p.Info(); err == nil && strings.Contains(info.Name, "mmap") {
				progs = append(progs, p)
			} else {
				p.Close()
			}
		}
		if len(progs) == 2 {
			break
		}
	}
	if len(progs) != 2 {
		t.Fatalf("bpftrace loaded %d mmap programs, want 2", len(progs))
	}
	time.Sleep(200 * time.Millisecond)
	return progs, func() {
		for _, p := range progs {
			p.Close()
		}
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
	}
}

func programIDs(t *testing.T) []ebpf.ProgramID {
	var ids []ebpf.ProgramID
	id := ebpf.ProgramID(0)
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return ids
		}
		ids = append(ids, next)
		id = next
	}
}

type bpfStats struct{ ns, runs uint64 }

func progStats(t *testing.T, progs []*ebpf.Program) bpfStats {
	var s bpfStats
	for _, p := range progs {
		st, err := p.Stats()
		if err != nil {
			t.Fatal(err)
		}
		s.ns += uint64(st.Runtime.Nanoseconds())
		s.runs += st.RunCount
	}
	return s
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func setSysctl(t *testing.T, path, value string) (restore func()) {
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeSysctl(t, path, value)
	restore = func() { os.WriteFile(path, old, 0) }
	t.Cleanup(restore)
	return restore
}

func writeSysctl(t *testing.T, path, value string) {
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		t.Fatal(err)
	}
}
