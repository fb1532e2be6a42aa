"""Swapping the weights while serving: the new file is loaded beside the live one, checked, warmed, then switched to
between batches (service.batching.batcher.Batcher.switch), so nothing queued is dropped or answered twice, an image
is made by one set of weights, and a file that fails a check never serves.

The checks, in order (any failure raises SwapRefused and the live weights keep serving): the name is a file in
RELIGHT_WEIGHTS's folder; it is a relight weight file whose tensors fit its architecture (model.weights); that
architecture is the live one's; its raw output on a known input is finite and near its value range
(Engine.check_outputs). Then its warm-up shapes run, on a thread of their own while the live weights serve.

Two copies of the Stacked DMSHN take about 90 MB in float32 (11 M parameters each), so on any GPU both fit beside
the activations of a batch; where they do not (a device shared with other work), loading the new copy raises CUDA's
out-of-memory error and the swap is refused with that reason. RELIGHT_SWAP_UNLOAD_FIRST=true instead moves the live
copy to the CPU first, then loads, checks and warms the new one with serving paused (accepted requests wait in the
queue) and moves the old copy back if any check fails.
"""

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from model.weights import WeightsError, open_regular
from service.batching.handle import SwapRefused
from service.inference.engine import Engine
from service.settings import Settings

log = logging.getLogger("relight.weights_swap")

EngineFactory = Callable[[Settings], Engine]


def weights_path(settings: Settings, name: str | None) -> Path:
    """RELIGHT_WEIGHTS for None, else the file `name` beside it. Raises SwapRefused for anything but a plain file name
    (no folders, nothing hidden): an operator's endpoint must not read files elsewhere on the machine. Control
    characters are refused too: the name goes into the refusal's log line, where a newline would forge another."""
    if name is None:
        return settings.weights
    if not name or name != Path(name).name or name.startswith(".") or not name.isprintable():
        raise SwapRefused(f"{name!r} is not a file name: give the name of a file in RELIGHT_WEIGHTS's folder")
    return settings.weights.parent / name


def serving_already(path: Path, live: Engine) -> bool:
    """Whether `path` is the live file and still holds the bytes it was loaded from (a SIGHUP with nothing new).
    Only a regular file is read, in chunks: anything else (a FIFO, /dev/zero) is for the load's checks to refuse."""
    if path != live.weights_path:
        return False
    try:
        with open_regular(path) as file:
            return hashlib.file_digest(file, "sha256").hexdigest() == live.weights_sha256
    except (WeightsError, OSError):
        return False


def load_checked(settings: Settings, engine_factory: EngineFactory, path: Path, architecture: str) -> Engine:
    """An engine for the file at `path` with the live settings, checked (module docstring); raises SwapRefused."""
    try:
        engine = engine_factory(settings.model_copy(update={"weights": path}))
    except WeightsError as error:
        raise SwapRefused(str(error)) from None
    except (RuntimeError, OSError) as error:  # torch.cuda.OutOfMemoryError among them
        hint = "; RELIGHT_SWAP_UNLOAD_FIRST=true swaps with a pause instead" if "out of memory" in str(error) else ""
        raise SwapRefused(f"{path}: cannot load beside the live weights ({error}){hint}") from None
    if engine.metadata["architecture"] != architecture:
        raise SwapRefused(f"{path}: holds {engine.metadata['architecture']}, the live weights are {architecture}")
    try:
        engine.check_outputs()
    except WeightsError as error:
        raise SwapRefused(str(error)) from None
    return engine


def warmed(settings: Settings, engine: Engine, batch_limit: Callable[[int, int], int]) -> Engine:
    """The engine after its warm-up shapes ran (the live settings' shapes and budget); raises SwapRefused."""
    try:
        engine.warm_up(settings.warmup_shapes(), batch_limit, settings.warmup_budget_s)
    except RuntimeError as error:
        raise SwapRefused(f"{engine.weights_path}: warm-up failed ({error})") from None
    return engine


async def load_beside(
    settings: Settings, engine_factory: EngineFactory, path: Path, live: Engine, batch_limit: Callable[[int, int], int]
) -> Engine:
    """Load, check and warm the new weights on a thread of their own while `live` keeps serving."""
    engine = await asyncio.to_thread(load_checked, settings, engine_factory, path, live.metadata["architecture"])
    return await asyncio.to_thread(warmed, settings, engine, batch_limit)


def replace_in_place(
    settings: Settings, engine_factory: EngineFactory, path: Path, live: Engine, batch_limit: Callable[[int, int], int]
) -> Engine:
    """RELIGHT_SWAP_UNLOAD_FIRST: on the inference thread with serving paused, move `live` off the device, then load,
    check and warm the new weights; if any of that fails, `live` goes back to its device and SwapRefused is raised."""
    live.offload()
    try:
        engine = load_checked(settings, engine_factory, path, live.metadata["architecture"])
        return warmed(settings, engine, batch_limit)
    except BaseException:
        live.restore()
        raise
