"""`relight-serve`: uvicorn with the relight app, logging set up, and a draining shutdown.

On SIGTERM or Ctrl-C the service stops taking new /relight requests (503, /readyz 503),
answers every request it already accepted, then exits 0. A second signal exits at once (143 or 130).
On SIGHUP it swaps to the weight file at RELIGHT_WEIGHTS while serving (service.inference.weights_swap).
With RELIGHT_WORKERS > 1 it runs a model process and that many HTTP workers (service.workers.supervisor).
With RELIGHT_PID_FILE it writes its process id there (gunicorn's --pid, nginx's pid): the one to signal.
"""

import argparse
import logging
import signal
import sys
from collections.abc import Callable

import uvicorn

from service.http.app import create_app
from service.http.draining import DrainingServer
from service.http.header_deadline import header_deadline_protocol
from service.inference.engine import Engine
from service.inference.hangup import HangupSwaps, swap_on_hangup
from service.pid_file import pid_file
from service.settings import Settings
from service.workers import supervisor


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
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port  # --port 0: any free port, as uvicorn's
    if settings.workers > 1:
        sys.exit(supervisor.serve(settings, engine_factory, host, port))
    # The handlers first, then the pid file that invites signals: from then on none may end the process unasked.
    swaps = HangupSwaps()
    swap_on_hangup(swaps)
    # Until uvicorn takes the signals: SIGTERM as Ctrl-C, so that either, while the weights load and nothing has been
    # accepted, ends the process with status 0 and one line instead of SIGTERM's default death or a traceback. SIGINT
    # too, where it came in ignored (a shell's `&` job): Python then leaves it ignored, uvicorn takes it once serving,
    # and the supervisor (RELIGHT_WORKERS > 1) takes it from the start.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pid_file(settings.pid_file):
            serve(settings, engine_factory, host, port, swaps)
    except KeyboardInterrupt:
        logging.getLogger("relight").info("stopped while starting")


def serve(
    settings: Settings, engine_factory: Callable[[Settings], Engine], host: str, port: int, swaps: HangupSwaps
) -> None:
    """One process: the model, its queue and uvicorn; returns once drained. SIGHUPs reach `swaps`."""
    app = create_app(settings, engine_factory)
    model = app.state.service.model
    http = header_deadline_protocol(settings.header_timeout_s)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", timeout_keep_alive=5, http=http)
    # A SIGTERM until uvicorn's handlers are in, after the weights load too, is main's KeyboardInterrupt.
    DrainingServer(config, app.state.service, serving=lambda: swaps.serve(model)).run()


if __name__ == "__main__":
    main()
