"""The real-process mode: the same scenario against simulator processes through the real router.

- static, round-robin, least-request: fresh simulators and a router reading a fixed table file, with
  ``--strategy`` for the two baselines (static is the weighted router on a table that gives each class to its
  preferred backend only, with no router-side cap, so everything waits in the preferred engine);
- litellm-least-busy, litellm-latency-based, litellm-simple-shuffle: LiteLLM's proxy (its own venv) in front of
  the same fresh simulators, one model group per task class holding only its capable backends, each request
  sent to the group of the class the router's classifier gives it (bench/routing/litellm_proxy.py);
- zeta: the demo's full loop (zeta_dev.demo): a real control plane, Prometheus scraping every second, the
  operator with its ServiceAccount, the router watching the routing-table ConfigMap.

Only the demo fleet (one 4B, one 7B coder, one 14B) runs here; faults go through the simulator's /admin/faults,
and a crashed backend's pod is marked NotReady ``notready_after`` seconds later (the kubelet's part).

Requests carry held-out labelled prompts and no class headers: the router classifies them. The Zeta router and
the baselines run as ``scenario.routers`` processes (2 by default, as the chart deploys them), each request to
one of them at random; external load goes straight to a simulator, past every router.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from zeta_dev.launch.router import RunningRouter, start_router
from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims
from zeta_operator.api.common import parse_duration
from zeta_operator.api.table import RoutingTable, TableBackend, TableClass, TableEndpoint, TableQueue
from zeta_operator.router.metrics import SECOND_OPINION_OUTCOMES

from . import litellm_proxy
from .des import label_headers, router_classification, router_snapshot
from .prompts import Prompt, assign
from .records import RequestRecord, RunResult
from .scenario import ClassShape, Scenario

DRAIN_S = 60.0


def _models() -> dict[str, str]:
    from zeta_dev.demo.settings import FLEET, sample_manifest

    return {name: sample_manifest(name)["spec"]["model"] for name in FLEET}


def _specs(sc: Scenario) -> list[SimSpec]:
    groups = sc.backends()
    models = _models()
    if set(groups) != set(models) or any(g.endpoints != 1 for g in groups.values()):
        raise SystemExit(f"real mode runs the demo fleet only ({', '.join(models)}, one endpoint each)")
    return [
        SimSpec(model=models[name], size_b=g.size_b, max_seqs=g.max_seqs, seed=i)
        for i, (name, g) in enumerate(groups.items())
    ]


def _fixed_table(sc: Scenario, sims: dict[str, RunningSim], strategy: str) -> RoutingTable:
    models = _models()
    policy = sc.policy
    static = strategy == "static"
    backends = [
        TableBackend(
            name=name, model=models[name], tasks=list(g.tasks), max_complexity=g.max_complexity, context_window=32768,
            size_billions=g.size_b,
            endpoints=[TableEndpoint(url=sims[name].url, max_concurrency=1_000_000 if static else g.max_concurrency)],
        )
        for name, g in sc.backends().items()
    ]  # fmt: skip
    classes = []
    for c in policy.classes:
        weights = {n: 1.0 / len(c.preferred) for n in c.preferred} if static else {}
        classes.append(
            TableClass(name=c.name, task_type=c.task_type, complexity=c.complexity, priority=c.priority,
                       latency_objective_seconds=parse_duration(c.latency_objective), weights=weights,
                       preferred=list(c.preferred))  # the router's spill floor reads them, as in the operator's table
        )  # fmt: skip
    queue = TableQueue.of(policy.queue)
    return RoutingTable(
        policy="bench/fixed", queue=queue, backends=backends, classes=classes,
        classifier=policy.classifier, default_class=policy.default_class,
    )  # fmt: skip


STRATEGIES = ("static", "round-robin", "least-request", "zeta", *litellm_proxy.STRATEGIES)


def run_all(sc: Scenario, strategies: list[str], *, litellm_workers: int = 1) -> list[RunResult]:
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise SystemExit(f"unknown real-mode strategies {unknown}; known: {', '.join(STRATEGIES)}")
    results = []
    for strategy in strategies:
        started = time.perf_counter()
        if strategy == "zeta":
            result = run_zeta(sc)
        elif strategy in litellm_proxy.STRATEGIES:
            result = run_litellm(sc, strategy, workers=litellm_workers)
        else:
            result = run_fixed(sc, strategy)
        result.wall_seconds = time.perf_counter() - started
        results.append(result)
    return results


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="zeta-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _second_opinion(sc: Scenario) -> list[str]:
    return ["--second-opinion", "encoder"] if sc.second_opinion else []


def _print_second_opinions(sc: Scenario, routers: Sequence[RunningRouter]) -> None:
    """What the encoder did, summed over the routers: whether it kept up shows in busy and late."""
    if not sc.second_opinion:
        return
    outcomes = {
        o: sum(int(r.metric("zeta_router_second_opinion_total", outcome=o)) for r in routers)
        for o in SECOND_OPINION_OUTCOMES
    }
    print("      second opinion: " + ", ".join(f"{o} {n}" for o, n in outcomes.items()), flush=True)


def run_fixed(sc: Scenario, strategy: str) -> RunResult:
    print(f"    real: {sc.name} / {strategy}", flush=True)
    with _workdir() as work, start_sims(_specs(sc), log_dir=work) as running:
        sims = dict(zip(sc.backends(), running, strict=True))
        table_file = work / "table.json"
        table = _fixed_table(sc, sims, strategy)
        table_file.write_text(table.sealed(version=1, generated_at="").to_json())
        # static is the weighted router on a fixed table: without the engines' occupancy, as the DES runs it
        args = ["--log-level", "warning", "--replicas", str(sc.routers), "--engine-poll-interval", "0"]
        args += _second_opinion(sc)
        if strategy in ("round-robin", "least-request"):
            args += ["--strategy", strategy]
        with contextlib.ExitStack() as stack:
            routers = [
                stack.enter_context(
                    start_router(table_file=table_file, args=["--seed", str(i + 1), *args], log_dir=work)
                )
                for i in range(sc.routers)
            ]
            records = asyncio.run(drive(sc, [r.url for r in routers], sims))
            _print_second_opinions(sc, routers)
    return _result(sc, strategy, records, [])


def run_litellm(sc: Scenario, strategy: str, *, workers: int) -> RunResult:
    from bench.router.procstat import cpu_seconds, descendants

    print(f"    real: {sc.name} / {strategy} (LiteLLM proxy, {workers} worker(s))", flush=True)
    with _workdir() as work, start_sims(_specs(sc), log_dir=work) as running:
        sims = dict(zip(sc.backends(), running, strict=True))
        groups = classified_groups(sc, _fixed_table(sc, sims, "least-request"))
        with litellm_proxy.start(
            sc, sims, _models(), strategy, workers=workers, timeout=sc.duration + DRAIN_S, workdir=work
        ) as proxy:
            cpu0 = cpu_seconds(descendants(proxy.process.pid))
            t0 = time.monotonic()
            records = asyncio.run(drive(sc, [proxy.url], sims, litellm=groups))
            cpu = cpu_seconds(descendants(proxy.process.pid)) - cpu0
            wall = time.monotonic() - t0
    result = _result(sc, strategy, records, [])
    overhead = sorted(r.overhead_ms for r in records if r.overhead_ms is not None)
    if overhead:
        p50, p99 = overhead[len(overhead) // 2], overhead[min(len(overhead) - 1, int(len(overhead) * 0.99))]
        result.notes.append(
            f"{strategy}: litellm {proxy.version}, {workers} worker(s); proxy CPU {cpu:.1f} s over {wall:.0f} s "
            f"({cpu / wall:.0%} of one core); proxy's own overhead per request (x-litellm-overhead-duration-ms) "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {overhead[-1]:.1f} ms"
        )
    return result


def classified_groups(sc: Scenario, table: RoutingTable) -> dict[str, str]:
    """prompt id -> the class the router's classifier puts it in, for every prompt the run sends: LiteLLM has
    no classifier, so its requests name this class as their model group (``model=<class>``). It is the same
    code and model a router process runs on the same body (des.router_classification on the router's
    snapshot of ``table``), done before the clock starts so the load generator does not pay for it. Labels
    as headers only with --label-headers, as for the routers."""
    snapshot = router_snapshot(table)
    arrivals = sc.arrivals()
    chosen = assign([(t, c.name) for t, c in arrivals], sc.prompts, seed=sc.seed)
    groups: dict[str, str] = {}
    for (_, shape), prompt in zip(arrivals, chosen, strict=True):
        if prompt.id not in groups:
            headers = label_headers(prompt) if sc.label_headers else None
            cls = router_classification(snapshot, prompt, max_tokens=shape.output_tokens, headers=headers)
            groups[prompt.id] = cls.task_class.name
    return groups


def run_zeta(sc: Scenario) -> RunResult:
    from zeta_dev.demo.settings import FLEET, NAMESPACE, demo_backend, demo_policy
    from zeta_dev.demo.show import wait_for_table
    from zeta_dev.demo.stack import router_identity
    from zeta_dev.localcluster.cluster import Cluster
    from zeta_dev.localcluster.controlplane import ControlPlane, control_plane_binaries
    from zeta_dev.localcluster.fleet import (
        read_table,
        ready_pod,
        set_pod_ready,
        start_operator,
        watch_prometheus,
    )
    from zeta_dev.localcluster.prometheus import Prometheus

    print(f"    real: {sc.name} / zeta (control plane, Prometheus 1s scrape, operator, router)", flush=True)
    weights: list[tuple[float, dict[str, dict[str, float]]]] = []
    binaries = control_plane_binaries(quiet=True)
    with _workdir() as work, ControlPlane.running(binaries=binaries) as cp:
        cluster = Cluster(kubeconfig=cp.kubeconfig, kubectl_binary=binaries / "kubectl")
        cluster.install_crds()
        cluster.kubectl("create", "namespace", NAMESPACE)
        with (
            Prometheus.running(scrape_interval="1s") as prom,
            start_sims(_specs(sc), log_dir=work) as running,
        ):
            sims = dict(zip(FLEET, running, strict=True))
            for name, sim in sims.items():
                ready_pod(cluster, NAMESPACE, f"{name}-0", {"app": name})
                cluster.apply([demo_backend(name, sim.port)], namespace=NAMESPACE)
            watch_prometheus(prom, NAMESPACE, {sim.address: f"{name}-0" for name, sim in sims.items()})
            policy = demo_policy(prom.url)
            cluster.apply([policy], namespace=NAMESPACE)
            operator = start_operator(cluster, NAMESPACE, work)
            try:
                configmap = policy["spec"]["routingTable"]["configMapName"]
                wait_for_table(cluster, configmap, namespace=NAMESPACE)
                with router_identity(cluster, work) as kubeconfig, contextlib.ExitStack() as stack:
                    routers = [
                        stack.enter_context(start_router(
                            configmap=f"{NAMESPACE}/{configmap}", kubeconfig=kubeconfig, log_dir=work,
                            args=["--seed", str(i + 1), "--log-level", "warning", "--replicas", str(sc.routers),
                                  "--engine-poll-interval", f"{sc.engine_poll:g}", *_second_opinion(sc)],
                        ))
                        for i in range(sc.routers)
                    ]  # fmt: skip
                    prom.set_targets(
                        "router",
                        {
                            f"127.0.0.1:{r.port}": {"namespace": NAMESPACE, "pod": f"zeta-router-{i}", "container": "router"}
                            for i, r in enumerate(routers)
                        },
                    )  # fmt: skip

                    async def sample(t: float) -> None:
                        table = await asyncio.to_thread(read_table, cluster, NAMESPACE, configmap)
                        if table is not None:
                            now = {c.name: dict(c.weights) for c in table.classes}
                            if not weights or weights[-1][1] != now:
                                weights.append((t, now))

                    def not_ready(backend: str) -> None:
                        set_pod_ready(cluster, NAMESPACE, f"{backend}-0", False)

                    urls = [r.url for r in routers]
                    records = asyncio.run(drive(sc, urls, sims, sample=sample, not_ready=not_ready))
                    _print_second_opinions(sc, routers)
            finally:
                operator.process.stop()
    return _result(sc, "zeta", records, weights)


def _result(
    sc: Scenario,
    strategy: str,
    records: list[RequestRecord],
    weights: list[tuple[float, dict[str, dict[str, float]]]],
) -> RunResult:
    groups = sc.backends()
    models = {m: n for n, m in _models().items()}
    violations = 0
    for r in records:
        r.backend = models.get(r.backend, r.backend)
        if r.status == "ok" and r.backend in groups:
            group = groups[r.backend]
            r.cost = group.cost
            r.quality = sc.answer_quality(r.backend, r.task, r.complexity)
            if r.task not in group.tasks or r.complexity > group.max_complexity:
                violations += 1  # true labels
    return RunResult(sc.name, strategy, "real", records, weights, violations)


async def drive(
    sc: Scenario,
    urls: list[str],
    sims: dict[str, RunningSim],
    *,
    sample: Callable[[float], Awaitable[None]] | None = None,
    not_ready: Callable[[str], None] | None = None,
    litellm: dict[str, str] | None = None,
) -> list[RequestRecord]:
    """Send every arrival on time (open loop), inject the faults on schedule, wait for every answer."""
    timeout = aiohttp.ClientTimeout(total=sc.duration + DRAIN_S)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        arrivals = sc.arrivals()
        chosen = assign([(t, c.name) for t, c in arrivals], sc.prompts, seed=sc.seed)
        spread = random.Random(f"routers:{sc.seed}")  # a Service spreads connections over the replicas
        start = time.monotonic()
        background = [asyncio.create_task(_faults(sc, sims, start, not_ready))]
        external = asyncio.create_task(_external(session, sc, sims, start))
        if sample is not None:
            background.append(asyncio.create_task(_sampler(sample, start, sc.duration + 10)))
        tasks = []
        for (t, shape), prompt in zip(arrivals, chosen, strict=True):
            delay = start + t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            url = spread.choice(urls)
            tasks.append(asyncio.create_task(_one(session, url, shape, prompt, t, sc.label_headers, litellm)))
        records = list(await asyncio.gather(*tasks))
        sent, answered = await external
        if sent and answered < sent:  # the scenario's external load did not happen as written: say so loudly
            raise RuntimeError(f"external load: only {answered} of {sent} direct requests were answered 200")
        for b in background:
            b.cancel()
        await asyncio.gather(*background, return_exceptions=True)
    return records


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    shape: ClassShape,
    prompt: Prompt,
    t: float,
    with_labels: bool,
    litellm: dict[str, str] | None = None,
) -> RequestRecord:
    """One request carrying a held-out prompt and no class headers (the router classifies it); through LiteLLM,
    which cannot work out a class for itself, the model group is the class the router's classifier gives the
    same body (``litellm``: prompt id -> class, from `classified_groups`)."""
    record = RequestRecord(sent_at=t, task_class=shape.name, complexity=prompt.complexity)
    record.task, record.prompt_id = prompt.task, prompt.id
    group = litellm[prompt.id] if litellm is not None else None
    body = prompt.body(max_tokens=shape.output_tokens, model=group or "zeta")
    headers = label_headers(prompt) if with_labels else {}
    sent = time.monotonic()
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers) as r:
            await r.read()
            if group is not None:
                record.backend = litellm_proxy.backend_of(r.headers.get("x-litellm-model-id", ""))
                record.routed_class = group
                with contextlib.suppress(TypeError, ValueError):
                    record.overhead_ms = float(r.headers.get("x-litellm-overhead-duration-ms", ""))
            else:
                record.backend = r.headers.get("X-Zeta-Backend", "")
                record.routed_class = r.headers.get("X-Zeta-Task-Class", "")
            record.retries = int(r.headers.get("X-Zeta-Retries", "0"))
            record.status = "ok" if r.status == 200 else ("rejected" if r.status in (429, 503) else "error")
    except (aiohttp.ClientError, TimeoutError):
        record.status = "error"
    record.latency = time.monotonic() - sent
    return record


async def _external(
    session: aiohttp.ClientSession, sc: Scenario, sims: dict[str, RunningSim], start: float
) -> tuple[int, int]:
    """The scenario's external load: straight to the simulator (its own model name), past every router;
    answers are not scored. Returns (sent, answered 200)."""
    models = _models()

    async def call(backend: str, prompt_tokens: int, output_tokens: int) -> bool:
        body = {
            "model": models[backend],
            "messages": [{"role": "user", "content": "x" * (4 * prompt_tokens)}],
            "max_tokens": output_tokens,
        }
        try:
            async with session.post(f"{sims[backend].url}/v1/chat/completions", json=body) as r:
                await r.read()
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    pending: list[asyncio.Task[bool]] = []
    plan = sorted(((t, x) for x in sc.externals for t in x.arrivals(sc.seed)), key=lambda p: p[0])
    for at, x in plan:
        delay = start + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(call(x.backend, x.prompt_tokens, x.output_tokens)))
    answered = await asyncio.gather(*pending)
    return len(pending), sum(answered)


async def _sampler(sample: Callable[[float], Awaitable[None]], start: float, until: float) -> None:
    while time.monotonic() - start < until:
        with contextlib.suppress(Exception):  # a missed look must never break the run
            await sample(time.monotonic() - start)
        await asyncio.sleep(1.0)


async def _faults(
    sc: Scenario, sims: dict[str, RunningSim], start: float, not_ready: Callable[[str], None] | None
) -> None:
    actions: list[tuple[float, Callable[[], Any]]] = []
    for f in sc.faults:
        sim = sims[f.backend]
        if f.crash:
            actions.append((f.start, functools.partial(sim.set_faults, crash=True)))
            if not_ready is not None:
                actions.append((f.start + f.notready_after, functools.partial(not_ready, f.backend)))
        else:
            actions.append((f.start, functools.partial(sim.set_faults, extra_latency_ms=f.extra_latency_ms)))
            if f.start + f.duration < sc.duration + DRAIN_S:
                actions.append(
                    (f.start + f.duration, functools.partial(sim.set_faults, extra_latency_ms=0.0))
                )
    for at, action in sorted(actions, key=lambda a: a[0]):
        delay = start + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await asyncio.to_thread(action)
