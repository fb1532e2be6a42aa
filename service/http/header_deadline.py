"""A deadline for a request's headers, which uvicorn lacks (its issue #157): uvicorn's HTTP protocol with a timer.

uvicorn's keep-alive timeout covers only the idle time between requests and is cancelled by the first byte of the
next one, and ASGI middleware runs only once the headers are complete, so a client that sends its headers a byte
at a time (slowloris) holds a connection, and a socket, for as long as it likes. Here the timer starts when a
connection opens and again when a response is complete, and stops when the next request's headers have arrived
(uvicorn has then started its ASGI task); if it fires first, the connection gets a 408 and is closed (closed
without an answer if no byte of a request had arrived). The request body has its own bound
(service.http.middleware.BodyLimits, RELIGHT_UPLOAD_TIMEOUT_S).

Works with either of uvicorn's HTTP/1.1 implementations (httptools when installed, else h11): both start a
request's RequestResponseCycle, as `self.cycle`, when its headers are complete.
"""

import asyncio
import json

from uvicorn.protocols.http.auto import AutoHTTPProtocol


def header_deadline_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (for `uvicorn.Config(http=...)`) that closes connections whose request headers
    take longer than `timeout_s` seconds to arrive."""
    return type("HeaderDeadlineProtocol", (HeaderDeadline, AutoHTTPProtocol), {"header_timeout_s": timeout_s})


class HeaderDeadline:
    """The timer, mixed into uvicorn's protocol class (header_deadline_protocol)."""

    header_timeout_s: float
    timeout_body = json.dumps({"detail": "the request headers were not received in time"}).encode()

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._request_started = False
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is not None:
            self._request_started = True
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not self._waiting_after:
            self._disarm()  # a new request's headers are complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle.response_complete:  # no pipelined request has begun
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._waiting_after, self._request_started = self.cycle, False
        self._header_timer = asyncio.get_running_loop().call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._request_started:
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: " + str(len(self.timeout_body)).encode() + b"\r\n\r\n" + self.timeout_body
            )
        self.transport.close()
