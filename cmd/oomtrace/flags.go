// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	flag "github.com/spf13/pflag"

	"github.com/oomtrace/oomtrace/internal/correlate"
	"github.com/oomtrace/oomtrace/internal/cri"
	"github.com/oomtrace/oomtrace/internal/memwatch"
	"github.com/oomtrace/oomtrace/internal/nodememory"
	"github.com/oomtrace/oomtrace/internal/postmortem"
	"github.com/oomtrace/oomtrace/tracer"
)

// options are the settings of one run, from the flags and their
// environment twins.
type options struct {
	output       string
	decisionHook string
	victimHook   string
	ringBuffer   int
	refusals     bool
	// refusalsAsked: --refusals or --hook.refusal set by the user (flag
	// or environment); refusals are then required, not best effort.
	refusalsAsked bool
	pin           bool
	noPin         bool
	pinPath       string
	// pinAsked: --pin or --pin.path set by the user; pinning is then
	// required, not best effort. pinSet: --pin itself.
	pinAsked    bool
	pinSet      bool
	refusalHook string
	refusalWin  time.Duration
	btfPath     string
	nodeName    string
	kubePod     string
	logLevel    string
	logFormat   string
	level       slog.Level // logLevel, parsed by validate
	showVersion bool
	listenAddr  string
	probeAddr   string
	metricsPath string
	webConfig   string
	memoryLimit int64
	// maxProcs is --runtime.gomaxprocs; maxProcsAsked: set by the user,
	// or GOMAXPROCS in the environment (which then wins over the default).
	maxProcs        int
	maxProcsAsked   bool
	cpuProfile      string
	retention       time.Duration
	maxSeries       int
	procfs          string
	queueSize       int
	criEndpoint     string
	runDir          string
	criRetention    time.Duration
	namespaces      []string
	pods            []string
	evictionHard    string
	enforceAlloc    []string
	kubeletCfg      string
	kubeletCfgDir   string
	kubepods        string
	sampleEvery     time.Duration
	kubeconfig      string
	corrWindow      time.Duration
	kubeEventsEnded bool
	kubeEvents      bool
	containerCheck  time.Duration
	pressureEvery   time.Duration
	pmMemoryStat    bool
	pmTopTasks      int
}

const defaultBTF = "/sys/kernel/btf/vmlinux"

const usageHeader = `Usage: oomtrace [flags]
       oomtrace demo    one OOM kill in a 64 MiB cgroup of its own, and the event (root)

Reports every kernel OOM kill (one event per killed task) and every
overcommit refusal on this host as JSON lines on stdout. Runs until SIGINT
or SIGTERM. Needs root, or CAP_BPF and CAP_PERFMON, and a kernel with BTF;
commit refusals also need tracefs (without it they are skipped, with a
warning, unless --refusals=true was given).
Serves Prometheus metrics on --web.listen-address.

Every flag can also be set in the environment: OOMTRACE_ and the flag's
name in capitals with . and - as _, e.g. OOMTRACE_WEB_LISTEN_ADDRESS.

Flags:
`

