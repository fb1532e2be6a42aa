"""uvicorn's server with a draining shutdown, in relight-serve and in each of its HTTP workers.

On SIGTERM or Ctrl-C the service stops taking new /relight requests (503, /readyz 503),
answers every request it already accepted, then exits 0. A second signal exits at once, by that signal
(exit code 143 for SIGTERM, 130 for Ctrl-C; later ones change nothing), its accepted requests unanswered.
"""

import asyncio
import logging
import time
from collections.abc import Callable

import uvicorn

from service.exits import exit_now
from service.http.state import ServiceState

log = logging.getLogger("relight")


class DrainingServer(uvicorn.Server):
    """uvicorn's server; serving() is called on the event loop once the app has started (relight-serve then acts
    on SIGHUP, service.inference.hangup)."""

    def __init__(self, config: uvicorn.Config, state: ServiceState, serving: Callable[[], None] = lambda: None):
        super().__init__(config)
        self.state, self.serving = state, serving
        self.drain_task: asyncio.Task | None = None
        self.exiting = False

    async def main_loop(self) -> None:
        self.serving()
        await super().main_loop()

    def handle_exit(self, sig, frame) -> None:
        if self.drain_task is not None:
            # A second signal: exit now, by it. Not through uvicorn's handle_exit, which forces only on a SIGINT after
            # its own shutdown has begun and otherwise waits for every open connection (what the drain already does);
            # nor through asyncio's and Python's shutdown, which answer the open requests 500 as their tasks are
            # cancelled and then wait for the thread still running a batch.
            if self.exiting:
                return  # a third signal, while the second one's log line is written: the exit is the second's
            self.exiting = True
            log.warning("signal %d again: exiting without waiting for %d accepted requests", sig, self.state.in_flight)
            exit_now(128 + sig)
        log.info("signal %d: draining %d accepted requests", sig, self.state.in_flight)
        self.state.draining = True
        self.drain_task = asyncio.get_event_loop().create_task(self.drain())

    async def drain(self) -> None:
        deadline = time.monotonic() + self.state.settings.drain_timeout_s
        while self.state.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # Not through handle_exit: uvicorn would re-raise the signal after shutdown and exit 143, not 0.
        self.should_exit = True
