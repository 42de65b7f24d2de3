#!/usr/bin/env bash
# The one test command (README, .ci/run): set up what is missing, lint, type-check, run every test,
# then check that nothing was left running or lying around.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
eval "$(bash hack/setup.sh)"

status=0
echo "==> lint and types" >&2
ruff check zeta_operator sim dev tests bench || status=1
ruff format --check zeta_operator sim dev tests bench || status=1
lint-imports || status=1
python -m zeta_operator.api.crdgen --check || status=1
# mypy's cache outside the checkout: a fresh clone (CI) re-checks only what changed (it compares file hashes).
mypy --cache-dir "${ZETA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zeta}/mypy" || status=1
[[ $status == 0 ]] || echo "error: lint or type check failed (the tests run anyway)" >&2

echo "==> tests" >&2
# Bytecode is cached even where the environment turns it off (PYTHONDONTWRITEBYTECODE, set on this project's
# machines): otherwise every worker and every router, operator and simulator process the tests start compiles
# each module it imports from source again (a fresh virtualenv holds no bytecode). It goes to __pycache__ in the
# checkout and the virtualenv, both ignored by git and by the image builds.
unset PYTHONDONTWRITEBYTECODE
before="$(ls -d /tmp/zeta-* 2>/dev/null | sort || true)"
# Files run on ZETA_TEST_WORKERS workers (default 5, 0 = in this process): most of a test's time is spent waiting
# on real processes, so even 2 cores finish sooner. A file stays on one worker, and so do all node tests
# (tests/conftest.py).
python -m pytest -n "${ZETA_TEST_WORKERS:-5}" --dist loadfile "$@" || status=$?

echo "==> leftovers" >&2
left_procs="$(pgrep -af 'zeta-cp-|zeta-prom-|zeta-node-|zeta_sim|zeta_operator\.(router|operator)' | grep -v pgrep || true)"
after="$(ls -d /tmp/zeta-* 2>/dev/null | sort || true)"
left_dirs="$(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d' || true)"
if [[ -n "$left_procs" || -n "$left_dirs" ]]; then
  echo "error: the tests left things behind:" >&2
  [[ -n "$left_procs" ]] && echo "processes:" >&2 && echo "$left_procs" >&2
  [[ -n "$left_dirs" ]] && echo "directories:" >&2 && echo "$left_dirs" >&2
  status=1
else
  echo "no process or temp directory left behind" >&2
fi
exit $status
