// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/rlimit"
)

// DefaultRingBufferBytes holds about 1,200 OOM kill records: a burst of
// kills is read long before it fills.
const DefaultRingBufferBytes = 4 << 20

// ringBufferBytes sizes every ring buffer, by map name, in one place (the
// sizes in the C are only defaults). The OOM kills' is
// Config.RingBufferBytes instead.
var ringBufferBytes = map[string]uint32{
	// SIGTERMs and SIGKILLs to other processes: rare (processes being
	// stopped), but a burst of the node's signal budget fits: about 440
	// records of 1,176 bytes.
	oomtraceMapSignalEvents: 512 << 10,
	// Only the first refusal of each process, syscall and reason per
	// window is sent: about 840 records.
	refusalMapRefusalEvents: 1 << 20,
}

// sizeRingBuffers applies ringBufferBytes to the ring buffers of spec.
func sizeRingBuffers(spec *ebpf.CollectionSpec) {
	for name, ms := range spec.Maps {
		if n, ok := ringBufferBytes[name]; ok && ms.Type == ebpf.RingBuf {
			ms.MaxEntries = n
		}
	}
}

// VerifierLogEnv is the variable that, set to anything, makes the binary
// and the tests print the whole verifier log of a program the kernel
// refuses (Config.VerifierLog).
const VerifierLogEnv = "OOMTRACE_VERIFIER_LOG"

// DefaultRefusalWindow is how long repeats of a refusal are folded into one line.
const DefaultRefusalWindow = time.Second

// Config selects hooks and sizes. The zero value picks every hook
// automatically and does not watch commit refusals.
type Config struct {
	// DecisionHook is auto, fentry, kprobe or none (oom_kill_process).
	DecisionHook string
	// VictimHook is auto, tp_btf or tracepoint (mark_victim).
	VictimHook string
	// RingBufferBytes is the size of the OOM ring buffer: a power of two
	// and a multiple of the page size. 0 means DefaultRingBufferBytes.
	RingBufferBytes int
	// SignalNodeBudget bounds the task signal records a second across the
	// node past each target cgroup's first four (each has 32); 0 means
	// DefaultSignalNodeBudget.
	SignalNodeBudget uint32
	// GroupRecords is how many kills of one memory.oom.group decision
	// get a record; the rest are counted on the first one (Folded). 0
	// means DefaultGroupRecords.
	GroupRecords uint32

	// Refusals turns on the commit refusal hooks.
	Refusals bool
	// RefusalsOptional: when no refusal hook can attach (no tracefs, no
	// permission on it), run without refusals, with one warning, instead
	// of failing. For refusals on by default rather than asked for.
	RefusalsOptional bool
	// RefusalHook is auto, fexit, kretprobe or none (__vm_enough_memory).
	RefusalHook string
	// RefusalWindow folds repeats; 0 means DefaultRefusalWindow.
	RefusalWindow time.Duration

	// KernelBTF is a path to the kernel's BTF; empty means the running
	// kernel's /sys/kernel/btf/vmlinux.
	KernelBTF string
	// TracefsPath is where kprobe and classic tracepoint hooks expect
	// tracefs. Empty means /sys/kernel/tracing. It is mounted if absent.
	TracefsPath string
	// ProcfsPath is where the host's procfs is mounted; empty means /proc.
	ProcfsPath string
	// PinPath, on a bpffs, keeps the hooks attached and recording into
	// their ring buffers after the process ends, for the next one to
	// adopt (DefaultPinPath); empty: everything ends with the process.
	// /sys/fs/bpf is mounted if need be (PreparePinPath).
	PinPath string
	// PinOptional: when PinPath is not on a BPF filesystem, run unpinned
	// with one warning instead of failing. For pinning on by default
	// rather than asked for.
	PinOptional bool
	// Node is written into every event.
	Node string
	// VerifierLog receives the whole verifier log of a program the kernel
	// refuses; nil: only the error's summary.
	VerifierLog io.Writer
	// Logger receives hook selection and diagnostics; nil discards them.
	Logger *slog.Logger
}