// defineFlags registers every flag, in the order --help lists them.
func defineFlags(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.output, "output", "json", "event format: json (one object per line) or text (one readable line per event)")
	fs.StringVar(&o.decisionHook, "hook.decision", tracer.HookAuto, "hook for the OOM decision on oom_kill_process: auto, fentry, kprobe or none")
	fs.StringVar(&o.victimHook, "hook.victim", tracer.HookAuto, "hook for each killed task on mark_victim: auto, tp_btf or tracepoint")
	fs.IntVar(&o.queueSize, "output.queue", 8192, "events waiting for stdout at most; beyond, dropped and counted")
	fs.IntVar(&o.ringBuffer, "ringbuf.bytes", tracer.DefaultRingBufferBytes, "size of the OOM event ring buffer in bytes (a power of two)")
	fs.BoolVar(&o.refusals, "refusals", true, "report overcommit refusals (ENOMEM from mmap, brk, mremap, fork and more); set explicitly, a missing hook is an error")
	fs.StringVar(&o.refusalHook, "hook.refusal", tracer.HookAuto, "hook for exact commit refusals on __vm_enough_memory: auto, fexit, kretprobe or none")
	fs.DurationVar(&o.refusalWin, "refusal.window", tracer.DefaultRefusalWindow, "fold repeated refusals of one process, syscall and reason within this window into one line")
	fs.BoolVar(&o.pin, "pin", true, "keep the hooks recording while oomtrace is down, pinned under --pin.path; set explicitly, no BPF filesystem is an error")
	fs.BoolVar(&o.noPin, "no-pin", false, "the hooks end with the process (--pin=false)")
	fs.StringVar(&o.pinPath, "pin.path", tracer.DefaultPinPath, "where the hooks are pinned, on a BPF filesystem; oomtrace unpin removes them")
	fs.StringVar(&o.procfs, "path.procfs", "/proc", "the host's procfs (in a container: the host's /proc mounted, with hostPID)")
	fs.StringVar(&o.btfPath, "btf.path", defaultBTF, "kernel BTF file")
	fs.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "node name written into every event (default $NODE_NAME, else the host name)")
	fs.StringVar(&o.logLevel, "log.level", "info", "log level on stderr: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log.format", "text", "log format on stderr: text (logfmt; logfmt is accepted too, as node_exporter takes it) or json (one object per line, for log shippers)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.StringVar(&o.listenAddr, "web.listen-address", ":9808", "address for /metrics, /healthz and /readyz; empty to serve nothing")
	fs.StringVar(&o.probeAddr, "web.probe-address", "", "a second address for /healthz and /readyz only, plain HTTP, e.g. 127.0.0.1:9809 for the kubelet's probes where no pod can reach them; empty: none")
	fs.StringVar(&o.metricsPath, "web.telemetry-path", "/metrics", "path of the Prometheus metrics")
	fs.StringVar(&o.webConfig, "web.config.file", "", "exporter-toolkit web configuration file (TLS, basic authentication); empty: plain HTTP")
	fs.StringVar(&o.criEndpoint, "cri.endpoint", "", "the container runtime's CRI socket for names; empty: found below --path.run; none: cgroup paths only")
	fs.StringVar(&o.runDir, "path.run", "/run", "the host's /run, where container runtime sockets are looked for")
	fs.DurationVar(&o.criRetention, "cri.retention", cri.DefaultRetention, "keep naming containers this long after the runtime stops listing them")
	fs.StringArrayVar(&o.namespaces, "filter.namespace", nil, "write only events of pods in this namespace (repeatable); metrics still count all")
	fs.StringArrayVar(&o.pods, "filter.pod", nil, "write only events of this pod, NAME or NAMESPACE/NAME (repeatable); metrics still count all")
	fs.StringVar(&o.evictionHard, "eviction-hard", nodememory.DefaultEvictionHard, "the kubelet's hard eviction thresholds, in its --eviction-hard syntax")
	fs.StringSliceVar(&o.enforceAlloc, "enforce-node-allocatable", []string{nodememory.EnforcePods}, "the kubelet's --enforce-node-allocatable (pods, or none)")
	fs.StringVar(&o.kubeletCfg, "kubelet.config", "", "the kubelet's KubeletConfiguration file, read instead of the eviction flags when it is there")
	fs.StringVar(&o.kubeletCfgDir, "kubelet.config-dir", "", "the kubelet's --config-dir, whose *.conf files are merged over --kubelet.config")
	fs.StringVar(&o.kubepods, "kubepods-cgroup", "", "the kubepods cgroup in the memory hierarchy; empty: found")
	fs.DurationVar(&o.sampleEvery, "node.sample-interval", time.Second, "read the node's memory signals this often (and at every kernel event)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for the cluster view; empty: in-cluster in a pod, else none; none: off")
	fs.StringVar(&o.kubePod, "kube.pod", ownPod(), "this oomtrace's own pod, NAMESPACE/NAME (default $POD_NAMESPACE/$POD_NAME): at stop, when the DaemonSet that owns it is gone or being deleted (an uninstall, not a restart or an upgrade), the pinned hooks are detached; empty: they stay pinned at every stop")
	fs.BoolVar(&o.kubeEvents, "kube.events", false, "write a Warning Event on the pod of every kernel OOM kill")
	fs.BoolVar(&o.kubeEventsEnded, "kube.events.container-kills", true, "with --kube.events, an Event also for a kill that ended its container (OOMKillContainer); false leaves those to the kubelet (its OOMKilled status, and its own OOM Event once it writes one: kubernetes#136092)")
	fs.DurationVar(&o.containerCheck, "container.check-delay", 2*time.Second, "hold a container's kill this long, then say whether the container survived it; 0: no check")
	fs.DurationVar(&o.pressureEvery, "pressure.interval", memwatch.DefaultInterval, "read the usage of every memory cgroup with a limit this often, and write cgroup_memory_pressure lines when one runs short before a kill; 0: off")
	fs.BoolVar(&o.pmMemoryStat, "postmortem.memory-stat", true, "with every kill, the OOM domain's memory by kind")
	fs.IntVar(&o.pmTopTasks, "postmortem.top-tasks", postmortem.DefaultTopTasks, "with every kill, this many of the OOM domain's largest processes; 0: none")
	fs.DurationVar(&o.corrWindow, "correlation.window", correlate.DefaultWindow, "a kernel OOM kill and a kubelet eviction of one pod this close are linked")
	fs.StringVar(&o.cpuProfile, "debug.cpu-profile", "", "write a Go CPU profile of the whole run to this file (for make bench); empty: none")
	fs.Int64Var(&o.memoryLimit, "memory.limit", 0, "oomtrace's container memory limit in bytes, the Go heap kept below 90% of it; 0: none")
	fs.IntVar(&o.maxProcs, "runtime.gomaxprocs", 1, "CPUs the Go runtime runs oomtrace's code on at once (GOMAXPROCS); 0: Go's choice (the CPUs, or the container's CPU limit)")
	fs.DurationVar(&o.retention, "metrics.retention", time.Hour, "drop the series of a pod or container that has not moved for this long; 0 keeps them forever")
	fs.IntVar(&o.maxSeries, "metrics.max-series", 10000, "at most this many series per per-pod metric; more are counted in its _overflow series; 0: no cap")
}

