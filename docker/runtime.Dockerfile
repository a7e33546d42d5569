# syntax=docker/dockerfile:1.7
# The join runtime image: `docker build -f docker/runtime.Dockerfile -t streamjoin-runtime .`
# from the repository root. RocksDB (C++, through bindgen) and librdkafka (C) are
# compiled in the build stage, which needs libclang, a C++ compiler and the zlib
# and OpenSSL headers; the first build takes 20-30 minutes on 2 cores. The image
# is distroless (glibc and libstdc++, no shell) and runs as uid 65532, the uid the
# operator's pod template sets (operator/src/build/statefulset.rs, RUNTIME_UID).

ARG RUST_VERSION=1.90
FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libclang-dev g++ zlib1g-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package streamjoin-runtime --bin streamjoin-runtime \
    && install -D -m 0755 target/release/streamjoin-runtime /out/streamjoin-runtime \
    && install -d -m 0755 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="streamjoin-runtime" \
      org.opencontainers.image.description="The streamjoin impression-play join runtime" \
      org.opencontainers.image.source="https://github.com/streamjoin/streamjoin" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/streamjoin-runtime /usr/local/bin/streamjoin-runtime
# The checkpoint volume is mounted here; owned by the runtime user when it is not.
COPY --from=build --chown=65532:65532 /out/data /var/lib/streamjoin
USER 65532:65532
# Admin port: /metrics, /healthz, /readyz.
EXPOSE 9249
ENTRYPOINT ["/usr/local/bin/streamjoin-runtime"]
