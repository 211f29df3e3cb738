#!/usr/bin/env bash
# Runs the privileged test suite inside a stock Debian kernel under qemu
# (software emulation): a kernel with kprobes, fentry/fexit, BTF and pure
# cgroup v2, where the richest hooks attach. Fails unless the guest's test
# exit code comes back 0; a hang or a crash is a failure, with the serial log.
#
#   internal/harness/kerneltest/run.sh [stable|backports|oldstable] [kernel|cluster]
#                 the kernel line: Debian 12's own cloud kernel, the newer
#                 one from bookworm-backports, or Debian 11's 5.10 (the two
#                 read through a private apt state, the host's sources are
#                 left alone); and the suite:
#                 the tracer's and the daemon's tests (kernel), or the
#                 real-cluster suite on a cgroup v2 node (cluster: the
#                 kubelet, containerd, runc and the control plane in the
#                 guest; needs OOMTRACE_KUBE_BIN, OOMTRACE_IMAGE,
#                 OOMTRACE_IMAGE_ARCHIVE and OOMTRACE_HELM as make
#                 test-cluster-v2 sets them), or the same suite on a
#                 systemd node (systemd: a Debian userland built from
#                 Debian's packages, systemd as PID 1, containerd and the
#                 kubelet as systemd units with the systemd cgroup driver)
#   KERNEL_META   meta-package naming the kernel line (linux-image-cloud-amd64)
#   TESTRUN       -test.run filter for the guest (all tests)
#   GUEST_TIMEOUT seconds before the guest counts as hung (1500; cluster 3600)
set -euo pipefail
cd "$(dirname "$0")/../../.."

LINE=${1:-stable}
SUITE=${2:-kernel}
META=${KERNEL_META:-linux-image-cloud-amd64}
CACHE=${OOMTRACE_KERNEL_CACHE:-$PWD/.cache/kernels}
TIMEOUT=${GUEST_TIMEOUT:-$([ "$SUITE" = kernel ] && echo 1500 || echo 3600)}
# Without CMPXCHG16B: this qemu's TCG mis-emulates the gs-relative
# cmpxchg16b that SLUB uses since 6.8, and such kernels die of a double
# fault within seconds. Without the feature they take the plain path.
CPU=${GUEST_CPU:-qemu64,-cx16}
# One host thread for all vCPUs: multi-threaded TCG lets a vCPU run kernel
# text that another is live-patching (static keys via int3, which enabling
# syscall tracepoints does), and 6.12 guests then die of an int3 Oops. The
# cluster suite (a control plane, a kubelet, containerd: CPU-bound under
# emulation) runs on the stable line with one host thread per vCPU, which
# 6.1 survives, in half the time.
if [ "$SUITE" != kernel ] && [ "$LINE" = stable ]; then
	ACCEL=${GUEST_ACCEL:-tcg,thread=multi}
else
	ACCEL=${GUEST_ACCEL:-tcg,thread=single}
fi
export PATH="/usr/local/go/bin:$PATH"

if ! command -v qemu-system-x86_64 >/dev/null || [ ! -x /bin/busybox ] || ! command -v cpio >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		qemu-system-x86 busybox-static cpio >/dev/null
fi

# apt options for the kernel line: none for stable; a private sources list
# and package lists for backports.
apt_opts=()
case "$LINE" in
stable) ;;
backports | oldstable)
	state="$CACHE/apt-$LINE"
	mkdir -p "$state/lists/partial"
	if [ "$LINE" = backports ]; then
		echo "deb http://deb.debian.org/debian bookworm-backports main" >"$state/sources.list"
	else
		# Debian 11's 5.10, with its security updates: the oldest kernel
		# line oomtrace is tested on.
		printf '%s\n' "deb http://deb.debian.org/debian bullseye main" \
			"deb http://security.debian.org/debian-security bullseye-security main" >"$state/sources.list"
	fi
	apt_opts=(-o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$state/lists")
	;;
*)
	echo "unknown kernel line $LINE: stable, backports or oldstable" >&2
	exit 2
	;;
esac

