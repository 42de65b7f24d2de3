#!/usr/bin/env bash
# Builds helm from the Go module pinned in hack/helm/go.sum into a cache keyed by version and pins (like
# build-controlplane.sh). Prints the path of the helm binary on its last line of stdout. HELM_BIN overrides.
set -euo pipefail

if [[ -n "${HELM_BIN:-}" && -x "$HELM_BIN" ]]; then echo "$HELM_BIN"; exit 0; fi
module="$(cd "$(dirname "${BASH_SOURCE[0]}")/helm" && pwd)"
version="$(awk '$1 == "helm.sh/helm/v3" {print $2}' "$module/go.mod")"
pins="$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)"
out="${ZETA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zeta}/helm/$version-$pins"
if [[ -x "$out/helm" ]]; then echo "$out/helm"; exit 0; fi

echo "building helm $version into $out (first time only)..." >&2
mkdir -p "$out"
tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cd "$module"
CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm
mv -f "$tmp/helm" "$out/helm"
echo "$out/helm"
