#!/usr/bin/env bash
# Builds one plugin folder into OUT_DIR/NAME.wasm beside its grant OUT_DIR/NAME.yaml
# (NAME is the folder's name). Run from anywhere inside a kubewasm checkout; the folder
# may be anywhere below it. Usage: scripts/build-plugin.sh PLUGIN_DIR [OUT_DIR]
#
# The language is found from the folder's files:
#   Cargo.toml  Rust, built for wasm32-wasip2 on guest-sdk/rust
#   app.py      Python, componentize-py on guest-sdk/python
#   app.js      JavaScript, componentize-js on guest-sdk/js
#   app.c       C (every *.c), wit-bindgen c + clang + wasm-tools on guest-sdk/c
#   app.go      Go (every *.go, package app), wit-bindgen go + Go + wasm-tools on
#               guest-sdk/go
# Toolchains are installed and cached by scripts/toolchains.sh.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(cd "${1:?usage: scripts/build-plugin.sh PLUGIN_DIR [OUT_DIR]}" && pwd)
out=$(mkdir -p "${2:-$root/target/plugins}" && cd "${2:-$root/target/plugins}" && pwd)
name=$(basename "$dir")
wasm=$out/$name.wasm
cd "$root"

[[ -f $dir/grant.yaml ]] || { echo "$dir has no grant.yaml" >&2; exit 2; }
case $dir/ in
  "$root"/*) ;;
  *) echo "$dir is not inside the kubewasm checkout $root" >&2; exit 2 ;;
esac

# wit-bindgen's bindings for the `reconciler` world, in LANG, into a fresh directory.
bindings() { # lang dir
  rm -rf "$2" && mkdir -p "$2"
  local said
  said=$("$(scripts/toolchains.sh wit-bindgen)" "$1" wit --world reconciler --out-dir "$2" 2>&1) ||
    { echo "$said" >&2; return 1; }
}

# A WASI preview 1 core module with the world embedded, made a component.
componentize_core() { # core.wasm output
  "$(scripts/toolchains.sh wasm-tools)" component new "$1" \
    --adapt "wasi_snapshot_preview1=$(scripts/toolchains.sh adapter)" -o "$2"
}

build_rust() {
  local package
  package=$(cargo metadata --no-deps --format-version 1 --manifest-path "$dir/Cargo.toml" |
    MANIFEST="$dir/Cargo.toml" python3 -c 'import json, os, sys
print(next(p["name"] for p in json.load(sys.stdin)["packages"]
           if os.path.samefile(p["manifest_path"], os.environ["MANIFEST"])))')
  # Plugins of this checkout's workspace share its `plugin` profile; a plugin made by
  # `kubewasm new` is its own workspace and defines the same profile.
  local target_dir=${CARGO_TARGET_DIR:-$root/target}
  cargo build --quiet --profile plugin --target wasm32-wasip2 --target-dir "$target_dir" \
    --manifest-path "$dir/Cargo.toml" -p "$package"
  cp "$target_dir/wasm32-wasip2/plugin/${package//-/_}.wasm" "$wasm"
}

build_python() {
  "$(scripts/toolchains.sh python)/componentize-py" -d wit -w reconciler componentize app \
    -p "$dir" -p guest-sdk/python -o "$wasm" >/dev/null
}

build_js() {
  # componentize-js reads files below the working directory only: the checkout's root.
  COMPONENTIZE_JS=$(scripts/toolchains.sh js) node scripts/componentize-js.mjs \
    "${dir#"$root"/}/app.js" "$wasm"
}

build_c() {
  local build=target/guest-build/c/$name
  bindings c "$build"
  clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Wextra -Werror \
    -I "$build" -I guest-sdk/c "$dir"/*.c guest-sdk/c/*.c \
    "$build/reconciler.c" "$build/reconciler_component_type.o" -o "$build/core.wasm"
  componentize_core "$build/core.wasm" "$wasm"
}

build_go() {
  local build=$root/target/guest-build/go/$name go_bin
  go_bin=$(scripts/toolchains.sh go)
  # One Go module: the generated bindings, the SDK (package kubewasm and the export
  # glue) and the plugin as package app.
  bindings go "$build"
  cp -r guest-sdk/go/. "$build/"
  mkdir -p "$build/app" && cp "$dir"/*.go "$build/app/"
  (
    cd "$build"
    export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod GOSUMDB=off
    "$go_bin/go" mod edit -replace "go.bytecodealliance.org/pkg=$(cd "$root" && scripts/toolchains.sh go-pkg)"
    GOOS=wasip1 GOARCH=wasm "$go_bin/go" build -buildmode=c-shared -ldflags=-checklinkname=0 \
      -o core.wasm .
  )
  "$(scripts/toolchains.sh wasm-tools)" component embed -w reconciler wit "$build/core.wasm" \
    -o "$build/embedded.wasm"
  componentize_core "$build/embedded.wasm" "$wasm"
}

if [[ -f $dir/Cargo.toml ]]; then
  build_rust
elif [[ -f $dir/app.py ]]; then
  build_python
elif [[ -f $dir/app.js ]]; then
  build_js
elif [[ -f $dir/app.c ]]; then
  build_c
elif [[ -f $dir/app.go ]]; then
  build_go
else
  echo "$dir: no Cargo.toml, app.py, app.js, app.c or app.go: which language is it?" >&2
  exit 2
fi
cp "$dir/grant.yaml" "$out/$name.yaml"
echo "built $wasm"
