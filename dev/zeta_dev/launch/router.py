"""Start the router as a real process, for tests, the local demo and benchmarks.

    with start_router(table_file=path, args=["--seed", "1"]) as router:
        requests.post(f"{router.url}/v1/chat/completions", json=...)
        router.metric("zeta_router_requests_total", backend="small")

The process runs ``python -m zeta_operator.router`` under `ManagedProcess`, so it dies with the harness.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..localcluster.processes import (
    ManagedProcess,
    free_port,
    metric_samples,
    python_child_env,
    wait_until,
)


@dataclass
class RunningRouter:
    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, path: str) -> int:
        """HTTP status of a GET (errors included)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            return e.code

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels`` (0 when there is none)."""
        return sum(metric_samples(self.metrics_text(), name, labels))


@contextlib.contextmanager
def start_router(
    *,
    table_file: Path | None = None,
    configmap: str | None = None,
    kubeconfig: Path | None = None,
    args: Sequence[str] = (),
    log_dir: Path | None = None,
    wait_ready: bool = True,
    startup_timeout: float = 30.0,
    env: dict[str, str] | None = None,
    drain_delay: float = 0.0,
    source: Path | None = None,
) -> Iterator[RunningRouter]:
    """Start a router on a free port; wait for /healthz (and /readyz unless ``wait_ready`` is False).

    ``drain_delay`` is the router's --drain-delay: 0 by default, since no load balancer stands between the
    harness and its routers and every stop would otherwise wait it out (``args`` may override it). ``source``:
    a source tree whose ``zeta_operator`` runs instead of this checkout's (a benchmark's "before the fix")."""
    directory = log_dir if log_dir is not None else Path(tempfile.mkdtemp(prefix="zeta-router-"))
    port = free_port()
    # -P: the working directory (maybe this checkout) must not shadow ``source``
    argv = [
        sys.executable,
        *(["-P"] if source else []),
        "-m",
        "zeta_operator.router",
        "--listen",
        f"127.0.0.1:{port}",
    ]
    argv += ["--drain-delay", f"{drain_delay}s"]
    if table_file is not None:
        argv += ["--table-file", str(table_file)]
    if configmap is not None:
        argv += ["--configmap", configmap]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    full_env = python_child_env(env)
    if source is not None:
        full_env["PYTHONPATH"] = os.pathsep.join([str(source), full_env["PYTHONPATH"]])
    process = ManagedProcess(
        f"router :{port}", [*argv, *args], log=directory / f"router-{port}.log", env=full_env
    )
    router = RunningRouter(port=port, process=process)
    try:
        path = "/readyz" if wait_ready else "/healthz"
        wait_until(
            lambda: router.status(path) == 200,
            timeout=startup_timeout,
            what=f"router {path}",
            process=process,
        )
        yield router
    finally:
        process.stop()
        if log_dir is None:
            shutil.rmtree(directory, ignore_errors=True)
