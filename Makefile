# oomtrace — make help lists the targets.

# bash with pipefail: a test run piped into its summary fails when the
# tests fail.
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c

GO        ?= go
BIN       := bin/oomtrace
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# Arguments for make run, e.g. make run ARGS="--output text".
ARGS      ?=
# Root is needed to load BPF programs; sudo only when not root already.
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Executions, not seconds: a wall-clock -fuzztime races the fuzzing
# coordinator's own deadline in Go before 1.27 (golang/go#75804) and fails
# with "context deadline exceeded" and no input found. 60,000 runs are about
# 10 s of each target here.
FUZZTIME  ?= 60000x
GENERATED := $(wildcard tracer/*_bpfel.go tracer/*_bpfel.o)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build a static bin/oomtrace (no clang needed: BPF objects are committed).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/oomtrace

.PHONY: run
run: ## Run oomtrace on this host (root); events on stdout, logs on stderr.
	@$(MAKE) --no-print-directory build >&2
	@$(SUDO) ./$(BIN) $(ARGS)

.PHONY: demo
demo: ## One OOM kill in a 64 MiB cgroup of its own, and the event oomtrace wrote (root; cgroup v1, v2, hybrid).
	@$(MAKE) --no-print-directory build >&2
	@$(SUDO) ./$(BIN) demo

.PHONY: test
test: test-host test-rules test-helm test-cluster test-kernels test-cluster-systemd ## The whole suite: on this kernel, the alerts and the Helm chart, in a real single-node cluster (cgroup v1), inside stock Debian kernels under qemu, then the cluster suite again on a systemd node (cgroup v2, the systemd driver) under qemu.

.PHONY: test-rules
# promtool from the Go module proxy, built once into the module cache.
PROMTOOL_VERSION ?= v0.316.0
test-rules: ## Unit-test the shipped alerts with promtool (deploy/monitoring/rules), the first kill in a new container included; test what every query of the dashboard returns for a counter born at 1.
	@mkdir -p bin/dashboard
	@cd deploy/monitoring/rules && $(GO) run github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION) test rules oomtrace.rules.test.yaml
	@cd deploy/monitoring && $(GO) run dashboard_rules.go > $(CURDIR)/bin/dashboard/dashboard.rules.yaml && \
		cp rules/dashboard.rules.test.yaml $(CURDIR)/bin/dashboard/ && \
		$(GO) run github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION) check rules $(CURDIR)/bin/dashboard/dashboard.rules.yaml && \
		$(GO) run github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION) test rules $(CURDIR)/bin/dashboard/dashboard.rules.test.yaml

.PHONY: test-helm chart-files helm helm3
# helm from the Go module proxy, built once (about 2 minutes) into bin/,
# static: the cluster suite runs it in its guest too.
HELM_VERSION ?= v4.3.2
helm:
	@mkdir -p bin
	@test -x bin/helm && bin/helm version --template '{{.Version}}' 2>/dev/null | grep -q '^$(basename $(HELM_VERSION))' && \
		$(GO) version -m bin/helm | grep -q 'CGO_ENABLED=0' || CGO_ENABLED=0 GOBIN=$(CURDIR)/bin $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

# Helm 3 as well: the README's commands must work on both (the cluster
# suite installs with Helm 3 on the v1 node, Helm 4 on the v2 node).
HELM3_VERSION ?= v3.21.4
helm3:
	@mkdir -p bin
	@test -x bin/helm3 && bin/helm3 version --template '{{.Version}}' 2>/dev/null | grep -q '^$(HELM3_VERSION)$$' || { \
		rm -rf bin/.helm3 && CGO_ENABLED=0 GOBIN=$(CURDIR)/bin/.helm3 $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM3_VERSION) && \
		mv bin/.helm3/helm bin/helm3 && rm -rf bin/.helm3; }

test-helm: helm ## Lint the Helm chart (deploy/helm/oomtrace) and check it renders what kubectl apply -k renders, for each variant and the monitoring objects.
	@bin/helm lint --strict deploy/helm/oomtrace
	@OOMTRACE_HELM=$(CURDIR)/bin/helm $(GO) test -count=1 -run '^Test(Helm|Pin)' -v ./deploy/ ./deploy/pin/ > bin/test-helm.out; rc=$$?; grep -v '^=== RUN' bin/test-helm.out; exit $$rc

# The chart carries copies of the alerts and the dashboard (Helm reads no
# file outside a chart); test-helm fails when they drift.
chart-files: ## Copy the alerts and the dashboard into the Helm chart.
	@cp deploy/monitoring/rules/oomtrace.rules.yaml deploy/monitoring/dashboard.json deploy/helm/oomtrace/files/

.PHONY: test-host
# -p 1: the real-kernel tests of different packages would fill each other's
# ring buffers with their kills.
test-host: test-deps ## Run the tests on this machine's kernel; as root they include real OOM kills and a real containerd. Every test's output: bin/test-host.json.
	@mkdir -p bin
	$(SUDO) $(GO) test -json -count=1 -p 1 $$($(GO) list ./... | grep -v /internal/harness/clustertest) | tee bin/test-host.json | $(GO) run ./internal/harness/testsummary -title "host, $$(uname -r)" -skips internal/harness/testsummary/skips.txt -run host

.PHONY: test-cluster
# The Kubernetes version of the cluster suite (kube-apiserver, kubelet,
# kube-controller-manager, kube-scheduler, built once from the Go module
# proxy and cached under ~/.cache/oomtrace/kube).
KUBE_VERSION ?= v1.37.2
IMAGE_ARCHIVE := bin/oomtrace-image.tar
# The Prometheus Operator (its module's only version on the proxy) and
# prometheus (promtool's version), built once and cached beside them.
PROMETHEUS_OPERATOR_VERSION ?= v0.85.0
test-cluster: test-deps image-archive helm3 ## Deploy the DaemonSet into a real single-node cluster (etcd, API server, kubelet, containerd) and check it against the kubelet and an operator's Prometheus, then install it with Helm 3 (root).
	@echo "kube binaries $(KUBE_VERSION), the Prometheus Operator $(PROMETHEUS_OPERATOR_VERSION), prometheus $(PROMTOOL_VERSION): built once from the Go module proxy (about 25 minutes cold), then cached"
	@kube=$$(bash internal/harness/clustertest/kube-build.sh $(KUBE_VERSION)) && \
	mon=$$(bash internal/harness/clustertest/monitoring-build.sh $(PROMETHEUS_OPERATOR_VERSION) $(PROMTOOL_VERSION)) && \
	$(SUDO) env OOMTRACE_KUBE_BIN=$$kube OOMTRACE_IMAGE=$(DEPLOY_IMAGE) OOMTRACE_IMAGE_ARCHIVE=$(CURDIR)/$(IMAGE_ARCHIVE) OOMTRACE_HELM3=$(CURDIR)/bin/helm3 \
		OOMTRACE_PROMETHEUS_OPERATOR=$$mon/operator OOMTRACE_PROMETHEUS_OPERATOR_CRDS=$$mon/crds OOMTRACE_PROMETHEUS=$$mon/prometheus \
		$(GO) test -json -count=1 -timeout 30m -v ./internal/harness/clustertest | tee bin/test-cluster.json | $(GO) run ./internal/harness/testsummary -progress -title cluster -skips internal/harness/testsummary/skips.txt -run cluster

.PHONY: test-cluster-v2
# The same suite on a cgroup v2 node: the control plane, the kubelet,
# containerd and runc inside a qemu guest with Debian 12's kernel (pure
# cgroup v2, memory.oom.group on every container). TestCluster only: the
# harness's own smoke test runs in test-cluster.
test-cluster-v2: test-deps image-archive helm ## The cluster suite on a busybox cgroup v2 node with the cgroupfs driver, installed with the README's helm command (root; installs qemu; not in make test: the systemd node runs the suite on v2).
	@kube=$$(bash internal/harness/clustertest/kube-build.sh $(KUBE_VERSION)) && \
	$(SUDO) env OOMTRACE_KUBE_BIN=$$kube OOMTRACE_HELM=$(CURDIR)/bin/helm OOMTRACE_IMAGE=$(DEPLOY_IMAGE) OOMTRACE_IMAGE_ARCHIVE=$(CURDIR)/$(IMAGE_ARCHIVE) TESTRUN=TestCluster \
		bash internal/harness/kerneltest/run.sh stable cluster

.PHONY: test-cluster-systemd
# The same suite on a systemd node: a Debian 12 userland built from
# Debian's packages (systemd as PID 1, dbus, journald, systemd-oomd,
# earlyoom), containerd and the kubelet as systemd units with the systemd
# cgroup driver, in a qemu guest with Debian 12's kernel.
test-cluster-systemd: test-deps image-archive helm ## The cluster suite on a systemd node (systemd cgroup driver, systemd-oomd, earlyoom) in a qemu guest (root; installs qemu and mmdebstrap).
	@kube=$$(bash internal/harness/clustertest/kube-build.sh $(KUBE_VERSION)) && \
	$(SUDO) env OOMTRACE_KUBE_BIN=$$kube OOMTRACE_HELM=$(CURDIR)/bin/helm OOMTRACE_IMAGE=$(DEPLOY_IMAGE) OOMTRACE_IMAGE_ARCHIVE=$(CURDIR)/$(IMAGE_ARCHIVE) TESTRUN=$${TESTRUN:-'TestCluster|TestHostUnit'} \
		bash internal/harness/kerneltest/run.sh stable systemd

.PHONY: test-deps
test-deps: ## Install what the privileged tests run (containerd, runc, etcd) when missing (root, Debian).
	@if ! command -v containerd >/dev/null || ! command -v runc >/dev/null; then \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd runc >/dev/null; \
	fi
	@if ! command -v etcd >/dev/null; then \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null; \
	fi

.PHONY: test-kernels
test-kernels: ## Boot stock Debian kernels (5.10, 6.1, 6.12: kprobes, fentry, cgroup v2) under qemu and run the privileged tests there (root; installs qemu).
	$(SUDO) bash internal/harness/kerneltest/run.sh oldstable
	$(SUDO) bash internal/harness/kerneltest/run.sh stable
	$(SUDO) bash internal/harness/kerneltest/run.sh backports

.PHONY: test-unit
test-unit: ## Run the tests as the current user (real-kernel tests skip unless root).
	$(GO) test -count=1 ./...

.PHONY: fuzz
# package:target
FUZZ_TARGETS := tracer:FuzzDecodeOOMKill tracer:FuzzDecodeRefusal internal/cgroup:FuzzMemoryPath internal/cgroup:FuzzFindMemory \
	tracer:FuzzParseStat tracer:FuzzParseStartTime tracer:FuzzParseNSpid internal/kernfile:FuzzParseMeminfo internal/cgpath:FuzzParse \
	internal/nodememory:FuzzParseEvictionHard internal/kube/evictionmsg:FuzzParse tracer:FuzzDecodeTaskSignal \
	internal/nodememory:FuzzParseKubeletConfig exporter/kubeevents:FuzzDescribe internal/cri:FuzzConvert internal/cgpath:FuzzContainerPath \
	internal/postmortem:FuzzParseStatus internal/kernfile:FuzzAppendDirs internal/memwatch:FuzzParsePSI
# Minimizing new inputs of 3.5 KiB stalls the fuzzer and can outlast -fuzztime
# (then it reports "context deadline exceeded"): one attempt only.
fuzz: ## Run every fuzz target for FUZZTIME each.
	@for pf in $(FUZZ_TARGETS); do \
		p=$${pf%%:*}; f=$${pf#*:}; \
		echo "fuzz $$p $$f"; \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1x ./$$p || exit 1; \
	done

.PHONY: mutate
mutate: ## Run the named mutants (internal/harness/mutate/mutants.txt) against their tests: the score, and a failure on a survivor not reviewed as equivalent (root runs the privileged ones).
	@$(SUDO) $(GO) run ./internal/harness/mutate/runmutants

.PHONY: bench
# BENCH_KILLS: the OOM burst sizes. BENCH_RUN: which benchmarks
# (TestBenchPerKill alone: the per-kill cost beside bpftrace; set
# OOMTRACE_BENCH_PROFILE=FILE for the daemon's CPU profile of it).
BENCH_KILLS ?= 1000,10000
BENCH_RUN ?= ^TestBench
bench: ## Hot-path cost vs an empty program and bpftrace; OOM bursts: losses, latency, footprint (root; installs bpftrace).
	@command -v bpftrace >/dev/null || { apt-get update -qq && apt-get install -y -qq bpftrace >/dev/null; }
	@$(SUDO) env OOMTRACE_BENCH=1 OOMTRACE_BENCH_KILLS=$(BENCH_KILLS) $(GO) test -count=1 -timeout 3h -p 1 -run '$(BENCH_RUN)' -v ./tracer ./cmd/oomtrace ./internal/memwatch | grep -v -e '^=== RUN' -e 'round [0-9]*:'

.PHONY: bench-scale
# SCALE_AGENTS: the fleet sizes; SCALE_REST, SCALE_LONG_REST: each size's
# rest, and the largest's (long enough for client-go's watch renewals).
SCALE_AGENTS ?= 100,300,1000,1500
SCALE_REST ?= 90s
SCALE_LONG_REST ?= 10m
bench-scale: ## A fleet of agents' cluster views against a real etcd + kube-apiserver: the API server's cost per agent at rest, in an eviction storm, in an OOM-kill Event burst (no root; builds kube-apiserver and etcd once).
	@mkdir -p bin
	@kube=$$(bash internal/harness/clustertest/kube-build.sh $(KUBE_VERSION)) && etcd=$$(bash internal/harness/fleettest/etcd-build.sh) && \
		OOMTRACE_KUBE_BIN=$$kube OOMTRACE_ETCD=$$etcd OOMTRACE_BENCH_SCALE=1 OOMTRACE_BENCH_SCALE_AGENTS=$(SCALE_AGENTS) \
		OOMTRACE_BENCH_SCALE_REST=$(SCALE_REST) OOMTRACE_BENCH_SCALE_LONG_REST=$(SCALE_LONG_REST) \
		$(GO) test -count=1 -timeout 2h -run '^TestFleetScale$$' -v ./internal/harness/fleettest 2>&1 | \
		grep --line-buffered -v -e '^=== RUN' | tee bin/bench-scale.log; exit $${PIPESTATUS[0]}

.PHONY: generate
generate: ## Rebuild the BPF objects and their Go bindings (needs clang, llvm, libbpf-dev).
	$(GO) generate ./tracer/

.PHONY: check-generate
check-generate: generate ## Fail if the committed BPF objects are not what generate makes.
	@git diff --exit-code -- tracer/ || { echo "generated BPF files are stale: run make generate and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- tracer/ | grep bpfel)" || { echo "untracked generated files in tracer/" >&2; exit 1; }

.PHONY: hooks
hooks: ## Check commit messages in this clone: a subject "pkg: what changed" within 72 characters, a blank line, the body (.githooks/commit-msg).
	git config core.hooksPath .githooks

.PHONY: vet
vet: lint ## go vet, gofmt, golangci-lint, clang-format, no compiled file but the BPF objects in the tree, a license on every source file.
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l . >&2; echo "gofmt needed" >&2; exit 1; }
	@command -v clang-format >/dev/null || { echo "clang-format is missing (apt-get install clang-format)" >&2; exit 1; }
	@clang-format --style=file:bpf/.clang-format --dry-run --Werror bpf/*.c bpf/*.h bpf/include/*.h || \
		{ echo "clang-format needed: clang-format --style=file:bpf/.clang-format -i bpf/*.[ch] bpf/include/*.h" >&2; exit 1; }
	@bad=$$(git ls-files | while read -r f; do [ -f "$$f" ] && [ "$$(head -c4 "$$f" | od -An -c | tr -d ' ')" = '177ELF' ] && \
		case "$$f" in tracer/*_bpfel.o) ;; *) echo "$$f" ;; esac; done); \
		test -z "$$bad" || { echo "compiled files in the tree (only tracer/*_bpfel.o belong there):" $$bad >&2; exit 1; }
	@bad=$$(git ls-files '*.go' '*.c' '*.h' | while read -r f; do grep -q 'Code generated' "$$f" || head -3 "$$f" | grep -q 'SPDX-License-Identifier' || echo "$$f"; done); \
		test -z "$$bad" || { echo "no SPDX-License-Identifier in the first lines:" $$bad >&2; exit 1; }

.PHONY: lint
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := bin/golangci-lint-$(GOLANGCI_LINT_VERSION)
# Built from the Go module proxy once (about 3 minutes), then kept in bin/.
$(GOLANGCI_LINT):
	@mkdir -p bin/.golangci && GOBIN=$(CURDIR)/bin/.golangci $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) && \
		mv bin/.golangci/golangci-lint $@ && rmdir bin/.golangci
lint: $(GOLANGCI_LINT) ## golangci-lint with .golangci.yml: errcheck, staticcheck, unused, revive's exported rule.
	$(GOLANGCI_LINT) run ./...

.PHONY: image
IMAGE ?= localhost/oomtrace:$(VERSION)
BUILDAH := buildah --storage-driver vfs
# The Dockerfile's image, made from bin/oomtrace without a build stage: no
# intermediate image is left behind, and the previous image of the same
# name is replaced, not left dangling. The image's binary must run.
image: build ## Build the container image daemonlessly with buildah from bin/oomtrace (installs buildah).
	@command -v buildah >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah >/dev/null; }
	@$(BUILDAH) rmi -f $(IMAGE) >/dev/null 2>&1 || true
	@ctr=$$($(BUILDAH) from scratch) && 		$(BUILDAH) copy -q $$ctr bin/oomtrace /oomtrace >/dev/null && 		$(BUILDAH) config --entrypoint '["/oomtrace"]' --port 9808 --user 0 			--label org.opencontainers.image.version=$(VERSION) --label org.opencontainers.image.source=https://github.com/oomtrace/oomtrace $$ctr && 		$(BUILDAH) commit -q --rm $$ctr $(IMAGE) >/dev/null
	@ctr=$$($(BUILDAH) from $(IMAGE)) && mnt=$$($(BUILDAH) mount $$ctr) && 		"$$mnt/oomtrace" --version; rc=$$?; 		$(BUILDAH) umount $$ctr >/dev/null; $(BUILDAH) rm $$ctr >/dev/null; exit $$rc
	@echo "image $(IMAGE): push it with buildah push $(IMAGE) docker://REGISTRY/oomtrace:TAG, or see the README to load it into a node's containerd"

.PHONY: image-archive
# The image deploy/ and the chart name (deploy/base/kustomization.yaml's
# newName:newTag, the chart's appVersion), until a release publishes it.
DEPLOY_IMAGE := $(shell awk '/newName:/ {n=$$2} /newTag:/ {t=$$2} END {print n ":" t}' deploy/base/kustomization.yaml)
image-archive: image ## The image as an OCI archive (bin/oomtrace-image.tar) named as deploy/ and the chart name it: import it into each node's containerd.
	@rm -f $(IMAGE_ARCHIVE) && $(BUILDAH) push -q $(IMAGE) oci-archive:$(IMAGE_ARCHIVE):$(DEPLOY_IMAGE) >/dev/null
	@echo "$(IMAGE_ARCHIVE): $(DEPLOY_IMAGE), the image deploy/ and the chart name; on each node: ctr -n k8s.io images import $(IMAGE_ARCHIVE)"

.PHONY: release
RELEASE_ARCHS := amd64 arm64
release: ## Static binaries for linux/amd64 and linux/arm64 in bin/release, as tarballs with SHA256SUMS (what the release workflow publishes).
	@rm -rf bin/release && mkdir -p bin/release
	@for arch in $(RELEASE_ARCHS); do \
		dir=bin/release/oomtrace-$(VERSION)-linux-$$arch; mkdir -p $$dir && \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$dir/oomtrace ./cmd/oomtrace && \
		cp README.md LICENSE $$dir/ && mkdir -p $$dir/docs && cp docs/*.md $$dir/docs/ && tar -C bin/release -czf $$dir.tar.gz $$(basename $$dir) && rm -rf $$dir || exit 1; \
	done
	@cd bin/release && sha256sum *.tar.gz > SHA256SUMS && cat SHA256SUMS

.PHONY: clean
clean: ## Remove build output.
	rm -rf bin
