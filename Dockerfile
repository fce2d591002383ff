# syntax=docker/dockerfile:1
# The dynamodb-source image: one static binary, both roles (`controller`, `adapter`), and
# nothing else (`FROM scratch`).
#
#   docker build -t dynamodb-source:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(git log -1 --format=%cI) .
#
# With the binary already built (`make image-binary`, target/image/dynamodb-source), no Rust
# image is needed and nothing is pulled: the final stage is FROM scratch, so this builds
# offline (it is how the tests build the image, with buildah):
#
#   make image-binary
#   docker build --build-arg BINARY_FROM=prebuilt -t dynamodb-source:0.1.0 .
#   buildah bud --build-arg BINARY_FROM=prebuilt --timestamp 0 -t dynamodb-source:0.1.0 .
#
# The binary is built by scripts/build-static, the same script `make image-binary` runs
# outside Docker: release profile, glibc linked statically (crt-static on the gnu target),
# build paths remapped, Cargo.lock enforced. It needs no file from a base image: it carries
# its CA roots (webpki-roots), and its static glibc resolves host names from /etc/hosts and
# /etc/resolv.conf, which the kubelet mounts, without NSS libraries. tests/it/image.rs checks
# that this file and the script agree (binary path, user, entrypoint).
#
# Reproducible: the same binary and build args give the same image digest when the layer
# timestamps are fixed (`buildah bud --timestamp 0`; BuildKit: SOURCE_DATE_EPOCH=0 with
# `--output type=image,rewrite-timestamp=true`). The Rust image is pinned by tag; pin it by
# digest (`--build-arg RUST_IMAGE=docker.io/library/rust:1.95-bookworm@sha256:...`) to rebuild
# the binary bit for bit. It must be Debian 12 (glibc 2.36, whose files and dns NSS modules
# are part of libc and so of the static binary).
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
# `build`: compile the binary in the Rust image; `prebuilt`: take target/image/dynamodb-source
# from the build context.
ARG BINARY_FROM=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Only what the build needs (.dockerignore is an allowlist).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-static /out/dynamodb-source

FROM scratch AS prebuilt
COPY target/image/dynamodb-source /out/dynamodb-source

FROM ${BINARY_FROM} AS binary

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="dynamodb-source" \
      org.opencontainers.image.description="Turns every change to an Amazon DynamoDB table into a CloudEvent (Kubernetes operator and adapter); a drop-in replacement for TriggerMesh's AWSDynamoDBSource." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/dynamodb-source" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=binary --chown=0:0 --chmod=0555 /out/dynamodb-source /dynamodb-source
USER 65532:65532
ENTRYPOINT ["/dynamodb-source"]
