#!/usr/bin/env bash
# The local demo (README's main command): sets up what is missing, then runs zeta_dev.demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
eval "$(bash hack/setup.sh)"
exec python -m zeta_dev.demo "$@"
