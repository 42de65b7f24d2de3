#!/usr/bin/env bash
# Makes a real Prometheus server available and prints its path: PROMETHEUS_BIN if set, one on PATH,
# or the distribution's package (Debian/Ubuntu, as root). Prometheus is only scraped and queried over HTTP,
# so any 2.x or 3.x release works.
set -euo pipefail

if [[ -n "${PROMETHEUS_BIN:-}" && -x "$PROMETHEUS_BIN" ]]; then echo "$PROMETHEUS_BIN"; exit 0; fi
if command -v prometheus >/dev/null; then command -v prometheus; exit 0; fi

if command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
  echo "installing prometheus from the distribution's packages..." >&2
  export DEBIAN_FRONTEND=noninteractive
  # The package's service must not start: the harness runs its own servers on free ports.
  policy=/usr/sbin/policy-rc.d; made_policy=0
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' > $policy; chmod +x $policy; made_policy=1; fi
  (apt-get install -y -qq --no-install-recommends prometheus >&2 ||
    { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends prometheus >&2; })
  [[ $made_policy == 1 ]] && rm -f $policy
  command -v prometheus; exit 0
fi

echo "error: no prometheus found. Install it (apt-get install prometheus, brew install prometheus) or set PROMETHEUS_BIN" >&2
exit 1
