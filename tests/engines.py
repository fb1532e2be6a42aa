"""Test-only engines, launched as the real service: `python -m tests.engines` (RELIGHT_* settings as usual).

`uvicorn --factory tests.engines:seamed_app` serves the same app through plain uvicorn.
The engine is the real Engine (weights loaded, settings honoured) with seams that no user setting reaches:

- A known cost: with RELIGHT_TEST_SECONDS_PER_MEGAPIXEL set, a forward pass returns its input after
  sleeping that many seconds per megapixel of the batch. Tests of scheduling, admission, cancellation
  and deadlines then hold on any CPU and under any load, where the real network's speed differs 20x
  between the CPU kinds seen here. Unset, the real network runs.
- A slow start: with RELIGHT_TEST_LOAD_SECONDS set, building the engine (loading the weights) first sleeps that
  long, so that a test can signal the service while it loads.
- Faults: a batch holding an all-13 image raises; one holding an all-7 image takes 3 s longer (longer
  than its estimate: a late answer).
- A stack dump: launched as `python -m tests.engines`, SIGUSR1 writes every thread's stack to stderr (faulthandler),
  so that a test whose server does not exit in time can show where it is.
"""

import faulthandler
import os
import signal
import time

import numpy as np

from service.batching.batcher import BatchResult
from service.http.app import create_app
from service.inference.engine import Engine
from service.serve import main

POISON = 13
SLOW = 7
SECONDS_PER_MEGAPIXEL = "RELIGHT_TEST_SECONDS_PER_MEGAPIXEL"
LOAD_SECONDS = "RELIGHT_TEST_LOAD_SECONDS"


class SeamedEngine(Engine):
    def __init__(self, settings):
        if LOAD_SECONDS in os.environ:
            print("test engine: loading the weights", flush=True)
            time.sleep(float(os.environ[LOAD_SECONDS]))
        super().__init__(settings)

    def run(self, pixels: np.ndarray) -> BatchResult:
        if (pixels == POISON).all(axis=(1, 2, 3)).any():
            raise RuntimeError("injected fault")
        if (pixels == SLOW).all(axis=(1, 2, 3)).any():
            time.sleep(3)
        if SECONDS_PER_MEGAPIXEL not in os.environ:
            return super().run(pixels)
        seconds = float(os.environ[SECONDS_PER_MEGAPIXEL]) * pixels[..., 0].size / 1e6
        time.sleep(seconds)
        return BatchResult(pixels.copy(), seconds)


def seamed_app():
    """The app with this engine, for `uvicorn --factory tests.engines:seamed_app`."""
    return create_app(engine_factory=SeamedEngine)


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    main(engine_factory=SeamedEngine)
