"""HTTP endpoints: /relight, /metrics, /healthz, /readyz and /."""

import asyncio
import hmac
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.batcher import (
    Backlogged,
    DeadlinePassed,
    InferenceFailed,
    NotAccepting,
    QueueFull,
    Reservation,
    TooBig,
)
from service.codecs.formats import MEDIA_TYPES, accepted_names, format_named
from service.codecs.heif import CAN_ENCODE as HEIC_ENCODER
from service.codecs.imaging import DecodedImage, ImageError, decode_opened, encode, open_upload
from service.codecs.negotiation import choose_format
from service.middleware import BodyTooLarge, UploadTooSlow
from service.page import page, wants_page
from service.state import ServiceState, State

router = APIRouter()
# Parts in a /relight body: the image and a few form fields a page may add; more is no photo upload.
MAX_PARTS = 20


def error_response(status: int, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}},
    }


RELIGHT_RESPONSES = {
    200: {"description": "The relit image, same width and height as the upload.",
          "content": {mime: {"schema": {"type": "string", "format": "binary"}} for mime in MEDIA_TYPES.values()}},
    400: error_response(400, "The upload cannot be decoded (truncated, corrupt) or the body is malformed."),
    401: error_response(401, "RELIGHT_API_KEY is set and X-API-Key is missing or wrong."),
    406: error_response(406, "Accept refuses every answer format, or allows none that can hold this image's size."),
    408: error_response(408, "The request body was not received within RELIGHT_UPLOAD_TIMEOUT_S."),
    413: error_response(413, "More than RELIGHT_MAX_UPLOAD_BYTES bytes (metadata counted as decompressed), more than "
                             "RELIGHT_MAX_PIXELS pixels, or more pixels than this device can relight within "
                             "RELIGHT_REQUEST_TIMEOUT_S."),
    415: error_response(415, "Not multipart/form-data, or the file is not an image."),
    422: error_response(422, "No `image` part, more than one, an unknown `format` (the detail lists the names), or a "
                             "`format` that cannot hold this image's size (the detail names the formats that can)."),
    500: error_response(500, "The model failed on this request's batch (never caused by an upload)."),
    503: error_response(503, "Queue full, too much work ahead to finish before the deadline, starting up or "
                             "draining; retry after Retry-After seconds."),
    504: error_response(504, "No answer within RELIGHT_REQUEST_TIMEOUT_S."),
}  # fmt: skip

RELIGHT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {"image": {"type": "string", "format": "binary", "description": "the photo"}},
                }
            }
        },
    }
}


HEIC_ANSWER = (
    "HEIC uploads are answered as HEIC (this server's libheif has an HEVC encoder)"
    if HEIC_ENCODER
    else "HEIC uploads are answered as JPEG (this server's libheif has no HEVC encoder, so `heic` is no answer format)"
)
RELIGHT_DESCRIPTION = (
    "Upload one image as the multipart field `image` (PNG, JPEG, WebP, HEIC/HEIF, AVIF, GIF, BMP, TIFF, ...), with "
    "any file name or none (`filename`, `filename*=utf-8''...`). The answer is the same scene lit from the East at "
    "4500 K, at the same width and height. Format: `?format=` if given, else the Accept header's most preferred "
    "answer format (q-values weighed; q=0 refuses a format), else the upload's own format when it is PNG, JPEG, "
    "WebP or AVIF, else PNG; " + HEIC_ANSWER + "; always one that can hold the image's size (WebP: 16383 pixels a "
    "side, ...), else 422 or 406. "
    "Formats may be named in any usual spelling, in any case (`jpg`, `JPEG`, `image/jpg`, `heif`, ...: the `format` "
    "parameter lists them). An embedded ICC profile is converted to sRGB for the network and the answer converted "
    "back into the upload's colour space with the same profile (CMYK and grey uploads come back in sRGB with its "
    "profile). EXIF (orientation set to 1), DPI, XMP and PNG text chunks are carried over where the answer's format "
    "holds them. EXIF orientation (and HEIF's own rotation) is applied first. Alpha is carried over unchanged to "
    "PNG, WebP, AVIF and HEIC answers (JPEG drops it); 16-bit images are reduced to 8 bits; animations give their "
    "first frame, multi-image files their primary image. Images with a side above RELIGHT_TILE_SIZE are relit in "
    "overlapping tiles."
)


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


class ImageParts:
    """python-multipart's callbacks for /relight's body: the parts named `image`, whatever form their file name takes.

    Starlette's form parser decides file or text field by a plain `filename` parameter alone, so a part with only
    RFC 2231's `filename*=utf-8''...` (python-multipart ignores the extended syntax, which RFC 7578 forbids but
    clients send) or with no file name at all became a text field: decoded to str and capped at 1 MB. Here the
    field name alone decides, as for a browser's form; other parts are counted and dropped unread. A part counts
    once its closing boundary has arrived. `images`: the bodies of the complete `image` parts, in order.
    """

    def __init__(self, max_parts: int):
        self.max_parts, self.parts = max_parts, 0
        self.images: list[bytearray] = []
        self.header_name, self.header_value, self.disposition = bytearray(), bytearray(), b""
        self.body: bytearray | None = None

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in dir(self) if name.startswith("on_")}

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise MultipartParseError(f"more than {self.max_parts} parts")
        self.disposition, self.body = b"", None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = bytes(self.header_value)
        self.header_name, self.header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        if b"name" not in options:
            raise MultipartParseError('a part has no Content-Disposition "name"')
        self.body = bytearray() if options[b"name"] == b"image" else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.body is not None:
            self.body += data[start:end]

    def on_part_end(self) -> None:
        if self.body is not None:
            self.images.append(self.body)


