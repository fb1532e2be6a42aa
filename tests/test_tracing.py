"""Traces (service.tracing): the spans of real /relight requests, from a real server on loopback.

Two ways out of the server: the SDK's in-memory exporter, with the app served by uvicorn in this process
(the stage tree, the caller's trace, durations, batching), and OTLP over HTTP from `relight-serve` in a child
process, as operators run it, to a receiver in this process that decodes what a collector would receive (the
OTEL_* variables, the worker processes, and tracing off sending nothing).
"""

import itertools
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from service.http.app import create_app
from service.settings import Settings
from service.tracing import OpenTelemetryTracing, exporting_provider
from tests.images import encode, scene
from tests.otlp_receiver import Collector
from tests.server import free_port, running_server

STAGES = ["upload", "decode", "queue", "inference", "encode"]
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"  # W3C Trace Context, sampled


def needs_the_extra():
    for module in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http"):
        pytest.importorskip(module, reason="the `tracing` extra is not installed: pip install -e '.[tracing]'")


@pytest.fixture
def exporter():
    needs_the_extra()
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


def in_memory_tracing(exporter) -> OpenTelemetryTracing:
    """Spans to `exporter` as each ends (SimpleSpanProcessor), nothing sent anywhere."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OpenTelemetryTracing(provider)


@contextmanager
def serving(app) -> Iterator[str]:
    """uvicorn with `app` on a loopback port, in a thread of this process; yields its URL once /readyz is 200."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn")
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not (server.started and httpx.get(url + "/readyz").status_code == 200):
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(60)


def settings(weights_file, **overrides) -> Settings:
    """Settings as tests/server.py gives its servers (a tiny warm-up, eager), float32 so batches compare."""
    values = {"weights": weights_file, "warmup": "32x32", "warmup_tile": False, "compile": "off", "dtype": "float32"}
    return Settings(**(values | overrides))


def post(url: str, pixels, headers=None) -> httpx.Response:
    files = {"image": ("scene.png", encode(pixels))}
    response = httpx.post(url + "/relight", files=files, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    return response


def server_spans(exporter, count: int) -> list:
    """The /relight server spans, once `count` have ended (FastAPI ends one after its answer's last byte is sent)."""
    deadline = time.monotonic() + 10
    while len(found := [s for s in exporter.get_finished_spans() if s.name == "POST /relight"]) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} server spans ended"
        time.sleep(0.02)
    return found


def children(spans, parent) -> list:
    """`spans` whose parent is `parent`, by start time."""
    own = (s for s in spans if s.parent and s.parent.span_id == parent.context.span_id)
    return sorted(own, key=lambda s: s.start_time)


def server_timing(response: httpx.Response) -> dict[str, float]:
    """Server-Timing's stages in seconds."""
    entries = (entry.split(";dur=") for entry in response.headers["server-timing"].split(", "))
    return {name: float(ms) / 1000 for name, ms in entries}


def test_a_request_continues_the_callers_trace_and_its_stages_add_up(weights_file, exporter):
    app = create_app(settings(weights_file), tracing=in_memory_tracing(exporter))
    with serving(app) as url:
        response = post(url, scene(256, 256), headers={"traceparent": TRACEPARENT})
        (request,) = server_spans(exporter, 1)
    spans = exporter.get_finished_spans()

    assert format(request.context.trace_id, "032x") == CALLER_TRACE
    assert format(request.parent.span_id, "016x") == CALLER_SPAN and request.parent.is_remote
    assert request.attributes["http.response.status_code"] == 200
    assert {format(s.context.trace_id, "032x") for s in spans} == {CALLER_TRACE}
    stages = children(spans, request)
    assert [s.name for s in stages] == STAGES
    decode = stages[1]
    assert [s.name for s in children(spans, decode)] == ["admission"]

    # Each stage inside the request, one after another: their durations add up to at most the request's.
    assert request.start_time <= stages[0].start_time and stages[-1].end_time <= request.end_time
    for earlier, later in itertools.pairwise(stages):
        assert earlier.end_time <= later.start_time, f"{earlier.name} overlaps {later.name}"
    stage_ns = sum(s.end_time - s.start_time for s in stages)
    assert stage_ns <= request.end_time - request.start_time
    # ... and account for most of it: the model and the codecs are the request, not the glue around them.
    assert stage_ns >= 0.5 * (request.end_time - request.start_time)

    # The queue and inference spans carry the batcher's own measurements, as Server-Timing does.
    timing = {s.name: (s.end_time - s.start_time) / 1e9 for s in stages}
    for name in ("queue", "inference"):
        assert timing[name] == pytest.approx(server_timing(response)[name], abs=1e-4)
    inference = stages[3]
    assert inference.attributes["relight.batch_size"] == int(response.headers["x-batch-size"]) == 1
    assert inference.attributes["relight.tiles"] == int(response.headers["x-tiles"]) == 1
    assert inference.attributes["relight.device"] == "cpu"
    assert inference.attributes["relight.weights"] == response.headers["relight-weights"]


