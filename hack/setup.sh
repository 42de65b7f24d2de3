#!/usr/bin/env bash
# Everything a fresh machine needs, idempotent and cached: a virtualenv with Zeta and its test tools,
# the Kubernetes control plane built from pinned Go modules, and a Prometheus server.
# Prints `export` lines for the caller to eval.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "error: Python >= 3.11 is needed (found $("$python" --version 2>&1))" >&2; exit 1; }

venv="$root/.venv"
stamp="$venv/.zeta-installed"
# uv installs from its cache in seconds where pip takes minutes (it re-resolves and re-downloads index pages on
# every fresh clone, which CI always is). It is pinned and kept in the machine's cache, outside the checkout.
cache="${ZETA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zeta}"
uv_version=0.13.9
uv="$cache/tools/uv-$uv_version/bin/uv"
if [[ ! -x "$uv" ]]; then
  echo "==> installing uv $uv_version into $cache/tools" >&2
  "$python" -m venv "$cache/tools/uv-$uv_version"
  "$cache/tools/uv-$uv_version/bin/python" -m pip install -q "uv==$uv_version" >&2
fi
if [[ ! -x "$venv/bin/python" ]]; then
  echo "==> creating $venv" >&2
  # --seed: pip in the venv too, for the commands that document `pip install` (benchmarks, the wheel test).
  "$uv" venv -q --seed --python "$python" "$venv" >&2
fi
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" || sim/pyproject.toml -nt "$stamp" || dev/pyproject.toml -nt "$stamp" ]]; then
  echo "==> installing Python packages (uv cache: ${UV_CACHE_DIR:-~/.cache/uv})" >&2
  # The product, the simulator (sim/) and the development harness (dev/) are three distributions.
  VIRTUAL_ENV="$venv" "$uv" pip install -q -e ".[test]" -e ./sim -e "./dev[demo]" >&2
  touch "$stamp"
fi

echo "==> Kubernetes control plane" >&2
assets="$(bash hack/build-controlplane.sh)"
echo "==> Prometheus" >&2
prometheus="$(bash hack/install-prometheus.sh)"
echo "==> helm" >&2
helm="$(bash hack/build-helm.sh)"

echo "export KUBEBUILDER_ASSETS=$assets"
echo "export PROMETHEUS_BIN=$prometheus"
echo "export HELM_BIN=$helm"
echo "export ZETA_UV=$uv"
echo "export PATH=$venv/bin:$assets:\$PATH"
