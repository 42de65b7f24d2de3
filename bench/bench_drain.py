"""Requests lost when a router gets SIGTERM under load (issue 11: a rollout must lose nothing).

One simulator, one router serving a table file, and clients that open a NEW connection for every request, as
kube-proxy hands out connections until the endpoint update reaches it. After ``--before`` seconds of load the
router gets SIGTERM; the clients keep going for ``--after`` seconds (the time endpoint removal takes to reach
every load balancer). A long stream started before the signal shows whether requests in flight complete.

    python -m bench.bench_drain                                  # this checkout (default drain delay)
    python -m bench.bench_drain --router-source /tmp/old-tree    # another tree's router (e.g. before the fix)
    python -m bench.bench_drain --router-args=--drain-delay=0    # this router closing its listener at once

Prints one markdown row: requests and their outcomes before and after SIGTERM, the stream, the exit code.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import shlex
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from zeta_dev.launch.router import RunningRouter
from zeta_dev.launch.sim import SimSpec, start_sims
from zeta_dev.localcluster.processes import ManagedProcess, free_port, python_child_env, wait_until
from zeta_operator.api.table import RoutingTable


def _table(sim_url: str) -> RoutingTable:
    wire = {
        "policy": "bench/drain",
        "queue": {"maxSize": 256, "maxWaitSeconds": 10.0, "agingSeconds": 2.0},
        "backends": [
            {
                "name": "m",
                "model": "m",
                "tasks": ["chat"],
                "maxComplexity": 5,
                "contextWindow": 8192,
                "endpoints": [{"url": sim_url, "maxConcurrency": 64}],
                "state": "Healthy",
            }
        ],
        "classes": [
            {
                "name": "chat",
                "taskType": "chat",
                "complexity": {"min": 1, "max": 5},
                "priority": 5,
                "latencyObjectiveSeconds": 10.0,
                "weights": {"m": 1.0},
            }
        ],
        "classifier": {},
    }
    return RoutingTable.model_validate(wire).sealed(version=1, generated_at="2026-01-01T00:00:00Z")


def _outcome(error: requests.RequestException) -> str:
    text = str(error).lower()
    if "refused" in text:
        return "connection refused"
    if "reset" in text or "aborted" in text:
        return "connection reset"
    return type(error).__name__


def _client(url: str, stop: threading.Event, outcomes: list[tuple[float, str]], lock: threading.Lock) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    while not stop.is_set():
        sent = time.monotonic()
        try:
            response = requests.post(url, json=body, headers={"Connection": "close"}, timeout=30)
            outcome = "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
        except requests.RequestException as e:
            outcome = _outcome(e)
        with lock:
            outcomes.append((sent, outcome))


def _stream(url: str, result: dict[str, str]) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "tell"}],
        "max_tokens": 4000,
        "stream": True,
    }
    received = b""
    try:
        with requests.post(url, json=body, stream=True, timeout=120) as response:
            for chunk in response.iter_content(chunk_size=None):
                received += chunk
        result["stream"] = "completed" if received.rstrip().endswith(b"data: [DONE]") else "cut"
    except requests.RequestException as e:
        result["stream"] = f"cut ({_outcome(e)})"


def run(args: argparse.Namespace) -> str:
    work = Path(tempfile.mkdtemp(prefix="zeta-bench-drain-"))
    with start_sims([SimSpec(model="m", size_b=4, max_seqs=64, time_scale=0.05, seed=1)]) as (sim,):
        table_file = work / "table.json"
        table_file.write_text(_table(sim.url).to_json())
        env = python_child_env()
        if args.router_source:
            env["PYTHONPATH"] = os.pathsep.join([str(args.router_source), env["PYTHONPATH"]])
        port = free_port()
        # -P: the working directory (maybe this checkout) must not shadow --router-source
        argv = [sys.executable, "-P", "-m", "zeta_operator.router", "--listen", f"127.0.0.1:{port}"]
        argv += ["--table-file", str(table_file), *args.router_args]
        router = RunningRouter(port, ManagedProcess("router", argv, log=work / "router.log", env=env))
        try:
            wait_until(
                lambda: router.status("/readyz") == 200, timeout=60, what="router", process=router.process
            )
            url = f"{router.url}/v1/chat/completions"
            stop, lock = threading.Event(), threading.Lock()
            outcomes: list[tuple[float, str]] = []
            clients = [
                threading.Thread(target=_client, args=(url, stop, outcomes, lock), daemon=True)
                for _ in range(args.clients)
            ]
            for c in clients:
                c.start()
            time.sleep(args.before / 2)
            stream_result: dict[str, str] = {}
            streamer = threading.Thread(target=_stream, args=(url, stream_result), daemon=True)
            streamer.start()
            time.sleep(args.before / 2)
            signalled = time.monotonic()
            os.kill(router.process.pid, signal.SIGTERM)
            time.sleep(args.after)
            stop.set()
            for c in clients:
                c.join()
            streamer.join(timeout=120)
            code = router.process.popen.wait(120)
            exited = time.monotonic() - signalled
        finally:
            router.process.stop()
    before = [o for sent, o in outcomes if sent < signalled]
    after = [o for sent, o in outcomes if sent >= signalled]

    def summary(part: list[str]) -> str:
        ok = part.count("ok")
        failures = collections.Counter(o for o in part if o != "ok")
        detail = ", ".join(f"{n} {kind}" for kind, n in failures.most_common())
        return f"{ok} of {len(part)}" + (f" ({detail})" if detail else "")

    router_name = str(args.router_source or "this checkout") + (
        " " + shlex.join(args.router_args) if args.router_args else ""
    )
    return (
        f"| {router_name} | {summary(before)} | {summary(after)} | {stream_result.get('stream', 'unfinished')} "
        f"| {code} | {exited:.1f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=float, default=2.0, help="seconds of load before SIGTERM (default 2)")
    p.add_argument("--after", type=float, default=3.0, help="seconds of load after SIGTERM (default 3)")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    p.add_argument("--router-source", type=Path, help="a source tree whose zeta_operator to run instead")
    p.add_argument("--router-args", type=shlex.split, default=[], help="extra router flags (one string)")
    args = p.parse_args()
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}", file=sys.stderr)
    print("| router | before SIGTERM: ok | after SIGTERM: ok | stream in flight | exit code | exit after s |")
    print("|---|---|---|---|---|---|")
    print(run(args))


if __name__ == "__main__":
    main()
