"""uvicorn's server with a draining shutdown, in relight-serve and in each of its HTTP workers.

On SIGTERM or Ctrl-C the service stops taking new /relight requests (503, /readyz 503),
answers every request it already accepted, then exits 0. A second signal exits at once.
"""

import asyncio
import logging
import time
from collections.abc import Callable

import uvicorn

from service.http.state import ServiceState


class DrainingServer(uvicorn.Server):
    """uvicorn's server; serving() is called on the event loop once the app has started (relight-serve then acts
    on SIGHUP, service.http.hangup)."""

    def __init__(self, config: uvicorn.Config, state: ServiceState, serving: Callable[[], None] = lambda: None):
        super().__init__(config)
        self.state, self.serving = state, serving
        self.drain_task: asyncio.Task | None = None

    async def main_loop(self) -> None:
        self.serving()
        await super().main_loop()

    def handle_exit(self, sig, frame) -> None:
        if self.drain_task is not None:
            return super().handle_exit(sig, frame)
        logging.getLogger("relight").info("signal %d: draining %d accepted requests", sig, self.state.in_flight)
        self.state.draining = True
        self.drain_task = asyncio.get_event_loop().create_task(self.drain())

    async def drain(self) -> None:
        deadline = time.monotonic() + self.state.settings.drain_timeout_s
        while self.state.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # Not through handle_exit: uvicorn would re-raise the signal after shutdown and exit 143, not 0.
        self.should_exit = True
