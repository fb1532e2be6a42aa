"""OpenTelemetry traces of each request (RELIGHT_TRACING=true, the `tracing` extra); off, nothing runs.

FastAPI (0.142 and newer) makes each request's server span itself: it continues an incoming W3C
`traceparent` (the API's propagator), names the span after the route (`POST /relight`) and sets the
HTTP semantic-convention attributes and the status. This module gives it a TracerProvider built by
the SDK from the standard variables, and adds the stages of a /relight request under that span:

    upload     receiving and parsing the multipart body (service.http.uploads)
    decode     opening, admission and decoding, as the `decode` stage of Server-Timing and /metrics
      admission  the backlog check (service.batching.handle.ModelHandle.admit), inside decode
    queue      from submission until the first batch holding the image starts
    inference  the forward passes its windows ran in (relight.batch_size, relight.tiles, relight.device,
               relight.dtype, relight.weights)
    encode     encoding the answer

`queue` and `inference` are not measured here but by the batcher, wherever the model runs (this
process, or the model process with RELIGHT_WORKERS > 1): they are the same numbers as the answer's
Server-Timing (`Outcome.queue_s`, `Outcome.inference_s`), laid out from the moment the route handed
the image over. So each request gets an inference child span of its own, and requests batched
together each show that batch's time and size. The OpenTelemetry specification suggests links for
batches ("Links between spans", in its overview): one batch span linked to each request's span. That
span would sit in a trace of its own, where a request's trace shows a pointer, not the time its image
spent on the device, and it would have to be made where the batch runs, in the model process with
its own exporter and the requests' contexts sent over its socket. The price of the choice: adding up
inference spans across requests counts a shared batch once per image in it; the device's own time is
in /metrics (relight_batch_size, relight_stage_duration_seconds).

The SDK reads its own variables (none is re-read here): OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
(Resource.create; the service is named `relight` unless they name it), OTEL_TRACES_SAMPLER and
OTEL_TRACES_SAMPLER_ARG (TracerProvider), OTEL_SDK_DISABLED, OTEL_BSP_* (BatchSpanProcessor), and
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, _HEADERS, _TIMEOUT, _COMPRESSION,
_CERTIFICATE (OTLPSpanExporter, OTLP over HTTP/protobuf).
"""

import importlib.util
import time
from collections.abc import MutableMapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from opentelemetry.trace import TracerProvider

from service.batching.handle import ModelHandle, Outcome

# What the `tracing` extra installs, by module (pyproject.toml).
EXTRA_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")
# Machine traffic at fixed intervals (probes, scrapes): a span each would bury the requests.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# FastAPI's own telemetry, all of it off: RELIGHT_TRACING decides, not a provider another library set
# globally, nor FASTAPI_OTEL_AUTO_CONFIGURE.
FASTAPI_OFF = {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}
NO_SPAN = nullcontext()


class Tracing(Protocol):
    """What the app and the routes need of tracing; `telemetry` is FastAPI's `telemetry=` configuration."""

    telemetry: dict

    def stage(self, name: str) -> AbstractContextManager:
        """A span around a stage of the request, a child of the span current where it is entered."""

    def clock(self) -> int:
        """Now, in nanoseconds since the epoch (the spans' clock), from which model_stages lays its spans."""

    def model_stages(self, since_ns: int, outcome: Outcome, model: ModelHandle) -> None:
        """The queue and inference spans of an answered image, from its Outcome's measured seconds, laid out
        from since_ns (when the route handed the image over): children of the current span."""


class NoTracing:
    """RELIGHT_TRACING off: FastAPI's telemetry off, and each hook a call that does nothing."""

    telemetry = FASTAPI_OFF

    def stage(self, name: str) -> AbstractContextManager:
        return NO_SPAN

    def clock(self) -> int:
        return 0

    def model_stages(self, since_ns: int, outcome: Outcome, model: ModelHandle) -> None:
        pass


def untraced(scope: MutableMapping[str, Any]) -> bool:
    """FastAPI's `exclude`: no span for probes and scrapes."""
    return scope.get("path") in UNTRACED_PATHS


class OpenTelemetryTracing:
    """Spans through `provider` (the SDK's, from exporting_provider or a test's): FastAPI's server span and the stages.

    opentelemetry-api, which declares TracerProvider, comes with FastAPI itself; only the SDK is the extra's.
    """

    def __init__(self, provider: TracerProvider):
        self.provider = provider
        self.tracer = provider.get_tracer(__name__)
        self.telemetry = {
            "tracer_provider": provider,
            "tracing": True,
            # The stage spans are the server span's children, not grandchildren under `fastapi.endpoint`.
            "operation_spans": False,
            # /metrics (Prometheus) has the request metrics; logs stay in the process's log.
            "metrics": False,
            "logs": False,
            "auto_configure": False,
            "exclude": untraced,
        }

    def stage(self, name: str) -> AbstractContextManager:
        return self.tracer.start_as_current_span(name)

    def clock(self) -> int:
        return time.time_ns()

    def model_stages(self, since_ns: int, outcome: Outcome, model: ModelHandle) -> None:
        queued_until = since_ns + round(outcome.queue_s * 1e9)
        self.tracer.start_span("queue", start_time=since_ns).end(queued_until)
        served = model.description()
        attributes = {
            "relight.batch_size": outcome.batch_size,
            "relight.tiles": outcome.tiles,
            "relight.device": str(served.get("device")),
            "relight.dtype": str(served.get("dtype")),
            # The weights that made this answer (a swap may have switched since), as the Relight-Weights header.
            "relight.weights": outcome.weights,
        }
        inference = self.tracer.start_span("inference", start_time=queued_until, attributes=attributes)
        inference.end(queued_until + round(outcome.inference_s * 1e9))


def missing_packages() -> list[str]:
    """The modules of the `tracing` extra that cannot be imported here (find_spec: nothing is imported)."""
    missing = []
    for name in EXTRA_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is absent
            found = False
        if not found:
            missing.append(name)
    return missing


def exporting_provider() -> TracerProvider:
    """A TracerProvider that exports by OTLP over HTTP in batches, configured by the OTEL_* variables.

    Raises ImportError without the `tracing` extra.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Our name only where the operator gave none (the SDK's own detector reads their variables).
    named = SERVICE_NAME in OTELResourceDetector().detect().attributes
    provider = TracerProvider(resource=Resource.create({} if named else {SERVICE_NAME: "relight"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def request_tracing(enabled: bool) -> Tracing:
    """NoTracing, or (enabled) spans exported as the OTEL_* variables say. Raises ImportError without the extra."""
    return OpenTelemetryTracing(exporting_provider()) if enabled else NoTracing()
