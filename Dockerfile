# The kubewasm host. Plugins are mounted at /plugins (NAME.wasm beside its grant NAME.yaml).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p kubewasm

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/kubewasm /usr/local/bin/kubewasm
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kubewasm"]
