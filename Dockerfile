# Static oomtrace image: one binary FROM scratch.
#
#   docker build -t oomtrace .          # builds the binary in a Go stage
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/oomtrace:TAG --push .
#   make image                          # daemonless (buildah), from bin/oomtrace
#
# The BPF objects are committed (tracer/*_bpfel.o), so the Go stage needs no
# clang. BINARY selects where the binary comes from: the "build" stage,
# "local", which copies bin/oomtrace built on the host by make build, or
# "release", each architecture's binary of the tarballs make release VERSION=
# made in bin/release (what the release workflow publishes: the image's
# binary is the release asset's). The last two pull no base image.
#
# Run it privileged with the host's PID namespace and /sys/kernel/btf,
# /sys/fs/cgroup and /proc mounted read-only: see deploy/.

ARG GO_VERSION=1.26
ARG BINARY=build

# Built on the builder's platform for the target's (docker buildx
# --platform linux/amd64,linux/arm64): Go cross-compiles, and the BPF
# objects of both architectures are committed.
FROM --platform=$BUILDPLATFORM docker.io/library/golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
	-o /out/oomtrace ./cmd/oomtrace

FROM scratch AS local
COPY bin/oomtrace /out/oomtrace

# ADD unpacks a local tarball.
FROM scratch AS release-tarball
ARG VERSION=dev
ARG TARGETARCH
ADD bin/release/oomtrace-${VERSION}-linux-${TARGETARCH}.tar.gz /

FROM scratch AS release
ARG VERSION=dev
ARG TARGETARCH
COPY --from=release-tarball /oomtrace-${VERSION}-linux-${TARGETARCH}/oomtrace /out/oomtrace

FROM ${BINARY} AS binary

FROM scratch
COPY --from=binary /out/oomtrace /oomtrace
EXPOSE 9808
USER 0
ENTRYPOINT ["/oomtrace"]
