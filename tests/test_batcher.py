"""The queue's policy in process, against a run_batch of known cost: no server, no network, no sleeps but milliseconds.

What tests/test_big_images.py and tests/test_service.py show through HTTP on a running service (a small upload
answered between a big one's tiles, the pixel budget, admission, a client that leaves), here checked batch by
batch: which windows each forward pass held, in what order, and what the batcher learned and counted.
"""

import asyncio
import math
import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from model.tiling import Tiling, tile_windows
from service.batching.batcher import LEARN_FROM_PIXELS, Batcher, BatchResult
from service.batching.handle import (
    Backlogged,
    DeadlinePassed,
    InferenceFailed,
    NotAccepting,
    QueueFull,
    TooBig,
)
from service.inference.engine import Engine
from service.inference.local_model import LocalModel
from service.metrics import ModelMetrics
from service.settings import Settings

pytestmark = pytest.mark.fast
POISON = 13  # an image of this value makes its batch fail
WAIT_S = 5.0  # the most any step here waits for the inference thread before the test fails


class Device:
    """A run_batch of known cost: each window comes back inverted, after no real work, timed at seconds_per_pixel.

    It records every batch (its size, height, width and each window's first pixel value) and, while `hold` is
    clear, keeps a batch on the "device" until the test releases it: the test then decides what arrives meanwhile.
    """

    def __init__(self, seconds_per_pixel: float = 1e-9):
        self.seconds_per_pixel = seconds_per_pixel
        self.batches: list[tuple[int, int, int]] = []
        self.values: list[list[int]] = []
        self.hold, self.started = threading.Event(), threading.Event()
        self.hold.set()

    def __call__(self, pixels: np.ndarray) -> BatchResult:
        self.batches.append(pixels.shape[:3])
        self.values.append([int(window[0, 0, 0]) for window in pixels])
        self.started.set()
        assert self.hold.wait(WAIT_S)
        if (pixels == POISON).all(axis=(1, 2, 3)).any():
            raise RuntimeError("injected fault")
        return BatchResult(255 - pixels, self.seconds_per_pixel * pixels[..., 0].size)

    async def next_batch_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, WAIT_S)
        self.started.clear()


class Queue:
    """A Batcher on a Device with its own metrics registry; `tiling` as the settings of the same names."""

    def __init__(self, device: Device, tile=1088, overlap=64, max_batch_size=8, max_batch_pixels=4 << 20,
                 max_wait_s=0.0, max_queue=64):  # fmt: skip
        self.device, self.registry = device, CollectorRegistry()
        metrics = ModelMetrics(self.registry, max_batch_size)
        tiling = Tiling(tile, overlap, max_batch_size, max_batch_pixels)
        self.batcher = Batcher(device, "device", tiling, max_wait_s, max_queue, metrics)

    def metric(self, name: str, **labels) -> float:
        return self.registry.get_sample_value(name, labels)

    async def submit(self, height: int, width: int, value: int, deadline_s: float = 60.0):
        pixels = np.full((height, width, 3), value, np.uint8)
        return await self.batcher.submit(pixels, time.monotonic() + deadline_s)


def image_of(value: int, height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 255 - value, np.uint8)


def test_least_work_left_goes_first_ties_by_arrival_and_a_small_upload_runs_between_big_tiles():
    async def scenario():
        device = Device()
        queue = Queue(device, tile=64, overlap=8, max_batch_size=2, max_batch_pixels=2 * 64 * 64)
        queue.batcher.start()
        with pytest.raises(RuntimeError, match="already started"):  # a second consumer would split the batches
            queue.batcher.start()
        device.hold.clear()
        big = await queue.submit(200, 200, 1)
        await device.next_batch_started()  # two of its tiles are on the device
        later_big = await queue.submit(64, 64, 2)  # one window, but 4x the pixels of the next two
        first_small = await queue.submit(32, 32, 3)
        second_small = await queue.submit(32, 32, 4)
        device.hold.set()
        outcomes = await asyncio.gather(big.future, later_big.future, first_small.future, second_small.future)
        await queue.batcher.stop()
        return device, outcomes

    device, (big, later_big, first_small, second_small) = asyncio.run(scenario())
    windows = len(tile_windows(200, 200, 64, 8))
    # The big image's first batch, then the two small ones (oldest first, together: same shape), then the
    # 64x64 upload (less work left than the big one's 23 tiles) with the big one's next tile as company.
    assert device.batches[:3] == [(2, 64, 64), (2, 32, 32), (2, 64, 64)]
    assert device.values[:3] == [[1, 1], [3, 4], [2, 1]]
    assert sum(count for count, _, _ in device.batches) == windows + 3
    assert all(values == [1] * len(values) for values in device.values[3:])
    assert big.tiles == windows and big.batch_size == 2 and np.array_equal(big.image, image_of(1, 200, 200))
    assert np.array_equal(first_small.image, image_of(3, 32, 32)) and first_small.batch_size == 2
    assert np.array_equal(second_small.image, image_of(4, 32, 32))
    assert later_big.tiles == 1 and np.array_equal(later_big.image, image_of(2, 64, 64))


