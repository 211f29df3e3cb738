// Command oomtrace reports every kernel OOM kill on this host as one JSON
// object per line on stdout.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	flag "github.com/spf13/pflag"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/exporter"
	"github.com/oomtrace/oomtrace/tracer"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type options struct {
	output       string
	decisionHook string
	victimHook   string
	ringBuffer   int
	refusals     bool
	refusalHook  string
	refusalWin   time.Duration
	btfPath      string
	nodeName     string
	logLevel     string
	showVersion  bool
}

const defaultBTF = "/sys/kernel/btf/vmlinux"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process exit: 0 on a clean stop, 1 on a runtime
// failure, 2 on bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if opts.showVersion {
		fmt.Fprintln(stdout, "oomtrace", version)
		return 0
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.logLevel)); err != nil {
		fmt.Fprintf(stderr, "oomtrace: --log.level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var out exporter.Writer
	switch opts.output {
	case "json":
		out = exporter.NewJSON(stdout)
	case "text":
		out = exporter.NewText(stdout)
	default:
		fmt.Fprintf(stderr, "oomtrace: --output must be json or text, not %q\n", opts.output)
		return 2
	}

	cfg := tracer.Config{
		DecisionHook:    opts.decisionHook,
		VictimHook:      opts.victimHook,
		RingBufferBytes: opts.ringBuffer,
		Refusals:        opts.refusals,
		RefusalHook:     opts.refusalHook,
		RefusalWindow:   opts.refusalWin,
	}
	if opts.refusalWin <= 0 {
		fmt.Fprintf(stderr, "oomtrace: --refusal.window must be positive, not %v\n", opts.refusalWin)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 2
	}

	if err := checkPrivileges(); err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 1
	}
	if _, err := os.Stat(opts.btfPath); err != nil {
		fmt.Fprintf(stderr, "oomtrace: kernel BTF not found at %s (needs CONFIG_DEBUG_INFO_BTF=y or --btf.path): %v\n", opts.btfPath, errors.Unwrap(err))
		return 1
	}

	node := opts.nodeName
	if node == "" {
		node, _ = os.Hostname()
	}
	btfPath := opts.btfPath
	if btfPath == defaultBTF {
		btfPath = "" // the library finds the running kernel's BTF itself
	}
	cfg.KernelBTF, cfg.Node, cfg.Logger = btfPath, node, log
	t, err := tracer.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 1
	}
	defer t.Close()

	hooks := t.Hooks()
	decision := orNone(hooks.Decision)
	log.Info("oomtrace started", "version", version, "node", node,
		"decision_hook", decision, "victim_hook", hooks.Victim, "signal_hook", hooks.Signal,
		"refusal_hook", orNone(hooks.RefusalExact), "refusal_syscalls", len(hooks.RefusalSyscalls))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// Handlers are never called concurrently.
	var writeErr error
	write := func(err error) {
		if err != nil && writeErr == nil {
			// stdout is gone (closed pipe): stop.
			writeErr = err
			log.Error("cannot write events", "err", err)
			stop()
		}
	}
	err = t.Run(ctx, tracer.Handlers{
		OOMKill: func(ev event.OOMKill) {
			if writeErr == nil {
				write(out.WriteOOMKill(ev))
			}
		},
		CommitRefusal: func(ev event.CommitRefusal) {
			if writeErr == nil {
				write(out.WriteCommitRefusal(ev))
			}
		},
	})
	stats, statsErr := t.Stats()
	if statsErr == nil {
		log.Info("oomtrace stopped", "sent", stats.Sent, "lost", stats.Lost,
			"decoded", stats.Decoded, "decode_errors", stats.DecodeErrors, "exiting", stats.ExitingMarked,
			"refusals", stats.RefusalsFailed, "refusal_records", stats.RefusalsSent, "refusal_records_lost", stats.RefusalsLost)
	}
	if err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return 1
	}
	if writeErr != nil {
		return 1
	}
	return 0
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("oomtrace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: oomtrace [flags]

Reports every kernel OOM kill (one event per killed task) and every
overcommit refusal on this host as JSON lines on stdout. Runs until SIGINT
or SIGTERM. Needs root, or CAP_BPF and CAP_PERFMON, and a kernel with BTF.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.output, "output", "json", "event format: json (one object per line) or text (one readable line per event)")
	fs.StringVar(&o.decisionHook, "hook.decision", tracer.HookAuto, "hook for the OOM decision on oom_kill_process: auto, fentry, kprobe or none")
	fs.StringVar(&o.victimHook, "hook.victim", tracer.HookAuto, "hook for each killed task on mark_victim: auto, tp_btf or tracepoint")
	fs.IntVar(&o.ringBuffer, "ringbuf.bytes", tracer.DefaultRingBufferBytes, "size of the OOM event ring buffer in bytes (a power of two)")
	fs.BoolVar(&o.refusals, "refusals", true, "report overcommit refusals (ENOMEM from mmap, brk, mremap, mprotect, fork, clone, shmget, execve)")
	fs.StringVar(&o.refusalHook, "hook.refusal", tracer.HookAuto, "hook for exact commit refusals on __vm_enough_memory: auto, fexit, kretprobe or none")
	fs.DurationVar(&o.refusalWin, "refusal.window", tracer.DefaultRefusalWindow, "fold repeated refusals of one process, syscall and reason within this window into one line")
	fs.StringVar(&o.btfPath, "btf.path", defaultBTF, "kernel BTF file")
	fs.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "node name written into every event (default $NODE_NAME, else the host name)")
	fs.StringVar(&o.logLevel, "log.level", "info", "log level on stderr: debug, info, warn or error")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "oomtrace: %v\n", err)
			fs.Usage()
		}
		return o, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "oomtrace: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return o, errors.New("unexpected argument")
	}
	return o, nil
}
