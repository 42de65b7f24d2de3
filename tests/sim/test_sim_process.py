"""The simulator as a process: flags, replicas in one process, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from importlib.metadata import entry_points
from pathlib import Path

import aiohttp
import pytest

from zeta_dev.launch.sim import SimSpec, start_sims
from zeta_dev.localcluster.processes import ManagedProcess
from zeta_sim.__main__ import build_parser, configs_from_args, main


def test_every_spec_field_becomes_a_flag_the_simulator_understands() -> None:
    spec = SimSpec(
        model="x",
        size_b=14,
        max_seqs=3,
        time_scale=0.5,
        seed=9,
        error_rate=0.25,
        extra_latency_ms=10,
        ttft_ms=1,
        tpot_ms=2,
        prefill_us_per_token=3,
        batch_alpha=0.5,
        max_model_len=4096,
        mean_output_tokens=7,
        kv_cache_tokens=1000,
        stream_interval_ms=5,
        cpu_limit=2,
        memory_limit=1 << 30,
        extra_args=("--unhealthy",),
    )
    (config,) = configs_from_args(build_parser().parse_args(spec.argv(port=1234)))
    settings = asdict(config)
    faults = settings.pop("faults").model_dump()
    assert faults == {
        "error_rate": 0.25,
        "extra_latency_ms": 10,
        "hang": False,
        "unhealthy": True,
        "crash": False,
    }
    expected = {
        k: v
        for k, v in asdict(spec).items()
        if k not in ("port", "extra_args", "error_rate", "extra_latency_ms")
    }
    assert {k: settings[k] for k in expected} == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["--time-scale", "0"],
        ["--error-rate", "2"],
        ["--max-seqs", "0"],
        ["--size-b", "-4"],
        ["--tpot-ms", "x"],
    ],
)
def test_bad_flags_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_zeta_sim_console_script_is_registered() -> None:
    (script,) = entry_points(group="console_scripts", name="zeta-sim")
    assert script.value == "zeta_sim.__main__:main"


def test_replicas_in_one_process_have_their_own_state(tmp_path: Path, http, eventually) -> None:
    log = tmp_path / "replicas.log"
    process = ManagedProcess(
        "replicas",
        [
            sys.executable,
            "-m",
            "zeta_sim",
            "--replicas",
            "2",
            "--port",
            "0",
            "--time-scale",
            "0.01",
            "--model",
            "r",
        ],
        log=log,
    )
    try:
        ports = eventually(
            lambda: (
                [int(p) for p in re.findall(r"on http://127\.0\.0\.1:(\d+)", log.read_text())]
                if log.read_text().count("serving") == 2
                else None
            ),
            what="two replicas",
        )
        a, b = (f"http://127.0.0.1:{p}" for p in ports)
        assert http.post(f"{a}/admin/faults", {"unhealthy": True}).status == 200
        assert (http.get(f"{a}/health").status, http.get(f"{b}/health").status) == (503, 200)
        assert http.post(f"{b}/v1/completions", {"prompt": "hi", "max_tokens": 2}).status == 200
        success = [
            http.get(f"{u}/metrics").body.decode().count("vllm:request_success_total{") for u in (a, b)
        ]
        assert success == [0, 1]
    finally:
        process.stop()


def test_sigterm_lets_in_flight_requests_finish_then_exits_0(eventually) -> None:
    with start_sims([SimSpec(model="term", time_scale=1.0)]) as (sim,):

        async def scenario() -> tuple[int, dict[str, object]]:
            async with aiohttp.ClientSession() as session:
                # About 1.5 s of work, under way when the signal arrives.
                pending = asyncio.create_task(
                    session.post(f"{sim.url}/v1/completions", json={"prompt": "hi", "max_tokens": 150})
                )
                await asyncio.get_running_loop().run_in_executor(
                    None,
                    lambda: eventually(lambda: sim.metric("vllm:num_requests_running") == 1, what="running"),
                )
                sim.process.popen.send_signal(signal.SIGTERM)
                response = await asyncio.wait_for(pending, timeout=30)
                async with response:
                    return response.status, await response.json()

        status, body = asyncio.run(scenario())
        assert status == 200 and body["usage"]["completion_tokens"] == 150
        assert sim.process.popen.wait(30) == 0
        with pytest.raises(OSError):
            sim.set_faults(unhealthy=True)  # no longer listening


def test_sigterm_while_hung_cancels_after_the_grace_period_and_exits_0(http, eventually) -> None:
    spec = SimSpec(model="stuck", time_scale=0.01, extra_args=("--hang", "--shutdown-grace", "0.5"))
    with start_sims([spec]) as (sim,):
        assert http.get(f"{sim.url}/health").status == 503
        client = subprocess.Popen(  # a request that will never be answered, from another process
            [
                sys.executable,
                "-c",
                f"import urllib.request as u; u.urlopen(u.Request('{sim.url}/v1/completions', "
                "data=b'{\"prompt\": \"hi\"}', headers={'Content-Type': 'application/json'}), timeout=60)",
            ],
            stderr=subprocess.DEVNULL,
        )
        try:
            eventually(lambda: sim.metric("vllm:num_requests_waiting") == 1, what="the request to be queued")
            stopping = time.monotonic()
            sim.process.popen.send_signal(signal.SIGTERM)
            assert sim.process.popen.wait(30) == 0
            assert time.monotonic() - stopping >= 0.5  # it did wait for the stuck request first
        finally:
            client.kill()
            client.wait()
