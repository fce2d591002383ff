# syntax=docker/dockerfile:1
# The dynamodb-source image: one static binary, both roles (`controller`, `adapter`).
#
#   docker build -t dynamodb-source:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(git log -1 --format=%cI) .
#
# The binary is built by scripts/build-static, the same script `make image-binary` runs
# outside Docker: release profile, glibc linked statically (crt-static on the gnu target),
# build paths remapped, Cargo.lock enforced. tests/image.rs checks that this file and the
# script agree (binary path, user, entrypoint).
#
# Base images are pinned by tag. Pin them by digest for fully reproducible builds
# (`docker buildx imagetools inspect IMAGE` prints it), e.g.
#   --build-arg RUST_IMAGE=docker.io/library/rust:1.95-bookworm@sha256:...
# (the digests could not be looked up where this file was written: no registry access).
# The builder must be Debian 12 (glibc 2.36, whose files and dns NSS modules are part of
# libc and so of the static binary).
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Only what the build needs (.dockerignore is an allowlist).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-static /out/dynamodb-source

# distroless/static: CA certificates (/etc/ssl/certs), /etc/passwd with nonroot (65532),
# /etc/nsswitch.conf, tzdata; no shell, no package manager, no libc (none needed).
FROM ${BASE_IMAGE}
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
COPY --from=build --chown=0:0 --chmod=0555 /out/dynamodb-source /dynamodb-source
USER 65532:65532
ENTRYPOINT ["/dynamodb-source"]
