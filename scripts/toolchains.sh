#!/usr/bin/env bash
# Installs a guest language's toolchain under ~/.cache/kubewasm/tools (idempotent) and
# prints what to run it with. Usage: scripts/toolchains.sh python|js
#   python: the directory of componentize-py
#   js:     the entry file of componentize-js (for scripts/componentize-js.mjs)
set -euo pipefail

tools=${KUBEWASM_TOOLS:-$HOME/.cache/kubewasm/tools}
COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0

case ${1:?usage: scripts/toolchains.sh python|js} in
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
  *)
    echo "unknown toolchain: $1" >&2
    exit 2
    ;;
esac