async def read_upload(request: Request) -> bytes:
    """The bytes of the multipart part named `image`: 415 if the body is not multipart, 400 if it cannot be
    parsed, 422 without exactly one such part."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise HTTPException(415, "send the image as multipart/form-data with a file field named 'image'")
    parts = ImageParts(MAX_PARTS)
    try:
        boundary = parse_options_header(content_type)[1].get(b"boundary")
        if not boundary:
            raise MultipartParseError("the Content-Type has no boundary")
        parser = MultipartParser(boundary, parts.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except (HTTPException, BodyTooLarge, UploadTooSlow):
        raise
    except Exception as error:  # the multipart parser raises several types for malformed bodies; a client gone
        raise HTTPException(400, f"the multipart body cannot be parsed: {error}") from None
    if not parts.images:
        raise HTTPException(422, "missing the multipart file field 'image'")
    if len(parts.images) > 1:
        raise HTTPException(422, "send exactly one 'image' field")
    return bytes(parts.images[0])


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
    if isinstance(refusal, QueueFull):
        state.metrics.refused.labels(reason="queue_full").inc()
        return unavailable(f"the queue is full ({state.settings.max_queue} images waiting); retry shortly")
    state.metrics.refused.labels(reason="draining").inc()
    return unavailable("the service is shutting down", retry_after=5)


async def admit(state: ServiceState, height: int, width: int, deadline: float) -> Reservation:
    try:
        return await state.model.queue.admit(height, width, deadline - time.monotonic())
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
    data = await read_upload(request)
    started = time.perf_counter()
    try:
        opened = await run_in_threadpool(open_upload, data, state.settings.max_pixels, state.settings.max_upload_bytes)
        accept = request.headers.get("accept")
        image_format = choose_format(format, accept, opened.source_format, opened.width, opened.height)
    except ImageError as error:
        raise HTTPException(error.status, error.detail) from None
    reservation = await admit(state, opened.height, opened.width, deadline)
    try:
        decoded = await run_in_threadpool(decode_opened, opened)
    except BaseException as error:  # a bad image, or the request cancelled while decoding
        state.model.queue.release(reservation)
        if isinstance(error, ImageError):
            raise HTTPException(error.status, error.detail) from None
        raise
    decode_s = time.perf_counter() - started
    state.metrics.stage_duration.labels(stage="decode").observe(decode_s)
    try:
        job = await state.model.queue.submit(decoded.rgb, deadline, reservation)
    except (QueueFull, NotAccepting) as refusal:
        raise not_queued(state, refusal) from None
    try:
        return await answer(request, state, job, deadline, decoded, image_format, decode_s)
    finally:
        state.model.queue.finished(job)


async def answer(
    request: Request,
    state: ServiceState,
    job,
    deadline: float,
    decoded: DecodedImage,
    image_format: str,
    decode_s: float,
) -> Response:
    """Wait for the job (or the client leaving, or the deadline), then encode its answer."""
    client_gone = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait(
            {job.future, client_gone}, timeout=max(0.0, deadline - time.monotonic()), return_when="FIRST_COMPLETED"
        )
    finally:
        client_gone.cancel()
    if job.future not in done:
        state.model.queue.withdraw(job, "client_gone" if client_gone in done else "deadline")
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
    started = time.perf_counter()
    body = await run_in_threadpool(encode, outcome.image, decoded.alpha, image_format, decoded.metadata)
    encode_s = time.perf_counter() - started
    state.metrics.stage_duration.labels(stage="encode").observe(encode_s)
    timing = ", ".join(
        f"{name};dur={seconds * 1000:.1f}"
        for name, seconds in (("decode", decode_s), ("queue", outcome.queue_s), ("inference", outcome.inference_s),
                              ("encode", encode_s))
    )  # fmt: skip
    headers = {"Server-Timing": timing, "X-Batch-Size": str(outcome.batch_size), "X-Tiles": str(outcome.tiles)}
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


@router.get("/readyz", summary="Weights loaded and warmed up", responses={503: error_response(503, "Not ready.")})
async def readyz(state: State):
    if state.draining:
        raise unavailable("draining", retry_after=5)
    if not state.ready:
        raise unavailable(state.model.warmup_error or "starting: loading and warming up the model", retry_after=5)
    return {"status": "ready"}


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
        "model": {key: model.get(key) for key in ("architecture", "weights", "weights_sha256", "value_range")},
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
