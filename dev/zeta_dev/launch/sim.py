"""Start simulated model servers as real processes, for tests, the local demo and benchmarks.

    with start_sims([SimSpec(model="small", size_b=4), SimSpec(model="big", size_b=14)]) as (small, big):
        ...  # send OpenAI requests to f"{small.url}/v1/chat/completions"; route to small.address
        big.set_faults(extra_latency_ms=500)
        assert small.metric("vllm:num_requests_waiting") == 0

Each spec is one process (``python -m zeta_sim``) under `ManagedProcess`, so it dies with the harness.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..localcluster.processes import (
    ManagedProcess,
    free_port,
    metric_samples,
    python_child_env,
    wait_until,
)


@dataclass(frozen=True)
class SimSpec:
    """One simulated instance; unset (None) fields take the simulator's defaults (see ``zeta-sim --help``)."""

    model: str = "sim"
    size_b: float = 4.0
    max_seqs: int = 64
    time_scale: float = 1.0
    seed: int = 0
    error_rate: float = 0.0
    extra_latency_ms: float = 0.0
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    prefill_us_per_token: float | None = None
    batch_alpha: float | None = None
    max_model_len: int | None = None
    mean_output_tokens: int | None = None
    kv_cache_tokens: int | None = None
    stream_interval_ms: float | None = None
    cpu_limit: float | None = None
    memory_limit: int | None = None
    port: int = 0
    """0: pick a free port at start."""
    extra_args: tuple[str, ...] = ()
    """Further command-line flags, passed as they are (e.g. ``("--unhealthy",)``)."""

    def argv(self, *, port: int) -> list[str]:
        """The simulator's command-line arguments for this spec on ``port``."""
        args = ["--port", str(port)]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("port", "extra_args") or value is None:
                continue
            args += [f"--{f.name.replace('_', '-')}", str(value)]
        return [*args, *self.extra_args]


@dataclass
class RunningSim:
    """A started instance: where it listens, the process behind it and its fault switch."""

    spec: SimSpec
    port: int
    process: ManagedProcess

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """POST /admin/faults (only the given keys change) and return the faults now in force.

        With ``crash=True`` the process exits; this returns once it has (``process.popen.returncode`` is 3).
        """
        request = urllib.request.Request(
            f"{self.url}/admin/faults",
            data=json.dumps(faults).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                current: dict[str, Any] = json.load(response)
        except (ConnectionError, urllib.error.URLError):
            if not faults.get("crash"):
                raise
            current = dict(faults)
        if faults.get("crash"):
            self.process.popen.wait(10)
        return current

    def restart(self, *, timeout: float = 60.0) -> None:
        """Start the simulator again (same flags and port) after its process died or was killed; returns once
        it answers /health. `start_sims` stops the new process at its end."""
        self.process.stop()  # a no-op for a dead process; a live one would hold the port
        self.process = self.process.respawn()
        wait_until(
            functools.partial(_answers, f"{self.url}/health"),
            timeout=timeout,
            what=f"{self.process.name} /health after a restart",
            process=self.process,
        )

    def faults(self) -> dict[str, Any]:
        """GET /admin/faults."""
        with urllib.request.urlopen(f"{self.url}/admin/faults", timeout=10) as response:
            current: dict[str, Any] = json.load(response)
        return current

    def metrics_text(self) -> str:
        """GET /metrics, the Prometheus text exposition."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float | None:
        """Sum of the samples called ``name`` (e.g. ``vllm:num_requests_waiting``) whose labels include
        ``labels``; None when there is no such sample."""
        found = metric_samples(self.metrics_text(), name, labels)
        return sum(found) if found else None


@contextlib.contextmanager
def start_sims(
    specs: Sequence[SimSpec], *, log_dir: Path | None = None, startup_timeout: float = 60.0
) -> Iterator[list[RunningSim]]:
    """Start every spec at once, wait until each answers /health, stop them all on exit.

    Logs go to ``log_dir`` (kept), or to a temporary directory removed on exit; a sim that fails to start
    raises `StartupError` with the tail of its log.
    """
    directory = log_dir if log_dir is not None else Path(tempfile.mkdtemp(prefix="zeta-sim-"))
    env = python_child_env()
    sims: list[RunningSim] = []
    try:
        for i, spec in enumerate(specs):
            port = spec.port or free_port()
            process = ManagedProcess(
                f"sim {spec.model} :{port}",
                [sys.executable, "-m", "zeta_sim", *spec.argv(port=port)],
                log=directory / f"sim-{i}-{spec.model}-{port}.log",
                env=env,
            )
            sims.append(RunningSim(spec=spec, port=port, process=process))
        for sim in sims:
            wait_until(
                functools.partial(_answers, f"{sim.url}/health"),
                timeout=startup_timeout,
                what=f"{sim.process.name} /health",
                process=sim.process,
            )
        yield sims
    finally:
        if sims:
            with ThreadPoolExecutor(max_workers=len(sims)) as pool:  # each stop may wait out a grace period
                list(pool.map(lambda s: s.process.stop(), sims))
        if log_dir is None:
            shutil.rmtree(directory, ignore_errors=True)


def _answers(url: str) -> bool:
    """True once the server answers at all: 503 counts, since a sim started with a fault is up but unhealthy."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except urllib.error.HTTPError as e:
        return e.code == 503
