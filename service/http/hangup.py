"""SIGHUP in relight-serve (single process): swap to the weight file at RELIGHT_WEIGHTS again, while serving.

The convention of long-running Unix services (nginx, HAProxy, Prometheus: re-read on hang-up). With RELIGHT_WORKERS
> 1 the supervisor takes the signal instead and tells the model process (service.workers.supervisor).
"""

import asyncio
import logging
import signal

from service.batching.handle import ModelHandle

log = logging.getLogger("relight")


def reload_on_hangup(model: ModelHandle) -> None:
    """Install the SIGHUP handler (main thread). The swap's outcome is logged by the model (LocalModel.reload)."""

    def hangup(sig, frame) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning("SIGHUP before the service runs: ignored")
            return
        log.info("SIGHUP: swapping to the weight file at RELIGHT_WEIGHTS")
        reload_logged(loop, model)

    signal.signal(signal.SIGHUP, hangup)


def reload_logged(loop: asyncio.AbstractEventLoop, model: ModelHandle) -> None:
    """Start model.reload() on `loop`; its refusal was logged where it happened, so it is only collected here."""
    task = loop.create_task(model.reload())
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
