"""The systems under test, each started as real processes in front of the same simulated backends.

    (a) direct       the two sims, connections spread over both
    (b) nginx        plain reverse proxy: 1 worker, upstream keepalive, proxy_buffering off
    (c) zeta         Zeta's router: classification and weighted choice over both sims
    (d) litellm      LiteLLM proxy, 1 uvicorn worker (uvloop), no master key (no auth, like the others), no
                     callbacks, no retries, no spend/error logs, logs at ERROR
    (e) vllm-router  vLLM router (Rust), power_of_two, 1 tokio worker thread, RUST_LOG=warn

A target that cannot be started here is reported with the reason instead of being dropped silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from zeta_dev.launch.router import start_router
from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims
from zeta_dev.localcluster.processes import ManagedProcess, free_port, wait_until
from zeta_operator.api.table import RoutingTable

from .loadgen import Address
from .procstat import descendants, tool_version

ALL = ("direct", "nginx", "zeta", "litellm", "vllm-router")
LABELS = {
    "direct": "(a) backend directly",
    "nginx": "(b) nginx",
    "zeta": "(c) Zeta router",
    "litellm": "(d) LiteLLM proxy",
    "vllm-router": "(e) vLLM router",
}
MODEL = "sim"
TASKS = ("chat", "code", "summarize", "reasoning")
LITELLM_VENV = Path.home() / ".cache" / "zeta-bench" / "litellm"
LITELLM_INSTALL = f"python3.11 -m venv {LITELLM_VENV} && {LITELLM_VENV}/bin/pip install 'litellm[proxy]'"


class Unavailable(Exception):
    """A target that cannot run on this machine; the message says why and how to fix it."""


@dataclass
class Target:
    key: str
    addresses: list[Address]
    root_pids: list[int] = field(default_factory=list)
    """Processes whose CPU (with their descendants) is the proxy's; empty for the direct target."""
    overhead_header: str | None = None
    version: str = ""

    @property
    def label(self) -> str:
        return LABELS[self.key]

    def pids(self) -> list[int]:
        return [p for root in self.root_pids for p in descendants(root)]


def sim_specs(count: int = 2) -> list[SimSpec]:
    """Cheap, deterministic backends: the first token at once, then one token (one SSE event) every 6 ms.

    A non-streaming request with ``max_tokens: 1`` is answered as soon as the engine task runs. Streams need
    real time between tokens, or the sim sends every token in one event: 6 ms is above the engine's 5 ms
    minimum tick, so each token of a 16-token stream leaves as its own event. ``batch_alpha`` 0 keeps the
    token time independent of how many requests run; ``max_seqs`` 512 means nothing ever waits in the sim.
    """
    return [
        SimSpec(
            model=MODEL,
            seed=i,
            ttft_ms=0.0,
            prefill_us_per_token=0.0,
            tpot_ms=6.0,
            batch_alpha=0.0,
            stream_interval_ms=0.0,
            max_seqs=512,
            extra_args=("--log-level", "WARNING"),
        )
        for i in range(count)
    ]


@contextlib.contextmanager
def backends(log_dir: Path) -> Iterator[list[RunningSim]]:
    with start_sims(sim_specs(), log_dir=log_dir) as sims:
        yield sims


def _address(sim: RunningSim) -> Address:
    return Address("127.0.0.1", sim.port)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except urllib.error.HTTPError:
        return False


# -- (a) ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def direct(sims: list[RunningSim], workdir: Path) -> Iterator[Target]:
    yield Target("direct", [_address(s) for s in sims], version="zeta-sim")


# -- (b) ---------------------------------------------------------------------------------------------------

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp-body;
    proxy_temp_path {dir}/tmp-proxy;
    fastcgi_temp_path {dir}/tmp-fastcgi;
    uwsgi_temp_path {dir}/tmp-uwsgi;
    scgi_temp_path {dir}/tmp-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    upstream sims {{
{servers}
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://sims;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


@contextlib.contextmanager
def nginx(sims: list[RunningSim], workdir: Path) -> Iterator[Target]:
    binary = nginx_binary()
    if binary is None:
        raise Unavailable("nginx binary not found on PATH or in /usr/sbin (apt-get install -y nginx)")
    directory = workdir / "nginx"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    servers = "\n".join(f"        server 127.0.0.1:{s.port};" for s in sims)
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, servers=servers, port=port))
    process = ManagedProcess(
        f"nginx :{port}",
        [binary, "-p", directory, "-c", conf, "-e", directory / "error.log"],
        log=directory / "stdout.log",
    )
    try:
        wait_until(lambda: _tcp_open(port), timeout=15, what="nginx listening", process=process)
        yield Target(
            "nginx", [Address("127.0.0.1", port)], [process.pid], version=tool_version([binary, "-v"])
        )
    finally:
        process.stop()


def _tcp_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# -- (c) ---------------------------------------------------------------------------------------------------


