# Multi-stage build of a static oomtrace image. The BPF objects are committed
# (tracer/*_bpfel.o), so the build stage needs only Go, no clang.
#
#   make image            # buildah or podman, no Docker engine needed
#
# The final image holds one static binary. Run it privileged with the host's
# PID namespace and /sys/kernel/btf, /sys/fs/cgroup and /proc mounted
# read-only (see deploy/ once it exists, and the README).

ARG GO_VERSION=1.26
FROM docker.io/library/golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
	-o /out/oomtrace ./cmd/oomtrace

FROM scratch
COPY --from=build /out/oomtrace /oomtrace
ENTRYPOINT ["/oomtrace"]
