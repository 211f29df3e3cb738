#!/usr/bin/env bash
# Fills a guest's root with what the real-cluster suite runs on a cgroup v2
# node: the cluster test binary, the kube binaries, containerd, runc and
# etcd from this host with the libraries they link, oomtrace's image, the
# test image's program, deploy/ where the tests find it, and the kernel
# modules containerd needs. run.sh calls it for its cluster suite.
#
#   internal/harness/kerneltest/cluster-root.sh ROOT MODULES
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$1 modules=$2

for v in OOMTRACE_KUBE_BIN OOMTRACE_IMAGE OOMTRACE_IMAGE_ARCHIVE OOMTRACE_HELM; do
	[ -n "${!v:-}" ] || { echo "cluster-root: $v is not set (make test-cluster sets it)" >&2; exit 2; }
done

mkdir -p "$root"/{kube,cluster,lib/modules,etc,var/log,src/internal/harness/clustertest}
# Static: the cluster suite, and ctrbin (the guest has no Go to build it).
CGO_ENABLED=0 go test -c -o "$root/tests/clustertest.test" ./internal/harness/clustertest
CGO_ENABLED=0 go build -trimpath -o "$root/cluster/ctrbin" ./internal/harness/critest/ctrbin
for b in kube-apiserver kubelet kube-controller-manager kube-scheduler; do
	cp "$OOMTRACE_KUBE_BIN/$b" "$root/kube/"
done
cp "$OOMTRACE_IMAGE_ARCHIVE" "$root/cluster/image.tar"
echo "$OOMTRACE_IMAGE" >"$root/cluster/image-name"
cp -r deploy "$root/src/deploy"
# The README's helm install command is what the suite runs, with helm
# (static, as make helm builds it).
cp README.md "$root/src/"
mkdir -p "$root/src/docs" && cp docs/events.schema.json docs/operating.md "$root/src/docs/"
cp "$OOMTRACE_HELM" "$root/cluster/helm"
cp "$modules"/overlay.ko "$root/lib/modules/"

# Debian's containerd, runc and etcd link libc (runc libseccomp too): each
# binary at its own path, each library where the loader looks for it.
for b in containerd containerd-shim-runc-v2 ctr runc etcd; do
	path=$(command -v "$b")
	mkdir -p "$root$(dirname "$path")"
	cp "$path" "$root$path"
	ldd "$path" | awk '/=> \// {print $3} /^\t\/[^ ]+/ {print $1}' | while read -r lib; do
		[ -e "$root$lib" ] && continue
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
done

# What the kubelet and containerd read of /etc on any node (a Debian
# userland has its own).
echo oomtrace-guest >"$root/etc/hostname"
printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
rm -f "$root/etc/resolv.conf" && : >"$root/etc/resolv.conf"
[ -e "$root/etc/passwd" ] && exit 0
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
printf 'hosts: files\n' >"$root/etc/nsswitch.conf"
