"""Warm-up: the timing shape and its timed pass, then the other shapes and the larger batches while the budget lasts."""

import numpy as np
import pytest

from service.batching.batcher import BatchResult
from service.settings import Settings
from tests.engines import SECONDS_PER_MEGAPIXEL, SeamedEngine


class RecordingEngine(SeamedEngine):
    """The known-cost engine (1 s per megapixel), recording the (batch, height, width) of every pass."""

    passes: list[tuple[int, int, int]]

    def run(self, pixels: np.ndarray) -> BatchResult:
        self.passes.append(pixels.shape[:3])
        return super().run(pixels)


@pytest.fixture
def engine(monkeypatch, weights_file):
    monkeypatch.setenv(SECONDS_PER_MEGAPIXEL, "1.0")
    engine = RecordingEngine(Settings(weights=weights_file, compile="off"))
    engine.passes = []
    return engine


def test_larger_batches_run_while_the_estimated_compute_fits_the_budget(engine):
    small, large = (256, 256), (512, 512)
    # Batch 1 of both shapes and the timing pass: about 0.39 s; batch 4 of 256x256 0.26 s more, of 512x512 1.05 s.
    seconds_per_pixel = engine.warm_up([small, large], lambda height, width: 4, budget_s=1.0)
    assert seconds_per_pixel == pytest.approx(1e-6)
    assert engine.passes == [(1, *small), (1, *small), (1, *large), (4, *small)]


def test_a_budget_smaller_than_one_pass_warms_the_timing_shape_alone(engine):
    engine.warm_up([(256, 256), (512, 512)], lambda height, width: 4, budget_s=0.2)
    assert engine.passes == [(1, 256, 256), (1, 256, 256)]


def test_without_a_budget_every_batch_is_warmed_and_small_shapes_are_timed_at_256(engine):
    seconds_per_pixel = engine.warm_up([(32, 48)], lambda height, width: 3)
    assert seconds_per_pixel == pytest.approx(1e-6)
    assert engine.passes == [(1, 256, 256), (1, 256, 256), (1, 32, 48), (3, 32, 48)]
