"""Test-only launcher: the real service, whose engine raises on any batch holding an all-13 image and
takes 3 s longer on any batch holding an all-7 image (longer than its estimate: a late answer).

This seam exists only here, in the tests; no setting lets a user reach it.
"""

import time

import numpy as np

from service.cli import main
from service.engine import BatchResult, Engine

POISON = 13
SLOW = 7


class FaultyEngine(Engine):
    def run(self, pixels: np.ndarray) -> BatchResult:
        if (pixels == POISON).all(axis=(1, 2, 3)).any():
            raise RuntimeError("injected fault")
        if (pixels == SLOW).all(axis=(1, 2, 3)).any():
            time.sleep(3)
        return super().run(pixels)


if __name__ == "__main__":
    main(engine_factory=FaultyEngine)
