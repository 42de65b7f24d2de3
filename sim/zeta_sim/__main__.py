"""``python -m zeta_sim`` / ``zeta-sim``: serve one or more simulated model-server instances.

    zeta-sim --model coder-7b --size-b 7 --port 8001
    zeta-sim --model small --size-b 4 --replicas 3 --port 9000 --time-scale 0.1   # ports 9000, 9001, 9002

SIGTERM or SIGINT stops accepting, lets in-flight requests finish for ``--shutdown-grace`` seconds, cancels the
rest and exits 0. A crash fault exits 3 at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from .config import GIB, MIB, SimConfig
from .faults import Faults
from .latency import __doc__ as LATENCY_MODEL_DOC
from .server import Simulator

log = logging.getLogger("zeta_sim")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zeta-sim",
        description="An OpenAI-compatible server that behaves like one vLLM instance of a given size.",
        epilog=LATENCY_MODEL_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve = p.add_argument_group("serving")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    serve.add_argument(
        "--port", type=int, default=8000, help="first port; 0 picks free ones (default %(default)s)"
    )
    serve.add_argument(
        "--replicas",
        type=_positive_int,
        default=1,
        help="independent instances on consecutive ports, each with its own state and metrics",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=float,
        default=5.0,
        help="seconds in-flight requests get to finish on SIGTERM (default %(default)s)",
    )
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    model = p.add_argument_group("model")
    model.add_argument("--model", default=None, help="served model name (default sim-<size>b)")
    model.add_argument(
        "--size-b",
        type=_positive_float,
        default=4.0,
        help="parameters in billions; sets latency defaults (default %(default)s)",
    )
    model.add_argument(
        "--max-seqs",
        type=_positive_int,
        default=64,
        help="sequences running at once; more wait in a FIFO queue (default %(default)s)",
    )
    model.add_argument(
        "--ttft-ms", type=_non_negative_float, help="fixed time to first token (default by size)"
    )
    model.add_argument(
        "--tpot-ms", type=_non_negative_float, help="time per output token alone (default by size)"
    )
    model.add_argument(
        "--prefill-us-per-token",
        type=_non_negative_float,
        help="prefill time per prompt token in microseconds (default by size)",
    )
    model.add_argument(
        "--batch-alpha",
        type=_non_negative_float,
        help="per-token slowdown at a full batch is 1+alpha (default 1.0)",
    )
    model.add_argument("--max-model-len", type=_positive_int, default=8192, help="context window in tokens")
    model.add_argument(
        "--mean-output-tokens",
        type=_positive_int,
        default=128,
        help="mean answer length when max_tokens is not set (default %(default)s)",
    )
    model.add_argument(
        "--kv-cache-tokens",
        type=_positive_int,
        help="KV cache capacity in tokens (default 512 per --max-seqs slot)",
    )
    model.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        help="multiplies every delay; 0.1 runs ten times faster (default %(default)s)",
    )
    model.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds answer lengths and injected errors; replica i uses seed+i (default %(default)s)",
    )
    model.add_argument(
        "--stream-interval-ms",
        type=_non_negative_float,
        default=20.0,
        help="shortest time between two events of one stream; tokens are grouped (default 20)",
    )

    resources = p.add_argument_group("reported resources")
    resources.add_argument(
        "--cpu-limit", type=_positive_float, default=1.0, help="CPU limit in cores (default 1)"
    )
    resources.add_argument(
        "--memory-limit", type=_positive_int, default=2 * GIB, help="memory limit in bytes (default 2 GiB)"
    )
    resources.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=8 * MIB,
        help="larger request bodies get 413 (default 8 MiB)",
    )

    faults = p.add_argument_group("faults at start (change them at run time with POST /admin/faults)")
    faults.add_argument("--error-rate", type=_fraction, default=0.0, help="fraction of requests answered 500")
    faults.add_argument(
        "--latency-spike-ms",
        "--extra-latency-ms",
        dest="extra_latency_ms",
        type=_non_negative_float,
        default=0.0,
        help="added to every time to first token",
    )
    faults.add_argument("--hang", action="store_true", help="accept requests but never answer; /health 503")
    faults.add_argument("--unhealthy", action="store_true", help="/health answers 503, requests still served")
    return p


def configs_from_args(args: argparse.Namespace) -> list[SimConfig]:
    """One config per replica: the same model, seeds ``seed``, ``seed + 1``, ..."""
    faults = Faults(
        error_rate=args.error_rate,
        extra_latency_ms=args.extra_latency_ms,
        hang=args.hang,
        unhealthy=args.unhealthy,
    )
    return [
        SimConfig(
            model=args.model or f"sim-{args.size_b:g}b",
            size_b=args.size_b,
            max_seqs=args.max_seqs,
            ttft_ms=args.ttft_ms,
            tpot_ms=args.tpot_ms,
            prefill_us_per_token=args.prefill_us_per_token,
            batch_alpha=args.batch_alpha,
            max_model_len=args.max_model_len,
            mean_output_tokens=args.mean_output_tokens,
            kv_cache_tokens=args.kv_cache_tokens,
            time_scale=args.time_scale,
            seed=args.seed + i,
            stream_interval_ms=args.stream_interval_ms,
            cpu_limit=args.cpu_limit,
            memory_limit=args.memory_limit,
            max_body_bytes=args.max_body_bytes,
            faults=faults,
        )
        for i in range(args.replicas)
    ]


async def serve(configs: Sequence[SimConfig], *, host: str, port: int, shutdown_grace: float) -> None:
    """Serve every instance until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runners: list[web.AppRunner] = []
    try:
        for i, config in enumerate(configs):
            # handler_cancellation: a client that hangs up frees its batch slot, as vLLM aborts the request.
            runner = web.AppRunner(
                Simulator(config).make_app(),
                access_log=None,
                handler_cancellation=True,
                shutdown_timeout=shutdown_grace,
            )
            await runner.setup()
            runners.append(runner)
            site = web.TCPSite(runner, host, port + i if port else 0, shutdown_timeout=shutdown_grace)
            await site.start()
            for address in runner.addresses:
                log.info(
                    "serving %s (%gB) on http://%s:%d", config.model, config.size_b, address[0], address[1]
                )
        await stop.wait()
        log.info("shutting down: finishing in-flight requests for up to %gs", shutdown_grace)
    finally:
        await asyncio.gather(*(r.cleanup() for r in runners), return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        configs = configs_from_args(args)
    except ValueError as e:
        print(f"zeta-sim: {e}", file=sys.stderr)
        return 2
    _raise_open_file_limit()
    asyncio.run(serve(configs, host=args.host, port=args.port, shutdown_grace=args.shutdown_grace))
    return 0


def _raise_open_file_limit() -> None:
    """Thousands of concurrent connections need more descriptors than the usual soft limit of 1024."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