def test_a_batch_holds_one_shape_within_the_count_and_the_pixel_budget():
    async def scenario():
        device = Device()
        queue = Queue(device, max_batch_size=8, max_batch_pixels=3 * 32 * 32)
        queue.batcher.start()
        device.hold.clear()
        blocker = await queue.submit(16, 16, 0)
        await device.next_batch_started()
        jobs = [await queue.submit(32, 32, value) for value in range(1, 9)]
        jobs += [await queue.submit(32, 16, value) for value in (20, 21)]
        device.hold.set()
        await asyncio.gather(blocker.future, *(job.future for job in jobs))
        await queue.batcher.stop()
        return device, queue

    device, queue = asyncio.run(scenario())
    # 32x16 windows are less work, so they go first; 32x32 ones three at a time (3 x 1024 pixels), never mixed.
    assert device.batches == [(1, 16, 16), (2, 32, 16), (3, 32, 32), (3, 32, 32), (2, 32, 32)]
    assert device.values[1:] == [[20, 21], [1, 2, 3], [4, 5, 6], [7, 8]]
    assert queue.metric("relight_batch_size_count") == 5 and queue.metric("relight_batch_size_sum") == 11


def test_a_fresh_upload_waits_at_most_max_wait_for_same_shape_company():
    max_wait_s = 0.2

    async def scenario():
        device = Device()
        queue = Queue(device, max_batch_size=4, max_wait_s=max_wait_s)
        queue.batcher.start()
        submitted = time.monotonic()
        alone = await queue.submit(32, 32, 1)
        await asyncio.sleep(0.01)  # the queue is now waiting for company
        company = await queue.submit(32, 32, 2)
        await asyncio.gather(alone.future, company.future)
        waited = time.monotonic() - submitted
        # A full batch does not wait: four at once are answered long before max_wait.
        submitted = time.monotonic()
        full = [await queue.submit(32, 48, value) for value in range(4)]
        await asyncio.gather(*(job.future for job in full))
        full_waited = time.monotonic() - submitted
        await queue.batcher.stop()
        return device, waited, full_waited

    device, waited, full_waited = asyncio.run(scenario())
    assert device.batches == [(2, 32, 32), (4, 32, 48)]
    assert max_wait_s <= waited < max_wait_s + 2
    assert full_waited < max_wait_s


def test_admission_refuses_what_cannot_finish_and_counts_reservations_smallest_first():
    async def scenario():
        queue = Queue(Device())
        batcher = queue.batcher
        # Before warm-up has measured anything, nothing is refused.
        batcher.release(await batcher.admit(4000, 4000, 0.001))
        batcher.seconds_per_pixel = 1e-6  # 1 s per megapixel
        with pytest.raises(TooBig) as too_big:
            await batcher.admit(4000, 4000, 10.0)
        assert too_big.value.seconds > 10.0
        first = await batcher.admit(1000, 1000, 10.0)
        assert batcher.backlog_seconds() == pytest.approx(1.0)
        with pytest.raises(Backlogged) as backlogged:
            await batcher.admit(1000, 1000, 1.5)  # 1 s ahead of it and 1 s of its own
        assert backlogged.value.ahead_s == pytest.approx(1.0) and backlogged.value.retry_after_s == 1
        # A smaller upload runs before the reserved one, so that work is not ahead of it.
        small = await batcher.admit(500, 500, 0.5)
        assert batcher.backlog_seconds() == pytest.approx(1.25)
        batcher.release(first)
        assert batcher.backlog_seconds() == pytest.approx(0.25)
        # Submitting takes the reservation's place: the work counts once, now as queued.
        await batcher.submit(np.zeros((500, 500, 3), np.uint8), time.monotonic() + 60, small)
        assert batcher.backlog_seconds() == pytest.approx(0.25)
        assert queue.metric("relight_backlog_seconds") == pytest.approx(0.25)
        assert queue.metric("relight_queue_depth") == 1

    asyncio.run(scenario())


