"""`relight-serve`: uvicorn with the relight app, logging set up, and a draining shutdown.

On SIGTERM or Ctrl-C the service stops taking new /relight requests (503, /readyz 503),
answers every request it already accepted, then exits 0. A second signal exits at once.
"""

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable

import uvicorn

from service.app import create_app
from service.engine import Engine
from service.settings import Settings
from service.state import ServiceState


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServiceState):
        super().__init__(config)
        self.state = state
        self.drain_task: asyncio.Task | None = None

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


def main(argv: list[str] | None = None, engine_factory: Callable[[Settings], Engine] = Engine) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="default: RELIGHT_HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, help="default: RELIGHT_PORT or 8000")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except Exception as error:
        sys.exit(f"relight: cannot start: bad RELIGHT_* setting: {error}".replace("\n", " "))
    app = create_app(settings, engine_factory)
    config = uvicorn.Config(
        app, host=args.host or settings.host, port=args.port or settings.port, log_level="info", timeout_keep_alive=5
    )
    DrainingServer(config, app.state.service).run()


if __name__ == "__main__":
    main()
