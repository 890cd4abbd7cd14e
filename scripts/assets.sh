#!/usr/bin/env bash
# Provisions the local control plane binaries (kube-apiserver, etcd, kubectl) into
# ~/.cache/kubewasm/assets/<version>-<build>/, the directory `kubewasm cluster up` falls
# back to when KUBEBUILDER_ASSETS is not set. Idempotent: a filled cache is left alone.
#
# kube-apiserver 1.20.2 is built from Debian bookworm's `kubernetes` source package
# (dependencies vendored) with Debian's Go; etcd 3.4 comes from `etcd-server` and kubectl
# from `kubernetes-client`, both unpacked into the cache rather than installed.
#
# The vendored modern-go/reflect2 1.0.1 and json-iterator/go 1.1.10 crash (SIGSEGV in map
# iteration) under Go >= 1.18 on the first custom resource, so they are replaced with
# Debian's 1.0.2 and 1.1.12 before the build. BUILD_REVISION names the cache directory
# together with the version: raise it (and host/src/cluster/assets.rs's ASSETS_BUILD)
# whenever the recipe changes, so caches made by an older recipe are rebuilt.
set -euo pipefail

VERSION=1.20.2
BUILD_REVISION=2 # 2: reflect2 and json-iterator replaced, custom resources work
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kubewasm"
ASSETS="$CACHE/assets/$VERSION-$BUILD_REVISION"
BUILD="$CACHE/build"

have_all() {
  [[ -x "$ASSETS/kube-apiserver" && -x "$ASSETS/etcd" && -x "$ASSETS/kubectl" ]]
}

if have_all; then
  echo "$ASSETS"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

SRC_LIST=/etc/apt/sources.list.d/kubewasm-deb-src.sources
if [[ ! -f $SRC_LIST ]]; then
  $SUDO tee "$SRC_LIST" >/dev/null <<'SOURCES'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  $SUDO apt-get update -qq
fi
if ! command -v go >/dev/null || ! command -v rsync >/dev/null || ! command -v dpkg-source >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq golang-go rsync dpkg-dev >/dev/null
fi

mkdir -p "$ASSETS" "$BUILD"

place() { # source, destination name; atomic so an interrupted run leaves no half binary
  install -m 0755 "$1" "$ASSETS/.$2.partial"
  mv -f "$ASSETS/.$2.partial" "$ASSETS/$2"
}

unpack_deb() { # package, path inside the package, destination name
  local pkg=$1 inner=$2 name=$3 tmp
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # apt downloads as user _apt
  (cd "$tmp" && apt-get download -qq "$pkg" && dpkg-deb -x ./*.deb root)
  place "$tmp/root/$inner" "$name"
  rm -rf "$tmp"
}

replace_vendored() { # Debian package, Go import path: its sources replace vendor/<path>
  local pkg=$1 import=$2 tmp
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq "$pkg" && dpkg-deb -x ./*.deb root)
  [[ -d "$tmp/root/usr/share/gocode/src/$import" ]] || { echo "$pkg has no $import" >&2; exit 1; }
  rm -rf "vendor/$import"
  cp -rL "$tmp/root/usr/share/gocode/src/$import" "vendor/$import"
  find "vendor/$import" -name '*_test.go' -delete
  rm -rf "$tmp"
}

[[ -x "$ASSETS/etcd" ]] || unpack_deb etcd-server usr/bin/etcd etcd
[[ -x "$ASSETS/kubectl" ]] || unpack_deb kubernetes-client usr/bin/kubectl kubectl

if [[ ! -x "$ASSETS/kube-apiserver" ]]; then
  cd "$BUILD"
  # bookworm's source package is versioned 1.20.5+really1.20.2
  tree=$(find . -maxdepth 1 -type d -name "kubernetes-*really$VERSION" | head -n1)
  if [[ -z $tree ]]; then
    chmod 755 "$BUILD"
    apt-get source -qq kubernetes
    tree=$(find . -maxdepth 1 -type d -name "kubernetes-*really$VERSION" | head -n1)
    [[ -n $tree ]] || { echo "apt-get source kubernetes did not give $VERSION" >&2; exit 1; }
  fi
  cd "$tree"
  replace_vendored golang-github-modern-go-reflect2-dev github.com/modern-go/reflect2
  replace_vendored golang-github-json-iterator-go-dev github.com/json-iterator/go
  export GOPATH="$PWD/.go" GOCACHE="$BUILD/gocache" CGO_ENABLED=0
  mkdir -p .go/src/k8s.io
  ln -sfn "$PWD" .go/src/k8s.io/kubernetes
  (cd .go/src/k8s.io/kubernetes && make WHAT=cmd/kube-apiserver)
  place _output/bin/kube-apiserver kube-apiserver
  cd /
  rm -rf "$BUILD" # about 2 GB of sources and Go cache; the binary is all that is needed
fi

have_all
echo "$ASSETS"
