"""SIGHUP in relight-serve: swap to the weight file at RELIGHT_WEIGHTS again, while serving.

The convention of long-running Unix services (nginx, HAProxy, Prometheus: re-read on hang-up). With RELIGHT_WORKERS
> 1 the supervisor takes the signal and tells the model process (service.workers.supervisor), whose HangupSwaps
runs the swaps.

No SIGHUP is lost, and none ends the process: the handler is installed before the weights are read, a SIGHUP that
comes before the model serves is kept for when it does, and one that comes during a swap (another SIGHUP's, or the
endpoint's) runs one more swap after it, however many came: the file may have changed again since that swap read it.
"""

import asyncio
import logging
import signal

from service.batching.handle import ModelHandle, NotAccepting, SwapRefused

log = logging.getLogger("relight")


class HangupSwaps:
    """The swaps SIGHUP asks for, one at a time, each re-reading RELIGHT_WEIGHTS. Refusals are logged and counted by
    the model (LocalModel.reload), so they are only collected here."""

    def __init__(self) -> None:
        self.model: ModelHandle | None = None
        self.asked = False  # a SIGHUP came that no swap has started for yet
        self._swaps: asyncio.Task | None = None

    def ask(self) -> None:
        """A SIGHUP came (on the event loop, or before it runs): swap once the model serves and no swap is running."""
        self.asked = True
        if self.model is not None and (self._swaps is None or self._swaps.done()):
            self._swaps = asyncio.get_running_loop().create_task(self._swap())

    def serve(self, model: ModelHandle) -> None:
        """On the event loop, once `model` serves: act on SIGHUPs from now on, and on one that came before."""
        self.model = model
        if self.asked:
            self.ask()

    async def _swap(self) -> None:
        while self.asked:
            self.asked = False
            log.info("SIGHUP: swapping to the weight file at RELIGHT_WEIGHTS")
            try:
                await self.model.reload(wait=True)
            except NotAccepting:
                return  # stopping
            except SwapRefused:
                pass


def swap_on_hangup(swaps: HangupSwaps) -> None:
    """Install the SIGHUP handler (main thread), before the weights are read: SIGHUP's default action would end the
    process. The handler only passes the signal on to the event loop (call_soon_threadsafe wakes it at once)."""

    def hangup(sig, frame) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.info("SIGHUP while starting: the swap runs once the service serves")
            swaps.asked = True
            return
        loop.call_soon_threadsafe(swaps.ask)

    signal.signal(signal.SIGHUP, hangup)
