"""The OpenAI surface of one real simulator process: shapes, streaming, validation, health and metrics."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims

MODEL = "m-4b"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say something."}], "max_tokens": 12}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSim]:
    with start_sims([SimSpec(model=MODEL, size_b=4, max_seqs=8, time_scale=0.2, seed=1)]) as (sim,):
        yield sim


def test_chat_completion_has_openai_shape_and_usage(sim: RunningSim, http) -> None:
    reply = http.post(f"{sim.url}/v1/chat/completions", CHAT)
    assert reply.status == 200
    body = reply.json()
    assert (
        body["object"] == "chat.completion" and body["model"] == MODEL and body["id"].startswith("chatcmpl-")
    )
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 12
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 12


def test_text_completion_counts_prompt_tokens_from_text_length(sim: RunningSim, http) -> None:
    reply = http.post(f"{sim.url}/v1/completions", {"prompt": "x" * 400, "max_tokens": 3})
    assert reply.status == 200
    body = reply.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"].strip()
    assert body["usage"] == {"prompt_tokens": 100, "completion_tokens": 3, "total_tokens": 103}


def test_without_max_tokens_the_answer_length_is_drawn_and_ends_with_stop(sim: RunningSim, http) -> None:
    body = http.post(f"{sim.url}/v1/completions", {"prompt": [1, 2, 3]}).json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 3
    assert body["usage"]["completion_tokens"] >= 1


def test_models_lists_the_served_model(sim: RunningSim, http) -> None:
    body = http.get(f"{sim.url}/v1/models").json()
    assert [m["id"] for m in body["data"]] == [MODEL]


def test_stream_arrives_incrementally_and_ends_with_done(sim: RunningSim) -> None:
    # 200 tokens at 4B (10 ms each) scaled by 0.2: about 400 ms between the first token and the last.
    payload = {**CHAT, "max_tokens": 200, "stream": True, "stream_options": {"include_usage": True}}

    async def stream() -> list[tuple[float, str]]:
        events: list[tuple[float, str]] = []
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{sim.url}/v1/chat/completions", json=payload) as r,
        ):
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            buffer = b""
            async for data in r.content.iter_any():
                buffer += data
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    events.append((time.monotonic(), event.decode()))
        return events

    events = asyncio.run(stream())
    assert all(e.startswith("data: ") for _, e in events)
    assert events[-1][1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: ") :]) for _, e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert len(text.split()) == 200
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 200 and chunks[-1]["choices"] == []
    content_events = [
        t
        for (t, _), c in zip(events, chunks, strict=False)
        if c["choices"] and c["choices"][0]["delta"].get("content")
    ]
    assert len(content_events) >= 5  # grouped (20 ms apart at most), but far from all at once
    first, last = content_events[0], events[-1][0]
    assert last - first > 0.15  # the model needs 398 ms for tokens 2..200; a slow machine only adds


def test_text_completion_streams_too(sim: RunningSim, http) -> None:
    reply = http.post(f"{sim.url}/v1/completions", {"prompt": "hi", "max_tokens": 5, "stream": True})
    events = [e for e in reply.body.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert len("".join(c["choices"][0]["text"] for c in chunks).split()) == 5


@pytest.mark.parametrize(
    ("path", "payload", "status", "mentions"),
    [
        ("/v1/chat/completions", b"{not json", 400, "JSON"),
        ("/v1/chat/completions", b"[1, 2]", 400, "object"),
        ("/v1/chat/completions", {"model": MODEL}, 400, "messages"),
        ("/v1/chat/completions", {"messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"messages": "hello"}, 400, "messages"),
        ("/v1/chat/completions", {"messages": [{"content": "no role"}]}, 400, "role"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": "12"}, 400, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/chat/completions", {**CHAT, "stream": "yes"}, 400, "stream"),
        ("/v1/chat/completions", {**CHAT, "temperature": "hot"}, 400, "temperature"),
        ("/v1/chat/completions", {**CHAT, "n": 2}, 400, "n"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 9000}, 400, "maximum context length"),
        ("/v1/completions", {"model": MODEL}, 400, "prompt"),
        ("/v1/completions", {"prompt": 42}, 400, "prompt"),
        ("/v1/completions", {"prompt": []}, 400, "prompt"),
        ("/v1/completions", {"prompt": "x" * 40_000}, 400, "maximum context length"),
        ("/v1/chat/completions", {**CHAT, "model": "gpt-4"}, 404, "does not exist"),
        ("/v1/completions", {"prompt": "hi", "model": "other"}, 404, "does not exist"),
    ],
)
def test_malformed_requests_get_openai_errors(sim: RunningSim, http, path, payload, status, mentions) -> None:
    reply = http.post(f"{sim.url}{path}", payload)
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert mentions in error["message"]
    assert error["type"] == ("NotFoundError" if status == 404 else "invalid_request_error")


def test_oversized_body_gets_413_with_or_without_content_length(sim: RunningSim, http) -> None:
    huge = json.dumps({"prompt": "x" * (9 << 20)}).encode()
    reply = http.post(f"{sim.url}/v1/completions", huge)
    assert reply.status == 413
    assert reply.json()["error"]["type"] == "invalid_request_error"

    async def chunked() -> int:
        async def body():  # no Content-Length: the limit must hold while reading
            for _ in range(9):
                yield b"x" * (1 << 20)

        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{sim.url}/v1/completions", data=body()) as r,
        ):
            return r.status

    assert asyncio.run(chunked()) == 413


def test_the_sim_stays_healthy_after_bad_requests(sim: RunningSim, http) -> None:
    http.post(f"{sim.url}/v1/chat/completions", b"\xff\xfe")
    http.post(f"{sim.url}/v1/completions", {"prompt": {"nested": True}})
    assert http.get(f"{sim.url}/health").status == 200
    assert http.post(f"{sim.url}/v1/chat/completions", CHAT).status == 200
    assert sim.process.alive()


def test_metrics_have_vllm_and_container_names_and_parse(sim: RunningSim, http) -> None:
    http.post(f"{sim.url}/v1/chat/completions", CHAT)
    families = {f.name: f for f in text_string_to_metric_families(sim.metrics_text())}
    expected_types = {
        "vllm:num_requests_running": "gauge",
        "vllm:num_requests_waiting": "gauge",
        "vllm:kv_cache_usage_perc": "gauge",
        "vllm:time_to_first_token_seconds": "histogram",
        "vllm:e2e_request_latency_seconds": "histogram",
        "vllm:prompt_tokens": "counter",
        "vllm:generation_tokens": "counter",
        "vllm:request_success": "counter",
        "container_cpu_usage_seconds": "counter",
        "container_memory_working_set_bytes": "gauge",
        "kube_pod_container_resource_limits": "gauge",
    }
    for name, kind in expected_types.items():
        assert name in families, name
        assert families[name].type == kind, name
    for name in expected_types:
        for sample in families[name].samples:
            if name.startswith("vllm:"):
                assert sample.labels.get("model_name") == MODEL, sample
            assert not {"namespace", "pod", "container"} & sample.labels.keys(), sample
    assert sim.metric("vllm:request_success_total", model_name=MODEL) >= 1
    assert sim.metric("vllm:e2e_request_latency_seconds_count") >= 1
    assert sim.metric("container_cpu_usage_seconds_total") > 0
    assert sim.metric("container_memory_working_set_bytes") > 10 << 20  # a Python process with aiohttp loaded
    assert sim.metric("kube_pod_container_resource_limits", resource="cpu") == 1.0
    assert sim.metric("kube_pod_container_resource_limits", resource="memory") == 2 << 30
    assert sim.metric("http_requests_total", handler="/v1/chat/completions", status="2xx") >= 1


def test_health_is_200_and_unknown_paths_404(sim: RunningSim, http) -> None:
    assert http.get(f"{sim.url}/health").status == 200
    assert http.get(f"{sim.url}/v2/nothing").status == 404
