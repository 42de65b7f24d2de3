#!/usr/bin/env bash
# Builds the real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kubectl) from the
# Go modules pinned in hack/controlplane/go.sum, into a cache outside the repo keyed by version and pins, so a
# second run builds nothing. Prints the directory that holds the binaries on its last line of stdout.
#
# With --node it also builds the node's kubelet, kube-proxy and kube-scheduler (same module, same cache
# directory); without it they are left alone, so the control-plane-only tests never pay for them.
#
# KUBEBUILDER_ASSETS, when it names a directory that already holds every binary asked for, is used as is.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module="$here/controlplane"
binaries=(etcd kube-apiserver kube-controller-manager kubectl)
if [[ "${1:-}" == --node ]]; then
  binaries+=(kubelet kube-proxy kube-scheduler)
elif [[ -n "${1:-}" ]]; then
  echo "usage: $0 [--node]" >&2
  exit 2
fi

complete() { # directory
  local b
  for b in "${binaries[@]}"; do [[ -x "$1/$b" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && complete "$KUBEBUILDER_ASSETS"; then
  echo "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS" >&2
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

k8s_version="$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$module/go.mod")"
pins="$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)"
cache="${ZETA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zeta}"
out="$cache/controlplane/$k8s_version-$pins"

if complete "$out"; then
  echo "control plane $k8s_version cached in $out" >&2
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go is needed to build the control plane (https://go.dev/doc/install)" >&2; exit 1; }

echo "building Kubernetes $k8s_version control plane into $out (first time only: several minutes)..." >&2
mkdir -p "$out"
tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

minor="${k8s_version#v1.}"; minor="${minor%%.*}"
version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  version_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

cd "$module"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
# Builds only what the cache lacks, and publishes each binary atomically as soon as it is built, so an
# interrupted build never leaves a half-written binary in the cache and keeps the ones that finished.
build() { # name package
  [[ -x "$out/$1" ]] && return 0
  echo "  go build $2" >&2
  go build -trimpath -ldflags "-s -w $version_flags" -o "$tmp/$1" "$2"
  mv -f "$tmp/$1" "$out/$1"
}
package_of() { # name
  case "$1" in
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    *) echo "k8s.io/kubernetes/cmd/$1" ;;
  esac
}
for b in "${binaries[@]}"; do build "$b" "$(package_of "$b")"; done

echo "control plane $k8s_version built in $out" >&2
echo "$out"
