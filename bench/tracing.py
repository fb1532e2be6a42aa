"""What traces cost: the service without the `tracing` extra, with it and tracing off, and with tracing on.

    python bench/tracing.py                                  # 256x256 PNG, 4 clients, 3 rounds of 5 s per mode
    python bench/tracing.py --size 512 --rounds 5 --duration 10

Each mode is `relight-serve` (one process) with a zero-cost model (the real Engine whose forward pass returns
its input, from bench/serving_ceiling.py), so the service's own work is all a request costs and the spans'
share of it is as large as it can be; with the real network on a CPU a request takes 10-1000x longer and the
same cost vanishes in it. The modes run in turns, one round after another, so that load from a neighbour
falls on all of them alike:

    absent       the SDK and its exporter hidden (tests/without_tracing.py), RELIGHT_TRACING off
    off          the extra installed, RELIGHT_TRACING off (the default)
    sampled out  RELIGHT_TRACING=true, OTEL_TRACES_SAMPLER=always_off: the hooks run, no span is recorded
    on           RELIGHT_TRACING=true: each request's 7 spans exported in batches (the SDK's defaults) by
                 OTLP/HTTP to a receiver in this process (tests/otlp_receiver.py; every mode has one, and
                 is told of it, so a mode that sends what it should not shows)

Printed: the CPU kind, then per mode the median (and range) over the rounds of requests/s and of the server's
CPU milliseconds per request (user + system time of its processes, from /proc), and the spans received. First,
steadier where the machine is shared: the route's tracing hooks alone in this process, per request, off and on
(on: a server span as FastAPI's and the stages under it, kept by the SDK's in-memory exporter).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serving_ceiling import drive, tree_cpu_seconds, zero_cost_engine  # noqa: E402
from model.precision import cpu_kind  # noqa: E402
from service.batching.handle import Outcome  # noqa: E402
from service.tracing import NoTracing, OpenTelemetryTracing  # noqa: E402
from tests.images import encode, scene  # noqa: E402
from tests.otlp_receiver import Collector  # noqa: E402
from tests.server import Server, free_port, wait_until  # noqa: E402

MODES = {
    "absent": {},
    "off": {},
    "sampled out": {"RELIGHT_TRACING": "true", "OTEL_TRACES_SAMPLER": "always_off"},
    "on": {"RELIGHT_TRACING": "true"},
}


def start(mode: str, collector: Collector) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **MODES[mode], "RELIGHT_WARMUP": "", "RELIGHT_WARMUP_TILE": "false",
           "RELIGHT_MAX_QUEUE": "256", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}  # fmt: skip
    command = [sys.executable, __file__, "--serve", str(port), *(["--hide-extra"] if mode == "absent" else [])]
    server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until(Server(url, server, Path(os.devnull)), "/readyz", timeout=300)
    return server, url


class Described:
    """What model_stages asks of the model handle: its description."""

    def description(self) -> dict:
        return {"device": "cpu", "dtype": "float32"}


def hooks_us(tracing, server_span) -> float:
    """Microseconds per request of the hooks service/http/routes.py calls, the median of 5 runs of 2000 requests."""
    outcome = Outcome(np.zeros((1, 1, 3), np.uint8), 0.01, 0.02, 1, 1, "stacked_dmshn.safetensors sha256:0123456789ab")
    model = Described()

    def request() -> None:
        with server_span():
            with tracing.stage("upload"):
                pass
            with tracing.stage("decode"), tracing.stage("admission"):
                pass
            handed_over = tracing.clock()
            tracing.model_stages(handed_over, outcome, model)
            with tracing.stage("encode"):
                pass

    return statistics.median(timeit.repeat(request, number=2000, repeat=5)) / 2000 * 1e6


def hook_costs() -> dict[str, float]:
    from contextlib import nullcontext

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = OpenTelemetryTracing(provider)

    def server_span():
        exporter.clear()  # kept in memory, the spans would grow without bound
        return tracing.tracer.start_as_current_span("POST /relight")

    return {"off": hooks_us(NoTracing(), nullcontext), "on": hooks_us(tracing, server_span)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="side of the square PNG uploaded")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hide-extra", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        if args.hide_extra:
            import tests.without_tracing  # noqa: F401  (hides the SDK from this process)
        from service.serve import main as serve

        return serve(["--port", str(args.serve)], engine_factory=zero_cost_engine)

    hooks = hook_costs()
    data = encode(scene(args.size, args.size))
    collectors = {mode: Collector() for mode in MODES}  # one each: spans from a mode that should send none show
    servers = {mode: start(mode, collectors[mode]) for mode in MODES}
    rates, cpu_ms, refused = ({mode: [] for mode in MODES} for _ in range(3))
    try:
        for _ in range(args.rounds):
            for mode, (server, url) in servers.items():
                cpu_before = tree_cpu_seconds(server.pid)
                answered, failed, seconds = drive(url, data, args.clients, args.duration)
                rates[mode].append(answered / seconds)
                cpu_ms[mode].append(1000 * (tree_cpu_seconds(server.pid) - cpu_before) / max(answered, 1))
                refused[mode].append(failed)
        time.sleep(6)  # the batch span processor exports every 5 s
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=60)
        for collector in collectors.values():
            collector.close()
    print(f"# CPU: {cpu_kind()}; {os.cpu_count()} cores; {args.clients} clients (httpx); {args.size}x{args.size} PNG; "
          f"zero-cost model; {args.rounds} rounds of {args.duration:g} s per mode")  # fmt: skip
    print(f"# the route's tracing hooks alone, per request: off {hooks['off']:.2f} us, on {hooks['on']:.1f} us "
          "(7 spans, in-memory exporter)")  # fmt: skip
    print("| mode | requests/s (rounds' range) | server CPU ms/request (range) | non-200 | spans received |")
    print("| --- | --- | --- | --- | --- |")
    for mode in MODES:
        print(f"| {mode} | {spread(rates[mode], 1)} | {spread(cpu_ms[mode], 2)} | {sum(refused[mode])} | "
              f"{len(collectors[mode].spans)} |")  # fmt: skip


def spread(values: list[float], digits: int) -> str:
    """The median and, in brackets, the lowest and highest value: how much a neighbour's load moved them."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


if __name__ == "__main__":
    main()
