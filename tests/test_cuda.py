"""The CUDA path with the shipped weights against the CPU's fp32, and the engine's batch split on CUDA out-of-memory.

Runs where CUDA is present (bench/gpu_check.sh runs it first on a GPU machine) and skips elsewhere,
saying so. Each check compares 8-bit outputs by PSNR (training.metrics.psnr), at least 40 dB.
Where CUDA is absent, the one test that runs checks that bench/gpu_check.sh stops at once and says why.
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.inference import relight
from model.weights import SHIPPED_WEIGHTS, load_weights
from service.inference.engine import Engine
from service.settings import Settings
from tests.images import scene
from training.metrics import psnr

ROOT = Path(__file__).resolve().parent.parent
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available())")

# A batch of two, and one image whose sides are not multiples of 16 (padded, then cropped back).
BATCHES = [np.stack([scene(512, 512, seed) for seed in (0, 1)]), scene(200, 328, 2)[None]]
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@pytest.fixture(scope="module")
def cpu_fp32() -> list[torch.Tensor]:
    model, metadata = load_weights(SHIPPED_WEIGHTS, torch.device("cpu"))
    return [relight(model, torch.from_numpy(batch), metadata["value_range"]) for batch in BATCHES]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(Settings(weights=SHIPPED_WEIGHTS, device="cuda", compile="off"))


@needs_cuda
@pytest.mark.parametrize("precision", PRECISIONS)
def test_cuda_outputs_are_within_40_db_of_the_cpu_fp32_ones(precision, cpu_fp32):
    # As the engine runs reduced precision: autocast with channels_last. fp32 convolutions use TF32, torch's default.
    autocast, channels_last = PRECISIONS[precision], PRECISIONS[precision] is not None
    model, metadata = load_weights(SHIPPED_WEIGHTS, torch.device("cuda"))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    for batch, reference in zip(BATCHES, cpu_fp32, strict=True):
        pixels = torch.from_numpy(batch).pin_memory()
        output = relight(model, pixels, metadata["value_range"], autocast, channels_last)
        quality = psnr(output, reference)
        print(f"\nCUDA {precision}, {tuple(batch.shape)}: {quality:.1f} dB from the CPU's fp32")
        assert output.shape == reference.shape and quality >= 40, quality


@needs_cuda
def test_the_engine_on_cuda_answers_as_the_cpu_fp32_does(engine, cpu_fp32):
    assert engine.device.type == "cuda" and engine.autocast_dtype in (torch.bfloat16, torch.float16)
    for batch, reference in zip(BATCHES, cpu_fp32, strict=True):
        quality = psnr(torch.from_numpy(engine.run(batch).images), reference)
        print(f"\nengine ({engine.dtype_name}), {tuple(batch.shape)}: {quality:.1f} dB from the CPU's fp32")
        assert quality >= 40, quality


@needs_cuda
def test_a_batch_that_does_not_fit_under_a_memory_cap_is_split_and_still_answered(engine, caplog):
    pixels = np.stack([scene(512, 512, seed) for seed in range(8)])
    one_by_one = np.concatenate([engine.run(pixels[i : i + 1]).images for i in range(len(pixels))])
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    resting = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    engine.run(pixels[:1])
    one_image = torch.cuda.max_memory_allocated() - resting
    # Room for about two images' working sets: a batch of 8 cannot fit, its halves' halves can.
    cap = resting + 2.5 * one_image
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap / torch.cuda.get_device_properties(0).total_memory)
    try:
        with caplog.at_level(logging.WARNING, logger="relight.engine"):
            served = engine.run(pixels).images
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    print(f"\ncap {cap / 2**20:,.0f} MiB (one 512x512 image: {one_image / 2**20:,.0f} MiB); {caplog.text}")
    assert "CUDA out of memory at batch 8" in caplog.text
    assert served.shape == pixels.shape
    assert psnr(torch.from_numpy(served), torch.from_numpy(one_by_one)) >= 40


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: bench/gpu_check.sh would run its steps")
def test_gpu_check_stops_at_once_and_says_why_where_there_is_no_cuda(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "GPU_CHECK_WORK": str(tmp_path)}
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "gpu_check: no CUDA device" in result.stdout and "nothing was measured" in result.stdout
    assert (tmp_path / "out" / "summary.md").read_text().startswith("gpu_check: no CUDA device")
    assert list((tmp_path / "logs").iterdir()) == []
