"""Prometheus metrics: one registry per app, so several apps (tests) can live in one process.

Two groups, because with RELIGHT_WORKERS > 1 they live in different processes: what the HTTP
workers see of each request (RequestMetrics, summed over the workers by prometheus-client's
multiprocess mode) and what the model process sees of the queue and the model (ModelMetrics).
"""

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

# Image work spans a few milliseconds (decoding a thumbnail) to a minute (a 4K image on a CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
STAGES = ("decode", "queue", "inference", "encode")
REFUSALS = ("queue_full", "shared_memory", "backlog", "too_big", "not_ready", "draining")


def batch_buckets(max_batch_size: int) -> tuple[float, ...]:
    """1, 2, 4, ... up to max_batch_size (which is included even when not a power of two)."""
    buckets, size = [], 1
    while size < max_batch_size:
        buckets.append(float(size))
        size *= 2
    return (*buckets, float(max_batch_size))


def process_registry() -> CollectorRegistry:
    """A registry with the process, platform and garbage-collector metrics of this process."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


class RequestMetrics:
    """Registered in `registry`; None where prometheus-client's multiprocess mode collects them from files."""

    def __init__(self, registry: CollectorRegistry | None):
        self.request_duration = Histogram(
            "relight_request_duration_seconds",
            "End-to-end /relight latency, from the first byte of the request to the answer.",
            ["status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage_duration = Histogram(
            "relight_stage_duration_seconds",
            "Time spent per stage of a /relight request.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "relight_requests_total", "Finished /relight requests by HTTP status.", ["status"], registry=registry
        )
        self.refused = Counter(
            "relight_admissions_refused_total",
            f"Uploads refused before queueing, by reason ({', '.join(REFUSALS)}).",
            ["reason"],
            registry=registry,
        )
        for stage in STAGES:
            self.stage_duration.labels(stage=stage)
        for reason in REFUSALS:
            self.refused.labels(reason=reason)


class ModelMetrics:
    """The queue's and the model's metrics (batch sizes, queue depth, tiles, drops, backlog, the seconds-per-pixel
    estimate, the live weights), kept by the process that holds the model; names and help texts below."""

    def __init__(self, registry: CollectorRegistry, max_batch_size: int):
        self.batch_size = Histogram(
            "relight_batch_size",
            "Images per forward pass.",
            buckets=batch_buckets(max_batch_size),
            registry=registry,
        )
        self.queue_depth = Gauge("relight_queue_depth", "Images waiting for the model.", registry=registry)
        self.dropped = Counter(
            "relight_dropped_total",
            "Images whose windows were dropped before inference, by reason (client_gone, deadline, failed).",
            ["reason"],
            registry=registry,
        )
        self.tiles = Counter(
            "relight_tiles_total",
            "Windows (tiles, or whole images that fit in one) by outcome: run, or dropped unrun when their client "
            "left or their deadline passed.",
            ["outcome"],
            registry=registry,
        )
        self.backlog = Gauge(
            "relight_backlog_seconds",
            "Estimated compute time of all accepted work not yet run: the autoscaling signal.",
            registry=registry,
        )
        self.seconds_per_megapixel = Gauge(
            "relight_seconds_per_megapixel",
            "The compute-time estimate admission uses, measured in warm-up and followed as batches run.",
            registry=registry,
        )
        self.compiled_graphs = Gauge(
            "relight_compiled_graphs",
            "Graphs torch.compile has built in this process: one per warmed shape, constant while serving; a weights "
            "swap adds the new weights' (the old ones' stay counted).",
            registry=registry,
        )
        self.model_info = Gauge(
            "relight_model_info",
            "The model being served (value 1).",
            ["device", "dtype", "weights_sha256"],
            registry=registry,
        )
        self.weights_info = Gauge(
            "relight_weights_info",
            "The live weights (value 1): file name and SHA-256 prefix, as in each answer's Relight-Weights header.",
            ["file", "sha256"],
            registry=registry,
        )
        self.weights_since = Gauge(
            "relight_weights_live_since_seconds",
            "When the live weights started serving (Unix time): the start, or the last weights swap.",
            registry=registry,
        )
        self.swaps = Counter(
            "relight_weights_swaps_total",
            "Weights swaps (SIGHUP or POST /admin/reload) by outcome: done, or refused (the old weights kept serving).",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("done", "refused"):
            self.swaps.labels(outcome=outcome)
        for reason in ("client_gone", "deadline", "failed"):
            self.dropped.labels(reason=reason)
        for outcome in ("run", "dropped"):
            self.tiles.labels(outcome=outcome)