// Validate reports the first setting of cfg that New would reject.
func (cfg Config) Validate() error {
	checks := []struct {
		what, v string
		allowed []string
	}{
		{"decision hook", cfg.DecisionHook, DecisionHookChoices},
		{"victim hook", cfg.VictimHook, VictimHookChoices},
		{"refusal hook", cfg.RefusalHook, RefusalHookChoices},
	}
	for _, c := range checks {
		if c.v == "" {
			continue
		}
		if !contains(c.allowed, c.v) {
			return fmt.Errorf("%s %q: must be one of %s", c.what, c.v, strings.Join(c.allowed, ", "))
		}
	}
	if cfg.RingBufferBytes != 0 {
		if err := CheckRingBufferBytes(cfg.RingBufferBytes); err != nil {
			return err
		}
	}
	if cfg.RefusalWindow < 0 {
		return fmt.Errorf("refusal window %v: must not be negative", cfg.RefusalWindow)
	}
	return nil
}

func contains(list []string, v string) bool {
	for _, a := range list {
		if a == v {
			return true
		}
	}
	return false
}

// CheckRingBufferBytes says whether n bytes can be the size of a ring
// buffer: a power of two of at least a page.
func CheckRingBufferBytes(n int) error {
	page := os.Getpagesize()
	if n < page || n&(n-1) != 0 {
		return fmt.Errorf("ring buffer size %d: must be a power of two of at least %d bytes", n, page)
	}
	return nil
}

// prepared is cfg checked, with its defaults filled in and its pin path
// made ready (or dropped, when optional and impossible), and its logger.
func (cfg Config) prepared() (Config, *slog.Logger, error) {
	if err := cfg.Validate(); err != nil {
		return cfg, nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.RingBufferBytes == 0 {
		cfg.RingBufferBytes = DefaultRingBufferBytes
	}
	if cfg.RefusalWindow == 0 {
		cfg.RefusalWindow = DefaultRefusalWindow
	}
	if cfg.ProcfsPath == "" {
		cfg.ProcfsPath = "/proc"
	}
	if cfg.PinPath != "" {
		if err := PreparePinPath(cfg.PinPath); err != nil {
			if !cfg.PinOptional {
				return cfg, nil, fmt.Errorf("pin: %w", err)
			}
			log.Warn("hooks not pinned: what happens while oomtrace is down is not recorded (the kernel's count still shows it)", "reason", err)
			cfg.PinPath = ""
		}
	}
	return cfg, log, nil
}

// collectionOptions are the options every load of this start shares.
func collectionOptions(cfg Config) (ebpf.CollectionOptions, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return ebpf.CollectionOptions{}, fmt.Errorf("remove memlock limit: %w", err)
	}
	// One decoding of the kernel's BTF for every load of this start (the
	// library decodes it again for each load otherwise), dropped with
	// the options when New returns.
	opts := ebpf.CollectionOptions{Cache: btf.NewCache()}
	if cfg.KernelBTF != "" {
		kernelTypes, err := btf.LoadSpec(cfg.KernelBTF)
		if err != nil {
			return opts, fmt.Errorf("load kernel BTF %s: %w", cfg.KernelBTF, err)
		}
		opts.Programs.KernelTypes = kernelTypes
	}
	return opts, nil
}

// tracefsExplainer mounts tracefs if need be (kprobes and classic
// tracepoints are found through it, and the library looks for it only
// once: before the first attempt) and returns what explains a missing
// hook: without tracefs it is tracefs's fault, and the one line the user
// sees says so and how to fix it (the per-hook reasons are in the log).
func tracefsExplainer(cfg Config, log *slog.Logger) func(error) error {
	tracefsErr := ensureTracefs(cfg.TracefsPath)
	if tracefsErr != nil {
		log.Warn("tracefs unavailable: kprobe and tracepoint hooks will fail", "err", tracefsErr)
	}
	return func(err error) error {
		var nh *NoHookError
		if tracefsErr == nil || !errors.As(err, &nh) {
			return err
		}
		hint := "mount tracefs (mount -t tracefs nodev " + DefaultTracefs + "; in a container, mount the host's)"
		if cfg.Refusals {
			hint += ", or run with --refusals=false (OOM kills need only tp_btf)"
		}
		nh.Detail = fmt.Sprintf(" without tracefs (%v); %s", tracefsErr, hint)
		return nh
	}
}