// validate checks, once and in one table, what the flags' types do not:
// the first rule broken is the error, named by its flag.
func (o *options) validate() error {
	checks := []struct {
		flag string
		err  error
	}{
		{"output", oneOf(o.output, "json", "text")},
		{"hook.decision", oneOf(o.decisionHook, tracer.DecisionHookChoices...)},
		{"hook.victim", oneOf(o.victimHook, tracer.VictimHookChoices...)},
		{"hook.refusal", oneOf(o.refusalHook, tracer.RefusalHookChoices...)},
		{"output.queue", atLeastOne(o.queueSize)},
		{"ringbuf.bytes", tracer.CheckRingBufferBytes(o.ringBuffer)},
		{"log.level", o.level.UnmarshalText([]byte(o.logLevel))},
		{"log.format", oneOf(o.logFormat, "text", "logfmt", "json")},
		{"web.telemetry-path", absolutePath(o.metricsPath)},
		{"pin.path", absolutePath(o.pinPath)},
		{"no-pin", notBoth(o.noPin, o.pin && o.pinSet, "--pin")},
		{"web.config.file", webConfigFile(o.webConfig)},
		{"metrics.retention", notNegative(o.retention)},
		{"metrics.max-series", notNegativeInt(o.maxSeries)},
		{"container.check-delay", notNegative(o.containerCheck)},
		{"pressure.interval", notNegative(o.pressureEvery)},
		{"postmortem.top-tasks", notNegativeInt(o.pmTopTasks)},
		{"memory.limit", notNegativeInt64(o.memoryLimit)},
		{"runtime.gomaxprocs", notNegativeInt(o.maxProcs)},
		{"refusal.window", positive(o.refusalWin)},
		{"cri.retention", positive(o.criRetention)},
		{"node.sample-interval", positive(o.sampleEvery)},
		{"correlation.window", positive(o.corrWindow)},
		{"filter.pod", podNames(o.pods)},
		{"kube.pod", namespacedName(o.kubePod)},
	}
	for _, c := range checks {
		if c.err != nil {
			return fmt.Errorf("--%s %w", c.flag, c.err)
		}
	}
	return nil
}

// The rules of validate; each error reads after the flag's name.

func oneOf(v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	if len(allowed) == 2 {
		return fmt.Errorf("must be %s or %s, not %q", allowed[0], allowed[1], v)
	}
	return fmt.Errorf("must be one of %s, not %q", strings.Join(allowed, ", "), v)
}

func notBoth(a, b bool, other string) error {
	if a && b {
		return fmt.Errorf("must not be given with %s", other)
	}
	return nil
}

func atLeastOne(n int) error {
	if n < 1 {
		return fmt.Errorf("must be at least 1, not %d", n)
	}
	return nil
}

func webConfigFile(path string) error {
	if path == "" {
		return nil
	}
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("must be a valid web configuration file: %w", err)
	}
	return nil
}

func notNegativeInt64(n int64) error {
	if n < 0 {
		return fmt.Errorf("must not be negative, not %d", n)
	}
	return nil
}

func notNegativeInt(n int) error {
	if n < 0 {
		return fmt.Errorf("must not be negative, not %d", n)
	}
	return nil
}

