"""The compiled forward: warmed shapes compiled in warm-up, as accurate as eager, every other shape eager."""

import numpy as np
import pytest
import torch

from model.inference import relight
from model.weights import SHIPPED_WEIGHTS, load_weights
from service.inference.engine import Engine, compiled_graphs
from service.settings import Settings
from tests.images import scene
from training.metrics import psnr


@pytest.fixture(scope="module")
def engine():
    engine = Engine(Settings(weights=SHIPPED_WEIGHTS, compile="on", dtype="auto"))
    engine.warm_up([(64, 96)], lambda height, width: 2)
    return engine


def test_warmed_shapes_are_compiled_and_within_40_db_of_fp32(engine):
    assert engine.compiled_shapes == {(1, 64, 96), (2, 64, 96)}
    assert compiled_graphs() >= 2
    model, metadata = load_weights(SHIPPED_WEIGHTS)
    pixels = np.stack([scene(64, 96, seed) for seed in range(2)])
    reference = relight(model, torch.from_numpy(pixels), metadata["value_range"]).numpy()
    compiled = engine.run(pixels).images
    quality = psnr(torch.from_numpy(compiled), torch.from_numpy(reference))
    assert quality >= 40, quality


def test_an_unwarmed_size_runs_eagerly_and_compiles_nothing(engine):
    before = compiled_graphs()
    pixels = scene(48, 80)[None]
    served = engine.run(pixels).images
    eager = relight(engine.model, torch.from_numpy(pixels), engine.value_range, engine.autocast_dtype,
                    engine.channels_last).numpy()  # fmt: skip
    assert np.array_equal(served, eager)
    engine.run(scene(64, 96)[None])  # a warmed shape again: its graph is reused
    assert compiled_graphs() == before
