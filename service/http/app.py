"""The FastAPI app factory and its lifespan.

`uvicorn service.http.app:app` serves the shipped weights with settings from RELIGHT_*
variables; `relight-serve` does the same and drains on SIGTERM (service.serve).
"""

import functools
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import ValidationError

from model.weights import WeightsError
from service.batching.handle import ModelHandle
from service.http import admin, examples
from service.http.middleware import BodyLimits, RequestContext
from service.http.openapi import openapi_with_error_schema
from service.http.routes import EXPOSED_HEADERS, router
from service.http.state import ServiceState
from service.inference.engine import Engine
from service.inference.local_model import LocalModel
from service.metrics import RequestMetrics, process_registry
from service.settings import Settings
from service.tracing import Tracing, request_tracing

log = logging.getLogger("relight")


class StartupError(SystemExit):
    """Raised at app creation with a one-line reason; the process exits with it, without a traceback."""

    def __init__(self, reason: str):
        super().__init__(f"relight: cannot start: {reason}")


@asynccontextmanager
async def lifespan(app: FastAPI):
    state: ServiceState = app.state.service
    await state.model.start()
    yield
    state.draining = True
    await state.model.stop()
    log.info("stopped: every accepted request was answered")


def create_app(
    settings: Settings | None = None,
    engine_factory: Callable[[Settings], Engine] = Engine,
    model: ModelHandle | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    """Build the app; the weights are loaded here so a bad path or file stops the process with one line.

    engine_factory is the seam tests use to wrap the real engine (to inject a failing batch).
    With `model` (an HTTP worker of relight-serve with RELIGHT_WORKERS > 1), the model and its
    queue are the model process's, no weights are loaded here, and /metrics sums the request
    metrics of all workers (prometheus-client's multiprocess mode) and adds the model process's.
    `tracing` is the seam tests use to keep spans in memory; by default RELIGHT_TRACING decides (service.tracing).
    """
    try:
        settings = settings or Settings()
        settings.warmup_shapes()
    except (ValidationError, ValueError) as error:
        raise StartupError(f"bad RELIGHT_* setting: {error}".replace("\n", " ")) from None
    if model is None:
        registry = process_registry()
        try:
            engine = engine_factory(settings)
            engine.check_outputs()  # what a swap checks, at startup too: a file of NaNs must not serve black
        except (WeightsError, RuntimeError) as error:
            raise StartupError(str(error)) from None
        model = LocalModel(settings, engine, registry, engine_factory=engine_factory)
        metrics = RequestMetrics(registry)
    else:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        metrics = RequestMetrics(None)
    tracing = tracing or request_tracing(settings.tracing)

    app = FastAPI(
        title="relight",
        summary="One-to-one image relighting (MSR-Net Stacked DMSHN): North/6500 K in, East/4500 K out.",
        version="0.1.0",
        lifespan=lifespan,
        telemetry=tracing.telemetry,
    )
    app.state.service = ServiceState(
        settings=settings, model=model, metrics=metrics, registry=registry, tracing=tracing
    )
    app.include_router(router)
    app.include_router(examples.router)
    if settings.admin_reload:
        app.include_router(admin.router)
        if not settings.api_key:
            log.warning("POST /admin/reload is open to anyone who reaches the port: set RELIGHT_API_KEY")
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)
    app.openapi_schema = None
    app.openapi = lambda: openapi_with_error_schema(app)
    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"], allow_headers=["*"],
                           expose_headers=EXPOSED_HEADERS)  # fmt: skip
    app.add_middleware(BodyLimits, max_bytes=settings.max_upload_bytes, timeout_s=settings.upload_timeout_s)
    app.add_middleware(RequestContext, metrics=metrics)
    return app


async def http_error(request: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
    return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=422)


async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
    """Never a stack trace or a path in a response: the details go to the log with the request ID."""
    request_id = request.scope.get("state", {}).get("request_id", "-")
    log.error("request_id=%s unexpected %s", request_id, type(error).__name__, exc_info=error)
    return JSONResponse({"detail": f"internal error (request {request_id})"}, status_code=500)


@functools.cache
def module_app() -> FastAPI:
    return create_app()


def __getattr__(name: str):
    # `uvicorn service.http.app:app` looks the app up here; building it lazily keeps imports free of side effects,
    # and once: a second `from service.http.app import app` gets the same app, not a second copy of the weights.
    if name == "app":
        return module_app()
    raise AttributeError(name)
