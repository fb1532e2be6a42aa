"""The relight REST service and the offline `relight` command. Rooms: `http/` (the FastAPI app, routes, upload
parsing, the page), `batching/` (the queue and the model handle the routes use), `inference/` (the model on its
device: the engine, weights swaps), `workers/` (the
multi-process mode, RELIGHT_WORKERS > 1), `command/` (`relight`: local, --server, --ray) and `codecs/` (image
bytes to pixels and back). `serve` is `relight-serve`'s entry point; `settings` (RELIGHT_* variables) and
`metrics` (Prometheus) are shared by all rooms; `tracing` gives each request its OpenTelemetry spans (the
`tracing` extra)."""
