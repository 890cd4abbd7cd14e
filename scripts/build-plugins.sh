#!/usr/bin/env bash
# Builds every plugin into target/plugins/NAME.wasm beside its grant NAME.yaml, and the
# test guests into target/test-plugins/. Usage: scripts/build-plugins.sh [examples|tests|all]
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
out=target/plugins
test_out=target/test-plugins
mkdir -p "$out" "$test_out"

rust_build() { # crate name; prints the built file
  cargo build --quiet --profile plugin --target wasm32-wasip2 -p "$1" >&2
  echo "target/wasm32-wasip2/plugin/${1//-/_}.wasm"
}

if [[ $what == examples || $what == all ]]; then
  for dir in plugins/*/; do
    scripts/build-plugin.sh "$dir" "$out"
  done
fi

if [[ $what == tests || $what == all ]]; then
  cp "$(rust_build misbehave)" "$test_out/misbehave.wasm"
  # Hostile plugins: the same guest, misbehaving on every object it sees.
  for behaviour in loop allocate panic log-flood recurse; do
    cp "$(MISBEHAVE_DEFAULT=$behaviour rust_build misbehave)" "$test_out/hostile-$behaviour.wasm"
  done
  # Its well-behaved twin, which returns at once on every object (benchmarks' control).
  cp "$(MISBEHAVE_DEFAULT=ok rust_build misbehave)" "$test_out/well-behaved.wasm"
  # The same, watching a custom kind whose CustomResourceDefinition tests install.
  cp "$(MISBEHAVE_DEFAULT=ok MISBEHAVE_API_VERSION=kubewasm.test/v1 MISBEHAVE_KIND=Widget \
    rust_build misbehave)" "$test_out/widget-watcher.wasm"
  # The same, watching Secrets and copying each into a ConfigMap: what a grant for
  # ConfigMaps alone must not let run.
  cp "$(MISBEHAVE_DEFAULT=copy MISBEHAVE_KIND=Secret rust_build misbehave)" \
    "$test_out/secret-watcher.wasm"
  for version in v1 v2; do
    cp "$(STAMP_VERSION=$version rust_build stamp)" "$test_out/stamp-$version.wasm"
  done
  echo "built the test guests in $test_out: $(cd "$test_out" && echo *.wasm)"
fi