# The numbered package changes with every security update: resolve it
# through the meta-package, and cache what was downloaded.
resolve() { { apt-cache "${apt_opts[@]}" depends "$META" 2>/dev/null || true; } | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
pkg=$(resolve)
if [ -z "$pkg" ] || [ "$LINE" != stable ]; then
	apt-get "${apt_opts[@]}" update -qq
	pkg=$(resolve)
fi
[ -n "$pkg" ] || { echo "cannot resolve $META to a kernel package" >&2; exit 1; }
kernel="$CACHE/$pkg/vmlinuz"
# The modules the cluster suite loads (containerd's overlayfs snapshotter)
# and the kernel suite's swap (zram, its allocator and its compressors:
# 6.12's zram links lz4's as well),
# kept beside the kernel, uncompressed for busybox's insmod, in the order
# they load. One a kernel has built in is not there.
modules=(kernel/fs/overlayfs/overlay.ko kernel/crypto/lzo-rle.ko kernel/lib/lz4/lz4_compress.ko kernel/lib/lz4/lz4hc_compress.ko
	kernel/mm/zsmalloc.ko kernel/drivers/block/zram/zram.ko)
if [ ! -f "$kernel" ] || [ "$(cat "$CACHE/$pkg/modules/.list" 2>/dev/null)" != "${modules[*]}" ]; then
	dl=$(mktemp -d)
	(cd "$dl" && apt-get "${apt_opts[@]}" download -qq "$pkg")
	dpkg-deb -x "$dl"/*.deb "$dl/x"
	rm -rf "$CACHE/$pkg/modules"
	mkdir -p "$CACHE/$pkg/modules"
	for m in "${modules[@]}"; do
		src=$(ls "$dl"/x/lib/modules/*/"$m"* 2>/dev/null | head -1 || true)
		[ -n "$src" ] || continue
		case "$src" in
		*.xz) xz -dc "$src" ;;
		*.zst) zstd -dcq "$src" ;;
		*) cat "$src" ;;
		esac >"$CACHE/$pkg/modules/$(basename "$m")"
	done
	echo "${modules[*]}" >"$CACHE/$pkg/modules/.list"
	cp "$dl"/x/boot/vmlinuz-* "$kernel.tmp" && mv "$kernel.tmp" "$kernel"
	rm -rf "$dl"
