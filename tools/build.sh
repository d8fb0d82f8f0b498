#!/usr/bin/env bash
# Builds the pinned external tools from Go modules into a per-user cache keyed by
# version, and links them into .tide/bin. A tool already in the cache is not rebuilt.
#   tools/build.sh [kube|etcd|kwok|kustomize|sops|helm|all]...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# shellcheck source=versions.env
. "$here/versions.env"
cache=${TIDE_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tide/tools}
bin="$root/.tide/bin"
mkdir -p "$cache" "$bin"
export GOFLAGS="-trimpath -mod=mod -buildvcs=false"
export CGO_ENABLED=0

# build NAME VERSION MODULE_DIR [BINARY=]PACKAGE... : go build the packages of tools/MODULE_DIR into the cache
build() {
  local name=$1 version=$2 moddir=$3; shift 3
  local dest="$cache/$name-$version"
  if [ -f "$dest/.complete" ]; then
    echo "tools: $name $version cached in $dest (nothing built)"
  else
    echo "tools: building $name $version (first time only)..."
    local start=$SECONDS
    rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
    local pkgs=() renames=() p
    for p in "$@"; do
      if [[ $p == *=* ]]; then renames+=("$p"); pkgs+=("${p#*=}"); else pkgs+=("$p"); fi
    done
    if [ ${#renames[@]} -eq 1 ] && [ ${#pkgs[@]} -eq 1 ]; then
      (cd "$here/$moddir" && go build -ldflags "-s -w $LDFLAGS_EXTRA" -o "$dest.tmp/${renames[0]%%=*}" "${pkgs[0]}")
    else
      (cd "$here/$moddir" && go build -ldflags "-s -w $LDFLAGS_EXTRA" -o "$dest.tmp/" "${pkgs[@]}")
    fi
    rm -rf "$dest" && mv "$dest.tmp" "$dest" && touch "$dest/.complete"
    echo "tools: built $name $version in $((SECONDS - start)) s"
  fi
  local f
  for f in "$dest"/*; do ln -sfn "$f" "$bin/$(basename "$f")"; done
}

# pin MODULE_DIR MODULE VERSION: versions.env is the one pin; the go.mod follows it.
pin() {
  (cd "$here/$1" && go mod edit -require="$2@$3")
}

kube_ldflags() {
  local pkg=k8s.io/component-base/version
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  echo "-X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg/verflag.programName=kubernetes"
}

one() {
  LDFLAGS_EXTRA=""
  case $1 in
    kube)
      LDFLAGS_EXTRA=$(kube_ldflags)
      pin kube k8s.io/kubernetes "$KUBERNETES_VERSION"
      sed -i -E "s#^(replace k8s.io/[^ ]+ => k8s.io/[^ ]+) v0\.[0-9]+\.[0-9]+\$#\1 $KUBERNETES_STAGING_VERSION#" "$here/kube/go.mod"
      build kubernetes "$KUBERNETES_VERSION" kube \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl ;;
    etcd) pin etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"; build etcd "$ETCD_VERSION" etcd etcd=go.etcd.io/etcd/server/v3 ;;
    kwok) pin kwok sigs.k8s.io/kwok "$KWOK_VERSION"; build kwok "$KWOK_VERSION" kwok sigs.k8s.io/kwok/cmd/kwok ;;
    kustomize) pin kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"; build kustomize "$KUSTOMIZE_VERSION" kustomize kustomize=sigs.k8s.io/kustomize/kustomize/v5 ;;
    sops) pin sops github.com/getsops/sops/v3 "$SOPS_VERSION"; build sops "$SOPS_VERSION" sops github.com/getsops/sops/v3/cmd/sops ;;
    helm) pin helm helm.sh/helm/v3 "$HELM_VERSION"; build helm "$HELM_VERSION" helm helm.sh/helm/v3/cmd/helm ;;
    all) for t in kube etcd kwok kustomize sops helm; do one "$t"; done ;;
    *) echo "tools: unknown tool $1" >&2; exit 2 ;;
  esac
}
[ $# -gt 0 ] || set -- all
for t in "$@"; do one "$t"; done
