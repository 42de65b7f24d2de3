"""LiteLLM's router strategies in the real-process mode: its proxy in front of the same simulator processes.

LiteLLM has no classifier and no notion of complexity ceilings, so each task class is its own model group
holding only the backends capable of it (task type and complexity ceiling), and the workload sends
``model=<class>`` with the class the router's own classifier gives the request's body (real.classified_groups):
LiteLLM routes on the same classification as the routers, its mistakes included. What it does not get is the
router's per-request doubt filter (proxy.Forwarder._eligible: no smaller backend when the classifier is unsure
of the complexity, no backend lacking a plausible task type): a group always holds the class's whole capable
set. The strategies are LiteLLM's own ``router_settings.routing_strategy``:

- ``litellm-least-busy``: fewest in-flight requests in the group (LiteLLM's counter, per worker process);
- ``litellm-latency-based``: lowest recent latency in the group (``latency-based-routing``, its defaults);
- ``litellm-simple-shuffle``: weighted random choice with the static strategy's weights (each class's
  preferred backends share 1, fallbacks 0), i.e. Zeta's *static* through LiteLLM.

No per-deployment caps (``max_parallel_requests``, rpm/tpm): LiteLLM has no router-side queue, so anything it
sends waits in the engine, as in *static*. No retries, no cooldown changes, no callbacks, spend and error logs
off, logs at ERROR. LiteLLM runs from its own venv (``~/.cache/zeta-bench/litellm``, as bench/router does):
``litellm[proxy]`` downgrades python-dateutil below what the kubernetes client in the project venv needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from zeta_dev.launch.sim import RunningSim
from zeta_dev.localcluster.processes import ManagedProcess, free_port, wait_until

from .scenario import Scenario, capable

STRATEGIES = {
    "litellm-least-busy": "least-busy",
    "litellm-latency-based": "latency-based-routing",
    "litellm-simple-shuffle": "simple-shuffle",
}
VENV = Path.home() / ".cache" / "zeta-bench" / "litellm"


def binary() -> str:
    """The venv's ``litellm``; the venv is created (python3 -m venv + pip install 'litellm[proxy]') if missing."""
    given = os.environ.get("ZETA_BENCH_LITELLM")
    if given:
        return given
    exe = VENV / "bin" / "litellm"
    if not os.access(exe, os.X_OK):
        print(f"    creating {VENV} and installing litellm[proxy] into it (once)", flush=True)
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    return str(exe)


def version(exe: str) -> str:
    python = Path(exe).parent / "python"
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def model_id(task_class: str, backend: str) -> str:
    return f"{task_class}@{backend}"


def backend_of(model_id_header: str) -> str:
    return model_id_header.rpartition("@")[2]


def config(
    sc: Scenario, sims: dict[str, RunningSim], models: dict[str, str], routing: str, timeout: float
) -> dict:
    groups = sc.backends()
    preferred = {c.name: list(c.preferred) for c in sc.policy.classes}
    model_list = []
    for shape in sc.classes:
        for name, group in groups.items():
            if not capable(group, shape):
                continue
            params = {
                "model": f"openai/{models[name]}",
                "api_base": f"{sims[name].url}/v1",
                "api_key": "none",
                "timeout": timeout,
            }
            if routing == "simple-shuffle":
                share = preferred[shape.name]
                params["weight"] = 1.0 / len(share) if name in share else 0.0
            model_list.append(
                {
                    "model_name": shape.name,
                    "litellm_params": params,
                    "model_info": {"id": model_id(shape.name, name)},
                }
            )
    return {
        "model_list": model_list,
        "litellm_settings": {
            "set_verbose": False,
            "json_logs": False,
            "telemetry": False,
            "num_retries": 0,
            "request_timeout": timeout,
        },
        "general_settings": {"disable_spend_logs": True, "disable_error_logs": True},
        "router_settings": {"routing_strategy": routing, "num_retries": 0, "timeout": timeout},
    }


@dataclass
class Proxy:
    url: str
    process: ManagedProcess
    version: str


@contextlib.contextmanager
def start(
    sc: Scenario,
    sims: dict[str, RunningSim],
    models: dict[str, str],
    strategy: str,
    *,
    workers: int,
    timeout: float,
    workdir: Path,
) -> Iterator[Proxy]:
    exe = binary()
    path = workdir / "litellm.yaml"
    path.write_text(
        json.dumps(config(sc, sims, models, STRATEGIES[strategy], timeout), indent=1)
    )  # JSON is YAML
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOG": "ERROR",  # also uvicorn's level: no access log
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch from the internet at start
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",  # no auth, like the Zeta router here
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    process = ManagedProcess(
        f"litellm :{port}",
        [exe, "--config", path, "--host", "127.0.0.1", "--port", str(port), "--num_workers", str(workers)],
        log=workdir / "litellm.log",
        env=env,
    )
    try:
        wait_until(
            lambda: _answers(f"http://127.0.0.1:{port}/health/liveliness"),
            timeout=180,
            what="litellm /health/liveliness",
            process=process,
        )
        yield Proxy(f"http://127.0.0.1:{port}", process, version(exe))
    finally:
        process.stop()
        if process.popen.returncode not in (0, -15, None):
            print(process.log_tail(10), file=sys.stderr)


def _answers(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:
        return int(response.status) == 200