def test_admission_learns_seconds_per_pixel_from_big_enough_batches():
    side = math.isqrt(LEARN_FROM_PIXELS)

    async def scenario():
        device = Device(seconds_per_pixel=4e-6)
        queue = Queue(device)
        batcher = queue.batcher
        batcher.start()
        learned = []
        for height, width, device_speed in ((side, side, 4e-6), (side, side, 1e-4), (32, 32, 1.0), (side, side, 5e-6)):
            device.seconds_per_pixel = device_speed
            await (await queue.submit(height, width, 1)).future
            learned.append(batcher.seconds_per_pixel)
        await batcher.stop()
        return learned, queue.metric("relight_seconds_per_megapixel")

    learned, per_megapixel = asyncio.run(scenario())
    assert learned[0] == pytest.approx(4e-6)  # the first measurement is taken as it is
    assert learned[1] == pytest.approx(0.8 * 4e-6 + 0.2 * 8e-6)  # a 25x slower batch moves it as a 2x one
    assert learned[2] == learned[1]  # a batch below LEARN_FROM_PIXELS is mostly fixed cost: not learned from
    assert learned[3] == pytest.approx(0.8 * learned[2] + 0.2 * 5e-6)
    assert per_megapixel == pytest.approx(learned[3] * 1e6)


def test_a_withdrawn_job_loses_the_windows_that_have_not_run():
    async def scenario():
        device = Device()
        queue = Queue(device, tile=64, overlap=8, max_batch_size=1, max_batch_pixels=64 * 64)
        queue.batcher.start()
        device.hold.clear()
        job = await queue.submit(200, 200, 1)
        await device.next_batch_started()
        queue.batcher.withdraw(job, "client_gone")
        queue.batcher.withdraw(job, "client_gone")  # twice is once
        job.future.cancel()
        device.hold.set()
        await queue.batcher.stop()
        return device, queue

    device, queue = asyncio.run(scenario())
    windows = len(tile_windows(200, 200, 64, 8))
    assert device.batches == [(1, 64, 64)]  # the window already on the device finishes; no other runs
    assert queue.metric("relight_tiles_total", outcome="run") == 1
    assert queue.metric("relight_tiles_total", outcome="dropped") == windows - 1
    assert queue.metric("relight_dropped_total", reason="client_gone") == 1
    assert queue.metric("relight_queue_depth") == 0 and queue.metric("relight_backlog_seconds") == 0


def test_past_deadlines_and_abandoned_futures_are_dropped_before_they_run():
    async def scenario():
        device = Device()
        queue = Queue(device, max_batch_size=1)
        queue.batcher.start()
        device.hold.clear()
        blocker = await queue.submit(32, 32, 0)
        await device.next_batch_started()
        late = await queue.submit(32, 32, 1, deadline_s=-0.001)
        gone = await queue.submit(32, 32, 2)
        gone.future.cancel()  # its request ended without withdrawing it
        kept = await queue.submit(32, 32, 3)
        device.hold.set()
        await asyncio.gather(blocker.future, kept.future)
        with pytest.raises(DeadlinePassed):
            await late.future
        await queue.batcher.stop()
        return device, queue

    device, queue = asyncio.run(scenario())
    assert device.values == [[0], [3]]
    assert queue.metric("relight_dropped_total", reason="deadline") == 1
    assert queue.metric("relight_dropped_total", reason="client_gone") == 1


def test_a_failing_batch_fails_its_jobs_only_and_the_next_batch_runs():
    async def scenario():
        device = Device()
        queue = Queue(device)
        queue.batcher.start()
        device.hold.clear()
        poisoned = await queue.submit(32, 32, POISON)
        await device.next_batch_started()
        other = await queue.submit(32, 48, 1)
        device.hold.set()
        with pytest.raises(InferenceFailed, match="RuntimeError"):
            await poisoned.future
        outcome = await other.future
        await queue.batcher.stop()
        return device, outcome

    device, outcome = asyncio.run(scenario())
    assert device.batches == [(1, 32, 32), (1, 32, 48)]
    assert np.array_equal(outcome.image, image_of(1, 32, 48))