fi
# The systemd node has kmod: every module of the kernel for modprobe
# (zram for the swap its scenarios use; the node runs depmod).
modtree="$CACHE/$pkg/lib-modules.tar"
if [ "$SUITE" = systemd ] && [ ! -s "$modtree" ]; then
	dl=$(mktemp -d)
	(cd "$dl" && apt-get "${apt_opts[@]}" download -qq "$pkg")
	dpkg-deb -x "$dl"/*.deb "$dl/x"
	tar -C "$dl/x/lib" -cf "$modtree.tmp" modules && mv "$modtree.tmp" "$modtree"
	rm -rf "$dl"
fi
echo "guest kernel: $pkg, suite: $SUITE"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"
if [ "$SUITE" = systemd ]; then
	# Debian's userland first: the rest goes into it.
	tar -xf "$(bash internal/harness/kerneltest/systemd/debian-root.sh "$CACHE")" -C "$root"
	tar -xf "$modtree" -C "$root/usr/lib"
fi
mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,tests}
cp /bin/busybox "$root/bin/busybox"
cp internal/harness/kerneltest/init "$root/init"
chmod +x "$root/init"
mem=3072
case "$SUITE" in
kernel)
	# Static test binaries: the guest has no libc.
	CGO_ENABLED=0 go test -c -o "$root/tests/tracer.test" ./tracer
	CGO_ENABLED=0 go test -c -o "$root/tests/oomtrace.test" ./cmd/oomtrace
	# Swap for the tests that need it (zram), where the kernel has it.
	mkdir -p "$root/lib/modules"
	for m in lzo-rle lz4_compress lz4hc_compress zsmalloc zram; do
		[ ! -f "$CACHE/$pkg/modules/$m.ko" ] || cp "$CACHE/$pkg/modules/$m.ko" "$root/lib/modules/"
	done
	;;
cluster | systemd)
	bash internal/harness/kerneltest/cluster-root.sh "$root" "$CACHE/$pkg/modules"
	# The control plane, the kubelet and the scenarios' pods (1.5 GiB at
	# most at once) beside the image in memory.
	mem=8192
	if [ "$SUITE" = systemd ]; then
		# The suite as a unit of the node; the node's own services
		# that would compete with it masked (the suite starts its own
		# containerd and etcd, and earlyoom when it tests it).
		units="$root/etc/systemd/system"
		cp internal/harness/kerneltest/systemd/oomtrace-tests.service "$units/"
		ln -sf ../oomtrace-tests.service "$units/multi-user.target.wants/oomtrace-tests.service"
		install -m 0755 internal/harness/kerneltest/systemd/oomtrace-tests "$root/usr/local/bin/oomtrace-tests"
		# oomtrace where deploy/systemd/oomtrace.service runs it.
		CGO_ENABLED=0 go build -trimpath -o "$root/usr/local/bin/oomtrace" ./cmd/oomtrace
		for u in containerd.service etcd.service earlyoom.service getty@tty1.service serial-getty@ttyS0.service \
			apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
			ln -sf /dev/null "$units/$u"
		done
	fi
	;;
*)
	echo "unknown suite $SUITE: kernel, cluster or systemd" >&2
	exit 2
	;;
esac
# Uncompressed: the cluster's binaries are hundreds of MiB, and inflating
# them under emulation costs more than reading them.
(cd "$root" && find . | cpio -o -H newc 2>/dev/null) >"$work/initrd"

# Words of the command line the kernel does not know reach /init as
# environment variables (no dots); oomtrace.guest=1 marks the guest for the
# tests that must never run on a host (a global OOM).
log="$PWD/bin/kerneltest-$LINE-$SUITE.log"
mkdir -p bin
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -accel "$ACCEL" -cpu "$CPU" -m "$mem" -smp 2 -nodefaults -display none -no-reboot \
	-serial stdio -serial "file:$work/result" \
	-kernel "$kernel" -initrd "$work/initrd" \
	-append "console=ttyS0 panic=-1 quiet oomtrace.guest=1 SUITE=$SUITE TESTRUN=${TESTRUN:-.} TESTTIMEOUT=$((TIMEOUT / 60 - 2))m" \
	</dev/null >"$work/serial.log" 2>&1 &
qemu_pid=$!
# Progress while the guest runs (minutes under emulation): each test
# binary as it starts, each top-level test as it ends.
tail -n +1 -f --pid="$qemu_pid" "$work/serial.log" 2>/dev/null | tr -d '\r' |
	grep --line-buffered -aE $'^(\x16)?--- (PASS|FAIL|SKIP): Test[^/ ]* |^=== /tests/' |
	sed -u $'s/^\x16//; s/^/  guest: /' &
progress=$!
wait "$qemu_pid"
qemu=$?
wait "$progress" 2>/dev/null
tr -d '\r' <"$work/serial.log" >"$log"
result=$(tr -d '\r' <"$work/result" 2>/dev/null | awk '/^RESULT / {print $2}')

# The guest's go test output, per test binary, as go test -json events:
# one summary with every failure's output and every skip's reason.
awk -v dir="$work" '/^=== \/tests\/.*\.test$/ {f = dir "/" substr($2, 8) ".out"; next} f {print > f}' "$log"
for out in "$work"/*.test.out; do
	[ -e "$out" ] || continue
	name=$(basename "$out" .test.out)
	go tool test2json -t -p "guest/$name" <"$out"
done | go run ./internal/harness/testsummary -title "guest $pkg" \
	-skips internal/harness/testsummary/skips.txt -run "$(case "$SUITE" in cluster) echo cluster-v2 ;; systemd) echo cluster-systemd ;; *) echo "guest-$LINE" ;; esac)"
summary=$?
set -e
echo "full guest log: $log"

if [ "$qemu" = 124 ]; then
	tail -n 60 "$log"
	echo "guest hung: no result after ${TIMEOUT}s" >&2
	exit 1
fi
if [ -z "$result" ]; then
	tail -n 60 "$log"
	echo "guest crashed: no result (qemu exit $qemu)" >&2
	exit 1
fi
if [ "$result" != 0 ] || [ "$summary" != 0 ]; then
	echo "guest tests failed (exit $result) on $pkg" >&2
	exit 1
fi
echo "guest tests passed on $pkg"
