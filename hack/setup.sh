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
if [[ ! -x "$venv/bin/python" ]]; then
  echo "==> creating $venv" >&2
  "$python" -m venv "$venv"
fi
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" || sim/pyproject.toml -nt "$stamp" || dev/pyproject.toml -nt "$stamp" ]]; then
  echo "==> installing Python packages (pip cache: ${PIP_CACHE_DIR:-~/.cache/pip})" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  # The product, the simulator (sim/) and the development harness (dev/) are three distributions.
  "$venv/bin/python" -m pip install -q -e ".[test]" -e ./sim -e "./dev[demo]" >&2
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
echo "export PATH=$venv/bin:$assets:\$PATH"
