#!/usr/bin/env bash
# Builds the kubewasm image offline, as CI does: the binary built here (profile image), a local
# Debian base made with mmdebstrap when none is present (no registry is needed), the
# Dockerfile with BINARY=prebuilt, then scripts/image-check.Containerfile, which runs the
# binary and `kubewasm check` on an example plugin inside the image's userland. Prints
# the image's size. Usage: scripts/image.sh [IMAGE] (default localhost/kubewasm:dev).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${1:-localhost/kubewasm:dev}
BASE=localhost/debian:bookworm-slim
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kubewasm/image"

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq podman mmdebstrap >/dev/null
fi

cargo build --quiet --profile image --locked -p kubewasm
[[ -f target/plugins/configmap-mirror.wasm ]] ||
  scripts/build-plugin.sh plugins/configmap-mirror target/plugins

if ! podman image exists "$BASE"; then
  mkdir -p "$CACHE"
  if [[ ! -f $CACHE/bookworm.tar ]]; then
    mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm \
      "$CACHE/bookworm.partial.tar"
    mv "$CACHE/bookworm.partial.tar" "$CACHE/bookworm.tar"
  fi
  podman import --quiet "$CACHE/bookworm.tar" "$BASE" >/dev/null
fi

podman build --quiet --isolation chroot --build-arg BINARY=prebuilt \
  --build-arg DEBIAN_BASE="$BASE" -t "$IMAGE" . >/dev/null
podman build --isolation chroot --build-arg IMAGE="$IMAGE" \
  -f scripts/image-check.Containerfile -t "$IMAGE-check" .
podman image rm --force "$IMAGE-check" >/dev/null

# Nothing in the image but the binary and what it links: no shell, package manager or
# compiler.
container=$(podman create "$IMAGE")
files=$(podman export "$container" | tar -t)
podman rm "$container" >/dev/null
if unwanted=$(grep -E '(^|/)(sh|bash|dash|busybox|apt|apt-get|dpkg|cc|gcc|clang|rustc|cargo)$' <<<"$files"); then
  echo "the image holds what it should not: $unwanted" >&2
  exit 1
fi
echo "image files: $(wc -l <<<"$files") entries, no shell, package manager or compiler"

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $((size / 1024 / 1024)) MiB ($size bytes)"