func absolutePath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("must start with /, not %q", p)
	}
	return nil
}

func notNegative(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("must not be negative, not %v", d)
	}
	return nil
}

func positive(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("must be positive, not %v", d)
	}
	return nil
}

func podNames(pods []string) error {
	for _, p := range pods {
		if ns, name, ok := strings.Cut(p, "/"); p == "" || ok && (ns == "" || name == "" || strings.Contains(name, "/")) {
			return fmt.Errorf("must be NAME or NAMESPACE/NAME, not %q", p)
		}
	}
	return nil
}

// namespacedName: empty or NAMESPACE/NAME.
func namespacedName(v string) error {
	if ns, name, ok := strings.Cut(v, "/"); v != "" && (!ok || ns == "" || name == "" || strings.Contains(name, "/")) {
		return fmt.Errorf("must be NAMESPACE/NAME, not %q", v)
	}
	return nil
}

// ownPod is the pod the downward API names in the environment (the
// manifests set POD_NAMESPACE and POD_NAME); empty outside one.
func ownPod() string {
	ns, name := os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")
	if ns == "" || name == "" {
		return ""
	}
	return ns + "/" + name
}

// envName is the environment twin of a flag.
func envName(flagName string) string {
	return "OOMTRACE_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(flagName))
}

// parseFlags reads the environment, then args, and validates the result.
// Every error is printed to stderr already; flag.ErrHelp means --help.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("oomtrace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHeader)
		fs.PrintDefaults()
	}
	defineFlags(fs, &o)

	// Every flag has an environment twin, OOMTRACE_ and the flag's name in
	// capitals with . and - as _ (OOMTRACE_WEB_LISTEN_ADDRESS). A flag on
	// the command line wins.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", envErr)
		return o, envErr
	}
	_, refusalsEnv := os.LookupEnv(envName("refusals"))
	_, hookEnv := os.LookupEnv(envName("hook.refusal"))
	_, pinEnv := os.LookupEnv(envName("pin"))
	_, pinPathEnv := os.LookupEnv(envName("pin.path"))
	_, maxProcsEnv := os.LookupEnv(envName("runtime.gomaxprocs"))
	if err := fs.Parse(args); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "oomtrace: %v\n", err)
			fs.Usage()
		}
		return o, err
	}
	o.refusalsAsked = refusalsEnv || hookEnv || fs.Changed("refusals") || fs.Changed("hook.refusal")
	o.pinSet = pinEnv || fs.Changed("pin")
	o.pinAsked = o.pinSet || pinPathEnv || fs.Changed("pin.path")
	o.maxProcsAsked = maxProcsEnv || fs.Changed("runtime.gomaxprocs")
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "oomtrace: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return o, errors.New("unexpected argument")
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "oomtrace: %v\n", err)
		return o, err
	}
	if o.noPin {
		o.pin = false
	}
	return o, nil
}

// kubeletSettings are the kubelet's hard thresholds and its kubepods
// cgroup: from its config file when given and present, else
// --eviction-hard and --enforce-node-allocatable. A config file that is
// not there, or empty, is a warning, not an error: a DaemonSet names one
// path for every node, and only some kubelets (kubeadm's) keep their
// config there.
func kubeletSettings(opts options, log *slog.Logger) (nodememory.KubeletConfig, error) {
	if opts.kubeletCfg != "" {
		kc, err := nodememory.ReadKubeletConfig(opts.kubeletCfg, opts.kubeletCfgDir)
		if err == nil {
			return kc, nil
		}
		switch {
		case errors.Is(err, nodememory.ErrEmptyConfig):
			// EKS, GKE and AKS keep it elsewhere: the mount made it.
			log.Warn("kubelet config is empty, not the kubelet's; using --eviction-hard and --enforce-node-allocatable: point --kubelet.config (the chart's kubeletConfig) at this node's kubelet config",
				"path", opts.kubeletCfg)
		case errors.Is(err, os.ErrNotExist):
			log.Warn("kubelet config not found; using --eviction-hard and --enforce-node-allocatable", "path", opts.kubeletCfg)
		default:
			return kc, err
		}
	}
	th, err := nodememory.ParseEvictionHard(opts.evictionHard, opts.enforceAlloc)
	if err != nil {
		return nodememory.KubeletConfig{}, fmt.Errorf("--eviction-hard: %w", err)
	}
	return nodememory.KubeletConfig{Thresholds: th, EnforceNodeAllocatable: opts.enforceAlloc}, nil
}
