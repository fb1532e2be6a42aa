"""ASGI middleware: request IDs and /relight accounting, and limits on request bodies.

Both are plain ASGI so they see the body as it streams in: an oversized upload is refused
while it is read, never buffered first, and a trickling one cannot hold a worker forever.
"""

import asyncio
import json
import logging
import re
import time
import uuid

from service.metrics import RequestMetrics

log = logging.getLogger("relight.http")

SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


async def send_json(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class RequestContext:
    """Gives each request an X-Request-ID (the client's when it is sane) and counts /relight answers."""

    def __init__(self, app, metrics: RequestMetrics, relight_path: str = "/relight"):
        self.app, self.metrics, self.relight_path = app, metrics, relight_path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["path"] == self.relight_path:
                elapsed = time.perf_counter() - started
                self.metrics.request_duration.labels(status=str(status)).observe(elapsed)
                self.metrics.requests.labels(status=str(status)).inc()
                log.info("request_id=%s %s %s -> %d in %.3f s", request_id, scope["method"], scope["path"],
                         status, elapsed)  # fmt: skip


class BodyTooLarge(Exception):
    pass


class UploadTooSlow(Exception):
    pass


class BodyLimits:
    """413 past max_bytes (from Content-Length at once, else while streaming); 408 past timeout_s."""

    def __init__(self, app, max_bytes: int, timeout_s: float):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await send_json(send, 413, self.too_large(), [(b"connection", b"close")])
        received = 0
        deadline: float | None = time.monotonic() + self.timeout_s  # None once the body is complete
        started = False

        async def limited_receive():
            nonlocal received, deadline
            if deadline is None:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise UploadTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
                if not message.get("more_body", False):
                    deadline = None
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await send_json(send, 413, self.too_large(), [(b"connection", b"close")])
        except UploadTooSlow:
            if not started:
                detail = f"the request body was not received within {self.timeout_s:g} s"
                await send_json(send, 408, detail, [(b"connection", b"close")])

    def too_large(self) -> str:
        return f"the upload is larger than this service accepts ({self.max_bytes} bytes)"
