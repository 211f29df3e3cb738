#!/usr/bin/env bash
# Builds etcd of one pinned version from the Go module proxy, once, and
# caches it keyed by version: Debian's etcd-server (3.4) lacks the watch
# progress requests the API server's streaming lists (watch-list, on by
# default in client-go) need, so against it every informer falls back to a
# list; production control planes run etcd 3.5 or 3.6.
#
# The server module replaces its sibling modules with ../api and the like,
# which its module zip does not hold: the replaces are dropped, its
# requires name the same published versions.
#
# Usage: etcd-build.sh [VERSION]   prints the path of the etcd binary.
set -euo pipefail

version=${1:-${ETCD_VERSION:-v3.6.16}}
cache=${OOMTRACE_ETCD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oomtrace/etcd}/$version
if [ -x "$cache/etcd" ]; then
	echo "$cache/etcd"
	exit 0
fi

log() { echo "etcd-build: $*" >&2; }
. "$(dirname "${BASH_SOURCE[0]}")/../testenv/module-copy.sh"

module_copy "go.etcd.io/etcd/server/v3@$version"
drops=()
while read -r mod; do
	drops+=("-dropreplace=$mod")
done < <(go mod edit -json | sed -n '/"Replace"/,$p' | sed -n 's/.*"Path": "\(go.etcd.io\/[^"]*\)".*/\1/p' | sort -u)
[ ${#drops[@]} -gt 0 ] || { log "no replaces found in go.mod"; exit 1; }
go mod edit "${drops[@]}"
log "building etcd $version"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/etcd" .
mkdir -p "$cache"
install -m 0755 "$work/etcd" "$cache/etcd.tmp" && mv "$cache/etcd.tmp" "$cache/etcd"
echo "$cache/etcd"