def zeta_table(sims: list[RunningSim]) -> RoutingTable:
    """Two backends (one per sim) with weights, and a class per conventional task type, so the classifier
    runs its header, alias, rule and vocabulary steps on every request."""
    names = [f"sim-{i}" for i in range(len(sims))]
    wire = {
        "policy": "bench/router",
        "queue": {"maxSize": 256, "maxWaitSeconds": 10.0, "agingSeconds": 2.0},
        "defaultClass": "chat",
        "backends": [
            {
                "name": name,
                "model": MODEL,
                "tasks": list(TASKS),
                "maxComplexity": 5,
                "contextWindow": 8192,
                "endpoints": [{"url": sim.url, "maxConcurrency": 1024}],
                "state": "Healthy",
            }
            for name, sim in zip(names, sims, strict=True)
        ],
        "classes": [
            {
                "name": task,
                "taskType": task,
                "complexity": {"min": 1, "max": 5},
                "priority": 5,
                "latencyObjectiveSeconds": 10.0,
                "weights": {name: 1 / len(names) for name in names},
            }
            for task in TASKS
        ],
    }
    return RoutingTable.model_validate(wire).sealed(version=1, generated_at="2026-01-01T00:00:00Z")


@contextlib.contextmanager
def zeta(sims: list[RunningSim], workdir: Path) -> Iterator[Target]:
    directory = workdir / "zeta"
    directory.mkdir(parents=True, exist_ok=True)
    table = directory / "routing-table.json"
    table.write_text(zeta_table(sims).to_json())
    with start_router(
        table_file=table, args=["--seed", "1", "--log-level", "warning"], log_dir=directory
    ) as router:
        yield Target(
            "zeta",
            [Address("127.0.0.1", router.port)],
            [router.process.pid],
            overhead_header="x-zeta-overhead-ms",
            version="zeta-router (aiohttp, 1 process)",
        )


# -- (d) ---------------------------------------------------------------------------------------------------


def litellm_binary() -> str | None:
    given = os.environ.get("ZETA_BENCH_LITELLM")
    candidates: list[str | None] = [given] if given else []
    candidates += [str(LITELLM_VENV / "bin" / "litellm"), shutil.which("litellm")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@contextlib.contextmanager
def litellm(sims: list[RunningSim], workdir: Path) -> Iterator[Target]:
    binary = litellm_binary()
    if binary is None:
        raise Unavailable(
            "litellm not found (ZETA_BENCH_LITELLM, ~/.cache/zeta-bench/litellm or PATH); install it in its "
            f"own venv: {LITELLM_INSTALL}"
        )
    directory = workdir / "litellm"
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": f"{sim.url}/v1",
                    "api_key": "none",
                },
            }
            for sim in sims
        ],
        # As LiteLLM's own benchmark config: no callbacks, no retries (no target retries here: nothing fails).
        "litellm_settings": {
            "set_verbose": False,
            "json_logs": False,
            "telemetry": False,
            "callbacks": [],
            "num_retries": 0,
            "request_timeout": 60,
        },
        "general_settings": {"disable_spend_logs": True, "disable_error_logs": True},
        "router_settings": {"routing_strategy": "simple-shuffle"},
    }
    (directory / "config.yaml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOG": "ERROR",  # also sets uvicorn's log level: no access log
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch from the internet at start
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",  # no auth, like every other target
        "PYTHONUNBUFFERED": "1",
    }
    process = ManagedProcess(
        f"litellm :{port}",
        [binary, "--config", directory / "config.yaml", "--host", "127.0.0.1", "--port", str(port),
         "--num_workers", "1"],
        log=directory / "litellm.log",
        env=env,
    )  # fmt: skip
    try:
        wait_until(
            lambda: _answers(f"http://127.0.0.1:{port}/health/liveliness"),
            timeout=120,
            what="litellm /health/liveliness",
            process=process,
        )
        yield Target(
            "litellm",
            [Address("127.0.0.1", port)],
            [process.pid],
            overhead_header="x-litellm-overhead-duration-ms",
            version=_pip_version(binary, "litellm"),
        )
    finally:
        process.stop()


def _pip_version(binary: str, package: str) -> str:
    python = Path(binary).parent / "python"
    return f"{package} " + tool_version(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version('{package}'))"]
    )


# -- (e) ---------------------------------------------------------------------------------------------------


def vllm_router_binary() -> str | None:
    beside = Path(sys.executable).parent / "vllm-router"
    return str(beside) if os.access(beside, os.X_OK) else shutil.which("vllm-router")


@contextlib.contextmanager
def vllm_router(sims: list[RunningSim], workdir: Path) -> Iterator[Target]:
    binary = vllm_router_binary()
    if binary is None:
        raise Unavailable("vllm-router not found (pip install vllm-router, or pip install -e '.[bench]')")
    directory = workdir / "vllm-router"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "RUST_LOG": "warn", "TOKIO_WORKER_THREADS": "1"}
    process = ManagedProcess(
        f"vllm-router :{port}",
        [binary, "--host", "127.0.0.1", "--port", str(port), "--policy", "power_of_two",
         "--worker-urls", *[s.url for s in sims], "--prometheus-port", str(free_port()),
         "--log-level", "warning"],
        log=directory / "vllm-router.log",
        env=env,
    )  # fmt: skip
    try:
        wait_until(
            lambda: _answers(f"http://127.0.0.1:{port}/health"),
            timeout=60,
            what="vllm-router /health",
            process=process,
        )
        yield Target(
            "vllm-router",
            [Address("127.0.0.1", port)],
            [process.pid],
            version=_pip_version(sys.executable, "vllm-router"),
        )
    finally:
        process.stop()


STARTERS: dict[str, Callable[[list[RunningSim], Path], contextlib.AbstractContextManager[Target]]] = {
    "direct": direct,
    "nginx": nginx,
    "zeta": zeta,
    "litellm": litellm,
    "vllm-router": vllm_router,
}
