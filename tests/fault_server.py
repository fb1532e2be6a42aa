"""Test-only launcher: the real service, whose engine raises on any batch holding an all-13 image.

This seam exists only here, in the tests; no setting lets a user reach it.
"""

import numpy as np

from service.cli import main
from service.engine import BatchResult, Engine

POISON = 13


class FaultyEngine(Engine):
    def run(self, pixels: np.ndarray) -> BatchResult:
        if (pixels == POISON).all(axis=(1, 2, 3)).any():
            raise RuntimeError("injected fault")
        return super().run(pixels)


if __name__ == "__main__":
    main(engine_factory=FaultyEngine)