def test_a_full_queue_refuses_and_stopping_finishes_what_was_accepted():
    async def scenario():
        device = Device()
        queue = Queue(device, max_batch_size=1, max_queue=2)
        queue.batcher.start()
        device.hold.clear()
        running = await queue.submit(32, 32, 1)  # counts until it is answered
        await device.next_batch_started()
        waiting = await queue.submit(32, 32, 2)
        with pytest.raises(QueueFull):
            await queue.submit(32, 32, 3)
        stopping = asyncio.create_task(queue.batcher.stop())
        await asyncio.sleep(0)
        with pytest.raises(NotAccepting):
            await queue.submit(32, 32, 4)
        device.hold.set()
        await stopping
        return running.future.result(), waiting.future.result()

    running, waiting = asyncio.run(scenario())
    assert np.array_equal(running.image, image_of(1, 32, 32)) and np.array_equal(waiting.image, image_of(2, 32, 32))


def halve(pixels: np.ndarray) -> BatchResult:
    """Other weights, as far as the queue can tell: each window comes back halved."""
    return BatchResult(pixels // 2, 0.0)


def test_a_weights_switch_waits_for_a_part_run_image_and_later_jobs_run_on_the_new_weights():
    async def scenario():
        device = Device()
        queue = Queue(device, tile=64, overlap=8, max_batch_size=2, max_batch_pixels=2 * 64 * 64)
        batcher = queue.batcher
        batcher.start()
        device.hold.clear()
        big = await queue.submit(200, 200, 1)
        await device.next_batch_started()  # two of its tiles are on the device: it is part-run
        queued = await queue.submit(32, 32, 3)  # less work: without a switch it would run next
        switching = asyncio.create_task(batcher.switch(lambda: (halve, "halved")))
        await asyncio.sleep(0.01)
        later = await queue.submit(32, 32, 5)
        device.hold.set()
        await switching
        outcomes = await asyncio.gather(big.future, queued.future, later.future)
        await batcher.stop()
        return device, outcomes

    device, (big, queued, later) = asyncio.run(scenario())
    # Every tile of the big image ran on the old weights, one after another; nothing else ran on them.
    assert sum(count for count, _, _ in device.batches) == len(tile_windows(200, 200, 64, 8))
    assert all(values == [1] * len(values) for values in device.values)
    assert big.weights == "device" and np.array_equal(big.image, image_of(1, 200, 200))
    for outcome, value in ((queued, 3), (later, 5)):
        assert outcome.weights == "halved" and np.array_equal(outcome.image, np.full((32, 32, 3), value // 2))
    assert queued.batch_size == 2  # the two that waited for the switch ran together


def test_a_failed_switch_changes_nothing():
    def broken():
        raise RuntimeError("no such weights")

    async def scenario():
        device = Device()
        queue = Queue(device)
        queue.batcher.start()
        with pytest.raises(RuntimeError, match="no such weights"):
            await queue.batcher.switch(broken)
        job = await queue.submit(32, 32, 7)
        outcome = await job.future
        await queue.batcher.stop()
        return outcome

    outcome = asyncio.run(scenario())
    assert outcome.weights == "device" and np.array_equal(outcome.image, image_of(7, 32, 32))


def test_the_local_model_withdraws_a_job_whose_request_ended_unanswered(weights_file):
    """ModelHandle.finished on the real engine in this process: an unanswered job is dropped, an answered one kept."""

    async def scenario():
        settings = Settings(weights=weights_file, device="cpu", compile="off", warmup="", warmup_tile=False)
        registry = CollectorRegistry()
        model = LocalModel(settings, Engine(settings), registry)  # not started: nothing runs, the queue holds
        answered = await model.submit(np.zeros((32, 32, 3), np.uint8), time.monotonic() + 60)
        answered.future.set_result(None)
        model.finished(answered)
        left = await model.submit(np.zeros((32, 32, 3), np.uint8), time.monotonic() + 60)
        model.finished(left)
        model.finished(left)
        return registry

    registry = asyncio.run(scenario())
    assert registry.get_sample_value("relight_dropped_total", {"reason": "client_gone"}) == 1
    assert registry.get_sample_value("relight_queue_depth") == 1  # the answered job is the batcher's to finish
