"""The weights swap's policy in process (LocalModel.reload, service.inference.hangup.HangupSwaps), on the real engine:
what a swap that fails unforeseen does, a swap asked for while another runs, and SIGHUPs that come during one or
before the model serves. tests/test_weights_swap.py shows the same through a real server; here a gate holds a swap
after it has read its file, so that what arrives meanwhile is decided by the test, not by the machine's speed."""

import asyncio
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry

from model import StackedDMSHN
from model.weights import save_weights
from service.batching.handle import SwapBusy, SwapRefused
from service.inference.engine import Engine
from service.inference.hangup import HangupSwaps
from service.inference.local_model import LocalModel
from service.settings import Settings

WAIT_S = 60.0  # the most a step waits for a swap before the test fails (a swap warms a 256x256 pass: seconds here)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """seed0.safetensors, seed1.safetensors, seed2.safetensors: the real network, three seeds."""
    folder = tmp_path_factory.mktemp("swap-policy")
    for seed in range(3):
        torch.manual_seed(seed)
        save_weights(StackedDMSHN(), folder / f"seed{seed}.safetensors", (-0.5, 0.5))
    return folder


def settings_for(weights: Path) -> Settings:
    return Settings(weights=weights, device="cpu", dtype="float32", compile="off", warmup="", warmup_tile=False)


class Gate:
    """An engine factory whose engines, once loaded from their file, wait until the test opens the gate."""

    def __init__(self):
        self.open, self.loaded = threading.Event(), threading.Event()

    def __call__(self, settings: Settings) -> Engine:
        engine = Engine(settings)
        self.loaded.set()
        assert self.open.wait(WAIT_S)
        return engine

    async def wait_loaded(self) -> None:
        assert await asyncio.to_thread(self.loaded.wait, WAIT_S)


class NoRoomEngine(Engine):
    """The real engine where the device has no room for the output check's activations, as a full GPU answers."""

    def check_outputs(self) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def refusals(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("relight_weights_swaps_total", {"outcome": "refused"})


async def serving(model: LocalModel, sha256: str) -> None:
    """Wait until `model` serves the weights of that digest; AssertionError after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while model.description()["weights_sha256"] != sha256:
        assert time.monotonic() < deadline, f"still serving {model.description()['weights_tag']}"
        await asyncio.sleep(0.05)


async def answer(model: LocalModel, pixels: np.ndarray):
    job = await model.submit(pixels, time.monotonic() + WAIT_S)
    return await asyncio.wait_for(job.future, WAIT_S)


def test_an_error_no_check_foresaw_is_a_refusal_and_the_old_weights_keep_serving(folder):
    settings = settings_for(folder / "seed0.safetensors")
    live = Engine(settings)
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)

    async def scenario():
        registry = CollectorRegistry()
        model = LocalModel(settings, live, registry, engine_factory=NoRoomEngine)
        model.batcher.start()
        with pytest.raises(SwapRefused, match="OutOfMemoryError: CUDA out of memory") as refused:
            await model.reload("seed1.safetensors")
        outcome = await answer(model, pixels)
        await model.batcher.stop()
        return refused.value, refusals(registry), model.description()["weights_tag"], outcome

    refusal, refused, serving, outcome = asyncio.run(scenario())
    assert type(refusal) is SwapRefused and refused == 1
    assert serving == outcome.weights == live.weights_tag
    assert np.array_equal(outcome.image, live.run(pixels[None]).images[0])


def test_a_swap_asked_for_during_another_is_busy_unless_it_waits_then_runs_after_it(folder):
    settings = settings_for(folder / "seed0.safetensors")
    gate = Gate()

    async def scenario():
        registry = CollectorRegistry()
        model = LocalModel(settings, Engine(settings), registry, engine_factory=gate)
        model.batcher.start()
        first = asyncio.create_task(model.reload("seed1.safetensors"))
        await gate.wait_loaded()
        with pytest.raises(SwapBusy):
            await model.reload("seed2.safetensors")
        waiting = asyncio.create_task(model.reload("seed2.safetensors", wait=True))
        await asyncio.sleep(0.1)
        gate.open.set()
        swapped = await asyncio.wait_for(first, WAIT_S)
        after = await asyncio.wait_for(waiting, WAIT_S)
        await model.batcher.stop()
        return swapped["weights"], after["weights"], refusals(registry)

    swapped, after, refused = asyncio.run(scenario())
    assert (swapped, after, refused) == ("seed1.safetensors", "seed2.safetensors", 0)


def test_sighups_during_a_swap_run_one_more_after_it_on_the_file_then_at_relight_weights(folder, tmp_path):
    served = tmp_path / "served.safetensors"
    shutil.copy(folder / "seed0.safetensors", served)
    settings = settings_for(served)
    gate = Gate()
    digests = {seed: Engine(settings_for(folder / f"seed{seed}.safetensors")).weights_sha256 for seed in (1, 2)}

    async def scenario():
        registry = CollectorRegistry()
        model = LocalModel(settings, Engine(settings), registry, engine_factory=gate)
        model.batcher.start()
        swaps = HangupSwaps()
        swaps.serve(model)
        shutil.copy(folder / "seed1.safetensors", tmp_path / "incoming")
        (tmp_path / "incoming").replace(served)
        swaps.ask()
        await gate.wait_loaded()  # the first swap has read seed1
        shutil.copy(folder / "seed2.safetensors", tmp_path / "incoming")
        (tmp_path / "incoming").replace(served)
        for _ in range(3):
            swaps.ask()
        gate.open.set()
        await serving(model, digests[2])
        await model.batcher.stop()
        return registry

    registry = asyncio.run(scenario())
    assert registry.get_sample_value("relight_weights_swaps_total", {"outcome": "done"}) == 2
    assert refusals(registry) == 0


def test_a_sighup_before_the_model_serves_swaps_once_it_does(folder, tmp_path):
    served = tmp_path / "served.safetensors"
    shutil.copy(folder / "seed0.safetensors", served)
    settings = settings_for(served)
    live = Engine(settings)
    shutil.copy(folder / "seed1.safetensors", served)  # after the live engine read it: only a swap serves it
    swaps = HangupSwaps()
    swaps.ask()  # as the handler does before the event loop runs

    async def scenario():
        model = LocalModel(settings, live, CollectorRegistry())
        model.batcher.start()
        swaps.serve(model)
        await serving(model, Engine(settings_for(folder / "seed1.safetensors")).weights_sha256)
        await model.batcher.stop()

    asyncio.run(scenario())
