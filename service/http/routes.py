"""HTTP endpoints: /relight, /metrics, /healthz, /readyz, /info and /."""

import asyncio
import hmac
import time
from collections.abc import Hashable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator

from service.batching.handle import (
    Backlogged,
    DeadlinePassed,
    InferenceFailed,
    NoSharedMemory,
    NotAccepting,
    QueueFull,
    SubmittedJob,
    TooBig,
)
from service.codecs.formats import MEDIA_TYPES, accepted_names, format_named
from service.codecs.imaging import DecodedImage, ImageError, decode_opened, encode, open_upload
from service.codecs.negotiation import choose_format
from service.http.openapi import RELIGHT_BODY, RELIGHT_DESCRIPTION, RELIGHT_RESPONSES, error_response
from service.http.page import page, wants_page
from service.http.state import ServiceState, State
from service.http.uploads import read_upload

router = APIRouter()
# The weights that made an answer: "FILE sha256:PREFIX" (service.batching.handle.weights_tag). No X- prefix (RFC 6648).
WEIGHTS_HEADER = "Relight-Weights"
# What a page or client on another origin may read of an answer (CORS hides other headers from scripts).
EXPOSED_HEADERS = [WEIGHTS_HEADER, "Server-Timing", "X-Batch-Size", "X-Tiles", "X-Request-ID"]


def unavailable(detail: str, retry_after: int = 1) -> HTTPException:
    return HTTPException(503, detail, headers={"Retry-After": str(retry_after)})


# ?format=: any spelling of an answer format, case-insensitive; an unknown one is a 422 naming the accepted ones.
FormatName = Annotated[
    str | None,
    AfterValidator(lambda spelling: spelling if spelling is None else format_named(spelling)),
    Query(description=f"The answer's format, in any usual spelling: {accepted_names()}."),
]


def require_api_key(request: Request, state: State) -> None:
    expected = state.settings.api_key
    if not expected:
        return
    given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong X-API-Key", headers={"WWW-Authenticate": "X-API-Key"})


async def wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post(
    "/relight",
    summary="Relight a photo from North/6500 K to East/4500 K",
    description=RELIGHT_DESCRIPTION,
    responses=RELIGHT_RESPONSES,
    openapi_extra=RELIGHT_BODY,
    response_class=Response,
    dependencies=[Depends(require_api_key)],
)
async def relight_endpoint(request: Request, state: State, format: FormatName = None):
    arrived = time.monotonic()
    deadline = arrived + state.settings.request_timeout_s
    if state.draining:
        state.metrics.refused.labels(reason="draining").inc()
        raise unavailable("the service is shutting down", retry_after=5)
    if not state.ready:
        state.metrics.refused.labels(reason="not_ready").inc()
        raise unavailable("the model is still loading or warming up", retry_after=5)
    state.in_flight += 1
    try:
        return await relight_one(request, state, format, deadline)
    finally:
        state.in_flight -= 1


def not_queued(state: ServiceState, refusal: QueueFull | NotAccepting) -> HTTPException:
    """The 503 for an image the queue did not take, counted by reason in relight_admissions_refused_total."""
    if isinstance(refusal, NoSharedMemory):
        state.metrics.refused.labels(reason="shared_memory").inc()
        return unavailable("no shared memory is left for this image (the host's /dev/shm is full); retry shortly")
    if isinstance(refusal, QueueFull):
        state.metrics.refused.labels(reason="queue_full").inc()
        return unavailable(f"the queue is full ({state.settings.max_queue} images waiting); retry shortly")
    state.metrics.refused.labels(reason="draining").inc()
    return unavailable("the service is shutting down", retry_after=5)


async def admit(state: ServiceState, height: int, width: int, deadline: float) -> Hashable:
    try:
        return await state.model.admit(height, width, deadline - time.monotonic())
    except TooBig as refusal:
        state.metrics.refused.labels(reason="too_big").inc()
        raise HTTPException(
            413,
            f"relighting this image would take about {refusal.seconds:.0f} s on this device, more than the "
            f"{state.settings.request_timeout_s:g} s a request may take; send a smaller image",
        ) from None
    except Backlogged as refusal:
        state.metrics.refused.labels(reason="backlog").inc()
        raise unavailable(
            f"about {refusal.ahead_s:.0f} s of work is ahead of this image, so it cannot finish before its deadline; "
            f"retry after {refusal.retry_after_s} s",
            retry_after=refusal.retry_after_s,
        ) from None


async def relight_one(request: Request, state: ServiceState, format: str | None, deadline: float) -> Response:
    with state.tracing.stage("upload"):
        data = await read_upload(request)
    started = time.perf_counter()
    with state.tracing.stage("decode"):
        try:
            opened = await run_in_threadpool(
                open_upload, data, state.settings.max_pixels, state.settings.max_upload_bytes
            )
            accept = request.headers.get("accept")
            image_format = choose_format(format, accept, opened.source_format, opened.width, opened.height)
        except ImageError as error:
            raise HTTPException(error.status, error.detail) from None
        with state.tracing.stage("admission"):
            reservation = await admit(state, opened.height, opened.width, deadline)
        try:
            decoded = await run_in_threadpool(decode_opened, opened)
        except BaseException as error:  # a bad image, or the request cancelled while decoding
            state.model.release(reservation)
            if isinstance(error, ImageError):
                raise HTTPException(error.status, error.detail) from None
            raise
    decode_s = time.perf_counter() - started
    state.metrics.stage_duration.labels(stage="decode").observe(decode_s)
    try:
        job = await state.model.submit(decoded.rgb, deadline, reservation)
    except (QueueFull, NotAccepting) as refusal:
        raise not_queued(state, refusal) from None
    try:
        return await answer(request, state, job, deadline, decoded, image_format, decode_s)
    finally:
        state.model.finished(job)


