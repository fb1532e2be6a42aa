"""The relight REST service: FastAPI app, batching queue, engine and metrics."""
