# The kubewasm host image. Plugins are mounted at /plugins (NAME.wasm beside its grant
# NAME.yaml), the compile cache at /cache.
#
# With a registry:   podman build -t kubewasm .        (or docker build)
# Offline, as CI:    scripts/image.sh                   (a prebuilt binary, a local base)
#
# The final image is distroless in the manner of gcr.io/distroless/cc: the binary, the
# C libraries it links (glibc, libm, libgcc_s), CA certificates and a non-root user;
# no shell, no package manager, no compiler. It is assembled from DEBIAN_BASE rather
# than pulled, so that the same file builds where no registry can be reached.

# Where the binary comes from: `compiled` builds it here, `prebuilt` takes
# target/image/kubewasm (`cargo build --profile image`) from the build context.
ARG BINARY=compiled
# The Debian the runtime files are taken from (glibc 2.36; the binary needs 2.34+).
ARG DEBIAN_BASE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

FROM ${RUST_IMAGE} AS compiled
WORKDIR /src
COPY . .
RUN cargo build --profile image --locked -p kubewasm \
    && mkdir -p /out && cp target/image/kubewasm /out/kubewasm

FROM scratch AS prebuilt
COPY target/image/kubewasm /out/kubewasm

FROM ${BINARY} AS binary

# The runtime's files, gathered into /rootfs.
FROM ${DEBIAN_BASE} AS rootfs
RUN set -eu; \
    if [ ! -f /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update && apt-get install -y --no-install-recommends ca-certificates; \
    fi; \
    multiarch=$(basename "$(ls -d /usr/lib/*-linux-gnu | head -n1)"); \
    mkdir -p "/rootfs/usr/lib/$multiarch" /rootfs/etc/ssl/certs /rootfs/usr/local/bin \
        /rootfs/plugins /rootfs/cache /rootfs/tmp /rootfs/home/kubewasm; \
    for lib in libc.so.6 libm.so.6 libgcc_s.so.1; do \
        cp -L "/usr/lib/$multiarch/$lib" "/rootfs/usr/lib/$multiarch/"; \
    done; \
    cp -L /usr/lib/"$multiarch"/ld-linux-*.so.* "/rootfs/usr/lib/$multiarch/"; \
    cp -a /lib /lib64 /rootfs/ 2>/dev/null || cp -a /lib /rootfs/; \
    if [ -e /usr/lib64 ]; then cp -a /usr/lib64 /rootfs/usr/; fi; \
    cp -L /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nkubewasm:x:65532:65532:kubewasm:/home/kubewasm:/sbin/nologin\n' \
        > /rootfs/etc/passwd; \
    printf 'root:x:0:\nkubewasm:x:65532:\n' > /rootfs/etc/group; \
    chown 65532:65532 /rootfs/cache /rootfs/home/kubewasm; \
    chmod 0700 /rootfs/cache; \
    chmod 1777 /rootfs/tmp

FROM scratch AS runtime
COPY --from=rootfs /rootfs/ /
COPY --from=binary /out/kubewasm /usr/local/bin/kubewasm
USER 65532:65532
ENV HOME=/home/kubewasm
ENTRYPOINT ["/usr/local/bin/kubewasm"]
# The compile cache goes in a directory of its own below /cache: the host refuses a
# cache directory others may write, and an emptyDir mounted at /cache is mode 0777.
CMD ["run", "--plugins", "/plugins", "--compile-cache", "/cache/compiled"]
