"""The model on its device: loading, precision choice, warm-up and timed batched inference.

With RELIGHT_COMPILE on, the shapes run in warm-up (the configured ones and the tile shape, at
batch 1 and the most that fit the pixel budget) are compiled there by torch.compile (Inductor,
with freezing: the convolution weights are prepacked and the ReLUs, adds and resizes fused
around them); every other shape runs eagerly, so an upload of a new size never waits for a
compilation and nothing recompiles while serving.
"""

import logging
import math
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from model.allocator import reuse_freed_memory
from model.inference import relight
from model.pixels import to_network
from model.precision import compile_wanted, cpu_kind, fast_autocast_dtype, fast_channels_last
from model.weights import WeightsError, load_weights
from service.batching.batcher import BatchResult
from service.batching.handle import weights_tag
from service.settings import Settings

log = logging.getLogger("relight.engine")

TIMING_SHAPE = (256, 256)
TIMING_AREA = TIMING_SHAPE[0] * TIMING_SHAPE[1]
DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}
CHECK_SIDE = 64  # pixels: the known input check_outputs() runs (every 8-bit level on each channel's ramp)


class DeviceUnavailable(RuntimeError):
    """RELIGHT_DEVICE names a device this machine does not have."""


def pick_device(name: str) -> torch.device:
    """RELIGHT_DEVICE as a torch device: auto is the first CUDA device where there is one, else the CPU. Raises
    DeviceUnavailable for cuda or cuda:N on a machine without CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"RELIGHT_DEVICE={name} but no CUDA device is available")
    return device


def compiled_graphs() -> int:
    """Graphs Dynamo has compiled in this process (none while torch.compile was never used: it loads Dynamo)."""
    dynamo_utils = sys.modules.get("torch._dynamo.utils")
    return dynamo_utils.counters["stats"]["unique_graphs"] if dynamo_utils else 0


class Engine:
    """Loads the weights once; `run` relights one same-size batch, called from one worker thread."""

    def __init__(self, settings: Settings):
        self.device = pick_device(settings.device)
        if self.device.type == "cpu":
            # Before the inference thread exists, so that it allocates from the main heap too.
            reuse_freed_memory()
        self.model, self.metadata = load_weights(settings.weights, self.device)
        self.value_range = self.metadata["value_range"]
        self.autocast_dtype = fast_autocast_dtype(self.device) if settings.dtype == "auto" else DTYPES[settings.dtype]
        self.channels_last = fast_channels_last(self.device, self.autocast_dtype)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.weights_path, self.weights_sha256 = settings.weights, self.metadata["sha256"]
        self.weights_tag = weights_tag(settings.weights.name, self.weights_sha256)
        self.compiled, self.compiled_shapes = None, set()
        if compile_wanted(settings.compile, self.device):
            torch._inductor.config.freezing = True
            # One graph per warmed (batch, height, width): let Dynamo keep them all.
            torch._dynamo.config.recompile_limit = 64
            self.compiled = torch.compile(self.model, dynamic=False)
        self.dtype_name = str(self.autocast_dtype or torch.float32).removeprefix("torch.")
        log.info(
            "loaded %s (%s) on %s (%s), compute dtype %s, %s, compiled %s",
            self.metadata["architecture"],
            settings.weights,
            self.device,
            cpu_kind() if self.device.type == "cpu" else torch.cuda.get_device_name(self.device),
            self.dtype_name,
            "channels_last" if self.channels_last else "NCHW",
            self.compiled is not None,
        )

    def warm_up(
        self,
        shapes: list[tuple[int, int]],
        batch_limit: Callable[[int, int], int],
        budget_s: float = math.inf,
    ) -> float:
        """The first pass at a new shape builds kernels (oneDNN, cuDNN autotuning): pay for it before serving.

        shapes are (height, width) in pixels; batch_limit(height, width) the largest batch served at that shape.
        The first shape of at least 256x256 (else 256x256 itself) runs at batch 1, then again, timed, its
        kernels built: that gives the seconds per pixel admission starts from. The other shapes at batch 1,
        then the larger batches, follow while the estimated compute of the warm-up (seconds per pixel x
        pixels of each pass) stays within budget_s: where a 1024x1024 pass takes 10 s (fp32 on two AVX2
        cores) warming every pass took minutes, and a pass not warmed costs its first user one slow pass
        (kernels built then), not everyone a late readiness.

        Returns seconds per pixel.
        """
        timing = next((shape for shape in shapes if shape[0] * shape[1] >= TIMING_AREA), TIMING_SHAPE)
        self._warm(1, *timing, compiled=timing in shapes)
        seconds_per_pixel = self.run(np.zeros((1, *timing, 3), np.uint8)).inference_s / (timing[0] * timing[1])
        log.info("throughput %.3f s per megapixel (%dx%d)", seconds_per_pixel * 1e6, timing[1], timing[0])
        passes = [(1, *shape) for shape in shapes if shape != timing]
        passes += [(batch_limit(*shape), *shape) for shape in shapes if batch_limit(*shape) > 1]
        estimated_s = seconds_per_pixel * timing[0] * timing[1]
        for batch, height, width in passes:
            estimate_s = seconds_per_pixel * batch * height * width
            if estimated_s + estimate_s > budget_s:
                log.info("%dx%d batch %d not warmed: its pass (about %.0f s) would take warm-up past its %.0f s budget",
                         width, height, batch, estimate_s, budget_s)  # fmt: skip
                continue
            self._warm(batch, height, width)
            estimated_s += estimate_s
        return seconds_per_pixel

    def _warm(self, batch: int, height: int, width: int, compiled: bool = True) -> None:
        if self.compiled is not None and compiled:
            self.compiled_shapes.add((batch, height, width))
        start = time.perf_counter()
        self.run(np.zeros((batch, height, width, 3), np.uint8))
        log.info("warmed %dx%d batch %d in %.2f s", width, height, batch, time.perf_counter() - start)

    def check_outputs(self) -> None:
        """Run a known input and raise WeightsError unless the network's raw output is finite everywhere and within
        the file's value range widened by its span on each side (trained weights stay near the range; a file of
        NaNs, infinities or exploded values does not). The input: a CHECK_SIDE x CHECK_SIDE image whose red
        rises left to right, green top to bottom and blue along the diagonal, over all 256 levels."""
        ramp = torch.arange(CHECK_SIDE) * 255 // (CHECK_SIDE - 1)
        red, green = ramp.expand(CHECK_SIDE, -1), ramp[:, None].expand(-1, CHECK_SIDE)
        pixels = torch.stack([red, green, (red + green) // 2], dim=-1)[None].to(torch.uint8)
        low, high = self.value_range
        autocast = torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)
        with torch.inference_mode(), autocast:
            output = self.model(to_network(pixels.to(self.device), self.value_range)).float()
        if not torch.isfinite(output).all():
            raise WeightsError(self.weights_path, "its output on a known input is not finite (NaN or infinity)")
        span = high - low
        if output.min() < low - span or output.max() > high + span:
            raise WeightsError(
                self.weights_path,
                f"its output on a known input spans {output.min():.3g}..{output.max():.3g}, far outside "
                f"its value range {low:g}..{high:g}",
            )

    def offload(self) -> None:
        """Move the eager model to the CPU and free its device memory (a swap that unloads first)."""
        self.model.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def restore(self) -> None:
        """Move the model back to its device after offload() (the swap failed)."""
        self.model.to(self.device)

    def run(self, pixels: np.ndarray) -> BatchResult:
        """Relight uint8 (N, H, W, 3); on CUDA out-of-memory, the batch is split in halves and retried."""
        start = time.perf_counter()
        try:
            return BatchResult(self._forward(pixels), time.perf_counter() - start)
        except torch.cuda.OutOfMemoryError:
            if len(pixels) == 1:
                raise
        # Retried outside the except block, whose traceback keeps the failed pass's activations alive.
        torch.cuda.empty_cache()
        half = len(pixels) // 2
        log.warning("CUDA out of memory at batch %d; retrying as %d + %d", len(pixels), half, len(pixels) - half)
        images = np.concatenate([self.run(pixels[:half]).images, self.run(pixels[half:]).images])
        return BatchResult(images, time.perf_counter() - start)

    def _forward(self, pixels: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(pixels)
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        model = self.compiled if pixels.shape[:3] in self.compiled_shapes else self.model
        # relight() copies the answer back to the CPU, which synchronises the device before the clock is read.
        return relight(model, batch, self.value_range, self.autocast_dtype, self.channels_last).numpy()
