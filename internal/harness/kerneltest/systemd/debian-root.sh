#!/usr/bin/env bash
# Builds, once, the Debian userland of the systemd node: Debian 12's
# systemd as PID 1, dbus, journald, containerd, runc, etcd, systemd-oomd
# and earlyoom, from Debian's packages (mmdebstrap, no running system
# needed), as a tarball cached by its package list. Prints its path.
#
#   internal/harness/kerneltest/systemd/debian-root.sh CACHE_DIR
set -euo pipefail
cache=$1
packages=systemd-sysv,dbus,systemd-oomd,earlyoom,containerd,runc,etcd-server,iproute2,kmod,procps,util-linux
key=$(echo "bookworm $packages" | sha256sum | cut -c1-12)
out="$cache/debian-root-$key.tar"
if [ ! -s "$out" ]; then
	if ! command -v mmdebstrap >/dev/null; then
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
	fi
	mkdir -p "$cache"
	rm -rf "$out.tmp"
	# The format said: mmdebstrap takes a name not ending in .tar for a
	# directory.
	mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" bookworm "$out.tmp" >&2
	mv "$out.tmp" "$out"
fi
echo "$out"
