#!/usr/bin/env bash
# Builds kube-apiserver and kubelet of one pinned Kubernetes version from the
# Go module proxy, once: the binaries are cached under the user cache dir
# keyed by version, so every later run costs nothing. A cold build takes
# about half an hour on two cores.
#
# The k8s.io/kubernetes module replaces its ~30 staging modules with
# ./staging/src/..., which the module zip does not hold: each replace is
# rewritten to the published k8s.io/X v0.<minor>.<patch>.
#
# One change to the kubelet's source: at start it rewrites kernel tunables
# (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1). On a
# shared test host that breaks other tests, so the test kubelet only warns
# (KernelTunableWarn) where the stock one modifies. The cluster tests check
# the host's values are unchanged afterwards.
#
# Usage: kube-build.sh [VERSION]   prints the directory holding the binaries.
set -euo pipefail

version=${1:-${KUBE_VERSION:-v1.37.2}}
cache=${OOMTRACE_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oomtrace/kube}/$version
bins=(kube-apiserver kubelet kube-controller-manager kube-scheduler)

have_all() {
	for b in "${bins[@]}"; do [ -x "$cache/$b" ] || return 1; done
}
if have_all; then
	echo "$cache"
	exit 0
fi

log() { echo "kube-build: $*" >&2; }
. "$(dirname "${BASH_SOURCE[0]}")/../testenv/module-copy.sh"

module_copy "k8s.io/kubernetes@$version"

staging=${version/#v1./v0.}
edits=()
while read -r mod; do
	edits+=("-dropreplace=$mod" "-require=$mod@$staging")
done < <(go mod edit -json | sed -n 's/.*"Path": "\(k8s.io\/[^"]*\)".*/\1/p' | sort -u |
	while read -r m; do
		grep -q "^[[:space:]]*$m => ./staging/" go.mod && echo "$m"
	done)
[ ${#edits[@]} -gt 0 ] || { log "no staging replaces found in go.mod"; exit 1; }
go mod edit "${edits[@]}"

cm=pkg/kubelet/cm/container_manager_linux.go
# Only the assignment of the default behaviour (b := KernelTunableModify).
grep -q 'b := KernelTunableModify$' "$cm" || { log "$cm: 'b := KernelTunableModify' not found"; exit 1; }
sed -i 's/b := KernelTunableModify$/b := KernelTunableWarn/' "$cm"

ld="-s -w"
for v in gitVersion=$version gitMajor=1 gitMinor=$(echo "$version" | cut -d. -f2) gitTreeState=clean; do
	ld="$ld -X k8s.io/component-base/version.$v -X k8s.io/client-go/pkg/version.$v"
done
mkdir -p "$work/out"
for b in "${bins[@]}"; do
	log "building $b (cold: many minutes)"
	CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$work/out/$b" "./cmd/$b"
done
mkdir -p "$cache"
for b in "${bins[@]}"; do
	install -m 0755 "$work/out/$b" "$cache/$b.tmp" && mv "$cache/$b.tmp" "$cache/$b"
done
echo "$cache"
