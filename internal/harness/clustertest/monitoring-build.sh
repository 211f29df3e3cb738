#!/usr/bin/env bash
# Builds the monitoring stack the cluster suite runs, once, from the Go
# module proxy: the Prometheus Operator (its operator binary, and its CRDs
# from the same module) and prometheus at the version of the promtool the
# Makefile uses. Cached under the user cache dir keyed by version; a cold
# build takes about 10 minutes on two cores.
#
# The operator's module replaces its pkg/apis/monitoring and pkg/client
# modules with ./pkg/..., which its zip does not hold: the copy gets the
# published modules of the same version there.
#
# Usage: monitoring-build.sh OPERATOR_VERSION PROMETHEUS_VERSION
#   prints the directory holding operator, prometheus and crds/.
set -euo pipefail

operator_version=$1 prometheus_version=$2
cache=${OOMTRACE_MONITORING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oomtrace/monitoring}/$operator_version-$prometheus_version
if [ -x "$cache/operator" ] && [ -x "$cache/prometheus" ] && [ -d "$cache/crds" ]; then
	echo "$cache"
	exit 0
fi

log() { echo "monitoring-build: $*" >&2; }
. "$(dirname "${BASH_SOURCE[0]}")/../testenv/module-copy.sh"

mkdir -p "$cache.tmp"
log "building prometheus $prometheus_version (cold: minutes)"
CGO_ENABLED=0 GOBIN="$cache.tmp" go install -trimpath -ldflags "-s -w" "github.com/prometheus/prometheus/cmd/prometheus@$prometheus_version"

operator=github.com/prometheus-operator/prometheus-operator
module_copy "$operator@$operator_version"
for sub in pkg/apis/monitoring pkg/client; do
	dir=$(go mod download -json "$operator/$sub@$operator_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$dir" ] || { log "no module $operator/$sub@$operator_version"; exit 1; }
	rm -rf "./$sub" && mkdir -p "$(dirname "./$sub")" && cp -r "$dir" "./$sub" && chmod -R u+w "./$sub"
done
log "building the Prometheus Operator $operator_version (cold: minutes)"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$cache.tmp/operator" ./cmd/operator
rm -rf "$cache.tmp/crds" && cp -r example/prometheus-operator-crd "$cache.tmp/crds"
rm -rf "$cache" && mv "$cache.tmp" "$cache"
echo "$cache"
