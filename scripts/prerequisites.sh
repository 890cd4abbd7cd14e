#!/usr/bin/env bash
# Installs what building and testing kubewasm needs on a fresh Debian or Ubuntu machine:
# Debian packages, the wasm32-wasip2 Rust target, rustfmt and clippy. Idempotent.
set -euo pipefail

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

packages=(build-essential pkg-config rsync dpkg-dev golang-go curl ca-certificates python3 python3-venv
  # C plugins: clang for wasm32-wasi, its linker and runtime, wasi-libc, a JSON tokenizer.
  clang lld wasi-libc libclang-rt-14-dev-wasm32 libjsmn-dev)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]})); then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed | grep -q '^clippy' || rustup component add clippy

# JavaScript plugins are built with componentize-js from npm; Node.js 20 or later is
# preferred (the machine's own), Debian's nodejs otherwise.
if ! command -v npm >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
