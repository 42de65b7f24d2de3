"""`zeta-operator`: run the Zeta operator (kopf) in one namespace, several, or the whole cluster.

Runs as a single replica (Deployment strategy Recreate): kopf peering is off (`standalone`), so two replicas
must never run at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import kopf

from . import handlers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zeta-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--namespace", "-n", action="append", help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch the whole cluster")
    parser.add_argument("--health-port", type=int, default=8080, help="/healthz and /metrics port")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON)  # structured logs, one JSON per line
    memo = kopf.Memo()
    memo[handlers.HEALTH_PORT_KEY] = args.health_port
    asyncio.run(
        kopf.operator(
            clusterwide=args.all_namespaces,
            namespaces=args.namespace or [],
            standalone=True,
            memo=memo,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
