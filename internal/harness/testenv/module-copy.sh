# Sourced by the harness's build scripts (kube-build.sh, etcd-build.sh):
# module_copy MODULE@VERSION downloads a module from the Go module proxy
# and makes a writable copy of it the current directory, removed when the
# script exits. The module cache's copy is read-only, and the scripts edit
# the copy's go.mod (its replaces point at sibling directories the module
# zip does not hold).
#
# The caller sets `set -euo pipefail` and defines log().

export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local

module_copy() {
	local mod=$1 src
	log "downloading $mod (module proxy)"
	src=$(go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src" ] || { log "module download gave no directory"; exit 1; }
	work=$(mktemp -d /tmp/module-copy.XXXXXX)
	trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
	cp -r "$src/." "$work/"
	chmod -R u+w "$work"
	cd "$work"
}
