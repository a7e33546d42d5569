# syntax=docker/dockerfile:1.7
# The operator image: `docker build -f docker/operator.Dockerfile -t streamjoin-operator .`
# from the repository root. The operator links no C++ (rustls, no RocksDB), so it
# builds in a few minutes; the image is distroless, without a shell, as uid 65532.

ARG RUST_VERSION=1.90
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package streamjoin-operator --bin streamjoin-operator \
    && install -D -m 0755 target/release/streamjoin-operator /out/streamjoin-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="streamjoin-operator" \
      org.opencontainers.image.description="Kubernetes operator for StreamJoinJob" \
      org.opencontainers.image.source="https://github.com/streamjoin/streamjoin" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/streamjoin-operator /usr/local/bin/streamjoin-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/streamjoin-operator"]
CMD ["run"]