async def answer(
    request: Request,
    state: ServiceState,
    job: SubmittedJob,
    deadline: float,
    decoded: DecodedImage,
    image_format: str,
    decode_s: float,
) -> Response:
    """Wait for the job (or the client leaving, or the deadline), then encode its answer."""
    handed_over = state.tracing.clock()
    client_gone = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait(
            {job.future, client_gone}, timeout=max(0.0, deadline - time.monotonic()), return_when="FIRST_COMPLETED"
        )
    finally:
        client_gone.cancel()
    if job.future not in done:
        state.model.withdraw(job, "client_gone" if client_gone in done else "deadline")
        job.future.cancel()
        if client_gone in done:
            return Response(status_code=499)  # nobody reads it; the request is still counted once
        raise HTTPException(504, f"no answer within {state.settings.request_timeout_s:g} s")
    try:
        outcome = job.future.result()
    except (QueueFull, NotAccepting) as refusal:  # from the model process, which queues after submit returns
        raise not_queued(state, refusal) from None
    except DeadlinePassed:
        raise HTTPException(504, f"no answer within {state.settings.request_timeout_s:g} s") from None
    except InferenceFailed as error:
        raise HTTPException(500, f"the model failed on this batch ({error}); the service keeps running") from None
    state.metrics.stage_duration.labels(stage="queue").observe(outcome.queue_s)
    state.metrics.stage_duration.labels(stage="inference").observe(outcome.inference_s)
    state.tracing.model_stages(handed_over, outcome, state.model)
    started = time.perf_counter()
    with state.tracing.stage("encode"):
        body = await run_in_threadpool(encode, outcome.image, decoded.alpha, image_format, decoded.metadata)
    encode_s = time.perf_counter() - started
    state.metrics.stage_duration.labels(stage="encode").observe(encode_s)
    timing = ", ".join(
        f"{name};dur={seconds * 1000:.1f}"
        for name, seconds in (("decode", decode_s), ("queue", outcome.queue_s), ("inference", outcome.inference_s),
                              ("encode", encode_s))
    )  # fmt: skip
    headers = {
        "Server-Timing": timing,
        "X-Batch-Size": str(outcome.batch_size),
        "X-Tiles": str(outcome.tiles),
        WEIGHTS_HEADER: outcome.weights,
    }
    return Response(body, media_type=MEDIA_TYPES[image_format], headers=headers)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request, state: State) -> Response:
    if state.settings.protect_metrics:
        require_api_key(request, state)
    body = generate_latest(state.registry) + await state.model.exposition()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", summary="Alive")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Weights loaded and warmed up: which, and since when",
    responses={503: error_response(503, "Not ready.")},
)
async def readyz(state: State):
    if state.draining:
        raise unavailable("draining", retry_after=5)
    if not state.ready:
        raise unavailable(state.model.warmup_error or "starting: loading and warming up the model", retry_after=5)
    model = state.model.description()
    return {"status": "ready", "weights": model.get("weights_tag"), "weights_since": model.get("weights_since")}


@router.get(
    "/",
    summary="The web page (browsers) or the service description (API clients)",
    description="`Accept: text/html` gets the page to try the service; anything else the JSON of `GET /info`.",
    responses={200: {"content": {"text/html": {}, "application/json": {}}}},
)
async def home(request: Request, state: State):
    return page() if wants_page(request) else await info(state)


@router.get("/info", summary="What is being served")
async def info(state: State) -> dict:
    settings, model = state.settings, state.model.description()
    return {
        "service": "relight",
        "task": "North/6500 K -> East/4500 K one-to-one relighting (MSR-Net Stacked DMSHN)",
        "model": {
            key: model.get(key)
            for key in ("architecture", "weights", "weights_sha256", "weights_tag", "weights_since", "value_range")
        },
        "device": model.get("device"),
        "dtype": model.get("dtype"),
        "compiled_shapes": model.get("compiled_shapes", []),
        "ready": state.ready,
        "settings": {
            "max_batch_size": settings.max_batch_size,
            "max_batch_pixels": settings.max_batch_pixels,
            "tile_size": settings.tile_size,
            "tile_overlap": settings.tile_overlap,
            "max_wait_ms": settings.max_wait_ms,
            "max_queue": settings.max_queue,
            "request_timeout_s": settings.request_timeout_s,
            "max_upload_bytes": settings.max_upload_bytes,
            "max_pixels": settings.max_pixels,
            "warmup": settings.warmup,
            "compile": settings.compile,
            "workers": settings.workers,
        },
    }
