# syntax=docker/dockerfile:1.7
# magestack: one static-ish binary on a distroless runtime, as a non-root user.
# Build from the repository root:  docker build -f deploy/docker/magestack.Dockerfile -t magestack .
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY . .
# Cargo's registry and target in cache mounts: rebuilds reuse them, the image carries neither.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p magestack \
    && install -D -m 0755 target/release/magestack /out/magestack

# glibc and libgcc only (rustls: no OpenSSL); no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/magestack /usr/local/bin/magestack
# distroless' nonroot user (65532); the Kubernetes manifests pin it again.
USER 65532:65532
EXPOSE 8080 9180
# Kubernetes probes /readyz and /healthz on the admin listener; Docker's HEALTHCHECK would
# need a shell or curl, which this image deliberately lacks.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/magestack"]
CMD ["edge", "--config", "/etc/magestack/edge.toml"]