def test_images_batched_together_each_get_the_batchs_inference_span(weights_file, exporter):
    """One forward pass for two requests: each request's trace has its own inference span, with that batch's
    size and time (service.tracing says why not one batch span with links)."""
    app = create_app(settings(weights_file, max_batch_size=2, max_wait_ms=5000), tracing=in_memory_tracing(exporter))
    with serving(app) as url, ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda seed: post(url, scene(64, 64, seed)), range(2)))
        requests = server_spans(exporter, 2)
    assert [answer.headers["x-batch-size"] for answer in answers] == ["2", "2"]
    spans = exporter.get_finished_spans()
    inference = [next(s for s in children(spans, request) if s.name == "inference") for request in requests]
    assert len({request.context.trace_id for request in requests}) == 2
    assert [span.attributes["relight.batch_size"] for span in inference] == [2, 2]
    first, second = ((span.end_time - span.start_time) for span in inference)
    assert first == second  # the same batch's measured time


def test_tracing_off_answers_the_same_bytes_and_headers(weights_file, exporter):
    upload = scene(48, 64)
    answers = {}
    for tracing in ("off", "on"):
        chosen = {"tracing": in_memory_tracing(exporter)} if tracing == "on" else {}
        with serving(create_app(settings(weights_file), **chosen)) as url:
            answers[tracing] = post(url, upload, headers={"traceparent": TRACEPARENT})
    assert answers["off"].content == answers["on"].content
    assert set(answers["off"].headers) == set(answers["on"].headers)  # no trace header added
    assert server_spans(exporter, 1)  # only the traced app made spans


@pytest.fixture
def collector():
    needs_the_extra()
    receiver = Collector()
    yield receiver
    receiver.close()


def otlp_environment(collector: Collector, monkeypatch) -> None:
    """What an operator sets; FASTAPI_OTEL_AUTO_CONFIGURE too, which must not turn tracing on by itself."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "relight-under-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # ms; the default 5 s would only slow the test
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")


def test_workers_export_each_requests_spans_over_otlp(weights_file, tmp_path, collector, monkeypatch):
    otlp_environment(collector, monkeypatch)
    with running_server(weights_file, tmp_path, tracing="true", workers=2) as server:
        for seed in range(4):
            post(server.url, scene(32, 32, seed), headers={"traceparent": TRACEPARENT})
        deadline = time.monotonic() + 30
        while sum(span.name == "POST /relight" for _, span in collector.spans) < 4:
            assert time.monotonic() < deadline, f"spans received: {[span.name for _, span in collector.spans]}"
            time.sleep(0.1)
        httpx.get(server.url + "/healthz")  # probes are not traced
    names = [span.name for _, span in collector.spans]
    assert sorted(set(names)) == sorted(["POST /relight", "admission", *STAGES])
    assert all(names.count(stage) == 4 for stage in STAGES)
    assert {service for service, _ in collector.spans} == {"relight-under-test"}
    assert {span.trace_id.hex() for _, span in collector.spans} == {CALLER_TRACE}


def test_tracing_off_sends_nothing(weights_file, tmp_path, collector, monkeypatch):
    otlp_environment(collector, monkeypatch)
    with running_server(weights_file, tmp_path) as server:
        for seed in range(2):
            post(server.url, scene(32, 32, seed), headers={"traceparent": TRACEPARENT})
        time.sleep(1)  # ten export intervals
    assert collector.posts == 0


def test_tracing_on_without_the_extra_stops_startup_with_one_line(weights_file, tmp_path, monkeypatch):
    """Where the extra is absent (tests.without_tracing hides it), asking for traces is refused at startup."""
    monkeypatch.setenv("RELIGHT_TRACING", "true")
    command = [sys.executable, "-m", "tests.without_tracing"]
    refusal = r"relight: cannot start: bad RELIGHT_\* setting: .*pip install 'relight\[tracing\]'"
    with pytest.raises(RuntimeError, match=refusal), running_server(weights_file, tmp_path, command=command):
        pass


def test_without_the_extra_the_service_serves(weights_file, tmp_path):
    """Tracing off never imports the SDK: with it hidden (tests.without_tracing), uploads are answered."""
    with running_server(weights_file, tmp_path, command=[sys.executable, "-m", "tests.without_tracing"]) as server:
        post(server.url, scene(32, 32))


@pytest.mark.fast
@pytest.mark.parametrize(
    ("variables", "name"),
    [({}, "relight"), ({"OTEL_SERVICE_NAME": "relight-eu"}, "relight-eu"),
     ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=relight-us,deployment.environment=prod"}, "relight-us")],
)  # fmt: skip
def test_the_service_is_named_relight_unless_the_operator_names_it(monkeypatch, variables, name):
    needs_the_extra()
    for variable in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)
    provider = exporting_provider()
    try:
        assert provider.resource.attributes["service.name"] == name
    finally:
        provider.shutdown()
