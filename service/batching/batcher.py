"""One bounded queue in front of the model; one consumer that runs tile batches, smallest job first.

An accepted image becomes a job of windows (model.tiling): one window when it fits in a
tile, overlapping tiles otherwise. The unit the consumer schedules is a batch of windows of
one shape, bounded by count (max_batch_size) and by total pixels (max_batch_pixels), so
memory follows the batch, not the images. It serves the job with the least work left first
(ties: the oldest) and fills the batch with same-shape windows of the next jobs, so a small
upload is answered between the tiles of big ones. A fresh job waits up to max_wait for
same-shape company. Windows of a job whose client has gone or whose deadline has passed are
dropped before they run.

Inference and blending run in a single worker thread, so the event loop keeps accepting
and decoding uploads meanwhile. An exception in a batch answers that batch's jobs with an
error; the next batch runs as usual.

Swapping weights: switch() installs another run_batch between batches, at the first moment no job is
part-way through its windows (new jobs wait meanwhile), so that every image is made by one set of
weights and each job knows which (`Outcome.weights`).

Admission: each job's compute time is estimated from its pixels and the seconds per pixel
measured in warm-up (then followed as batches run). An upload that cannot finish before its
deadline given the work ahead of it is refused at once; one that could never finish within
the request timeout on this device is refused as too big.
"""

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from model.tiling import TiledImage, Tiling, Window
from service.batching.handle import (
    Backlogged,
    DeadlinePassed,
    InferenceFailed,
    NotAccepting,
    Outcome,
    QueueFull,
    TooBig,
)
from service.metrics import ModelMetrics

log = logging.getLogger("relight.batcher")

# How fast the seconds-per-pixel estimate follows measured batches, and the batches it learns from: below
# this size fixed costs dominate, and one slow batch (a first pass at a new shape) moves it at most 2x.
FOLLOW = 0.2
LEARN_FROM_PIXELS = 256 * 256


@dataclass
class BatchResult:
    """What run_batch returns (service.inference.engine.Engine.run): the relit batch and its compute time."""

    images: np.ndarray  # uint8 (N, H, W, 3)
    inference_s: float


def work_pixels(windows: list[Window]) -> int:
    return sum(w.height * w.width for w in windows)


@dataclass(eq=False)
class Reservation:
    """An admitted upload still being decoded: its work counts in the backlog until it is submitted."""

    pixels: int


@dataclass(eq=False)
class Job:
    """One accepted image in the queue: its windows (one, or its tiles), when its answer stops mattering, and the
    future its request awaits (resolves to an Outcome, or raises a refusal)."""

    image: TiledImage
    deadline: float  # time.monotonic() after which nobody waits for the answer
    future: asyncio.Future
    enqueued_at: float = field(default_factory=time.monotonic)
    abandoned: bool = False  # set by the request handler when its client has gone
    handed_out: int = 0  # windows given to batches so far
    finished: int = 0  # windows blended in
    started_at: float | None = None
    weights: str = ""  # the weights its first window ran on (Batcher.weights then)
    inference_s: float = 0.0
    largest_batch: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.tile_shape

    @property
    def waiting_windows(self) -> list[Window]:
        return self.image.windows[self.handed_out :]

    @property
    def waiting_pixels(self) -> int:
        return work_pixels(self.waiting_windows)


# What a weights swap installs (Batcher.switch): the new run_batch and the name of its weights.
RunBatch = Callable[[np.ndarray], BatchResult]
Change = Callable[[], tuple[RunBatch, str]]


@dataclass(eq=False)
class PendingSwitch:
    change: Change
    done: asyncio.Future


class Batcher:
    """The queue and its consumer. run_batch(uint8 (N, H, W, 3)) -> BatchResult runs on the inference thread;
    `weights` names what it runs (service.batching.handle.weights_tag) and goes into each Outcome."""

    def __init__(
        self,
        run_batch: RunBatch,
        weights: str,
        tiling: Tiling,
        max_wait_s: float,
        max_queue: int,
        metrics: ModelMetrics,
    ):
        self.run_batch, self.weights = run_batch, weights
        self.tiling, self.max_wait_s, self.max_queue = tiling, max_wait_s, max_queue
        self.metrics = metrics
        self.seconds_per_pixel: float | None = None  # set from the warm-up, then follows real batches
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relight-inference")
        self._jobs: list[Job] = []  # accepted and not yet answered, in arrival order
        self._reserved: set[Reservation] = set()
        self._running_until: float | None = None  # when the batch on the device is expected to end
        self._arrived = asyncio.Event()
        self._closing = False
        self._consumer: asyncio.Task | None = None
        self._switch: PendingSwitch | None = None
        metrics.backlog.set_function(self.backlog_seconds)
        metrics.seconds_per_megapixel.set_function(lambda: (self.seconds_per_pixel or 0.0) * 1e6)

    def start(self) -> None:
        """Start the consumer task on the running event loop. Raises RuntimeError outside one, and on a second
        call: two consumers would take batches off one queue side by side."""
        if self._consumer is not None:
            raise RuntimeError("the batcher is already started")
        self._consumer = asyncio.create_task(self._consume(), name="relight-batcher")

    async def run_in_worker(self, function, *args):
        """Run on the inference thread (used for warm-up, so it never overlaps a batch)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def estimate_s(self, pixels: int) -> float:
        """Estimated compute seconds for `pixels` pixels of windows (a pixel two overlapping tiles share counts
        twice, as work_pixels sums them): pixels x seconds_per_pixel, measured in warm-up and then followed as
        batches run. 0.0 until warm-up has set that rate (admit() checks nothing before then)."""
        return pixels * (self.seconds_per_pixel or 0.0)

    def _waiting_work(self) -> list[int]:
        """Pixels still to run per accepted upload, decoded or not."""
        queued = [job.waiting_pixels for job in self._jobs if not job.abandoned]
        return queued + [reservation.pixels for reservation in self._reserved]

    def _running_s(self) -> float:
        return max(0.0, self._running_until - time.monotonic()) if self._running_until else 0.0

    def backlog_seconds(self) -> float:
        """Estimated compute time of every window accepted and not yet run."""
        return self._running_s() + self.estimate_s(sum(self._waiting_work()))

    async def admit(self, height: int, width: int, time_left_s: float) -> Reservation:
        """Refuse at once what cannot finish in time: TooBig alone, Backlogged behind the work ahead of it.

        It never awaits, so uploads admitted one after another see each other's reservations; each counts
        as work until submit() or release() takes it back.
        """
        pixels = work_pixels(self.tiling.windows(height, width))
        if self.seconds_per_pixel is not None:
            own = self.estimate_s(pixels)
            if own > time_left_s:
                raise TooBig(own)
            # Smallest job first: only uploads with no more work left than this one run before it.
            ahead = self._running_s() + self.estimate_s(sum(p for p in self._waiting_work() if p <= pixels))
            if ahead + own > time_left_s:
                raise Backlogged(max(1, math.ceil(ahead + own - time_left_s)), ahead)
        reservation = Reservation(pixels)
        self._reserved.add(reservation)
        return reservation

    def release(self, reservation: Reservation | None) -> None:
        """Take back admit()'s reservation (its pixels stop counting in the backlog), for an upload that will not
        be submitted (decoding failed). None, or a reservation already released or submitted, is a no-op."""
        self._reserved.discard(reservation)

    async def submit(self, pixels: np.ndarray, deadline: float, reservation: Reservation | None = None) -> Job:
        """Queue uint8 (H, W, 3) `pixels` (cut into tiles past the tile size) until `deadline` (time.monotonic()),
        consuming admit()'s `reservation`. Raises NotAccepting while closing, QueueFull at max_queue images."""
        self.release(reservation)
        if self._closing:
            raise NotAccepting
        if len(self._jobs) >= self.max_queue:
            raise QueueFull
        image = TiledImage(pixels, self.tiling.tile, self.tiling.overlap)
        job = Job(image, deadline, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self.metrics.queue_depth.set(len(self._jobs))
        self._arrived.set()
        return job

    def withdraw(self, job: Job, reason: str) -> None:
        """The request gave up (client gone, deadline passed): its windows that have not run are dropped."""
        if job.abandoned:
            return
        job.abandoned = True
        self._forget(job, reason)

    def _forget(self, job: Job, reason: str) -> None:
        if job not in self._jobs:
            return
        self._jobs.remove(job)
        self.metrics.queue_depth.set(len(self._jobs))
        dropped = len(job.waiting_windows)
        if dropped:
            self.metrics.tiles.labels(outcome="dropped").inc(dropped)
            self.metrics.dropped.labels(reason=reason).inc()
            log.info("dropped %d windows of an image (%s)", dropped, reason)

    async def switch(self, change: Change) -> None:
        """Between two batches, once no job is part-way through its windows, run change() on the inference thread
        and serve with the (run_batch, weights) it returns; jobs not yet started wait for it, part-run ones finish
        first. An exception from change() is raised here and nothing changes. Raises NotAccepting when the queue
        is stopping; one switch at a time (a second raises RuntimeError)."""
        if self._closing:
            raise NotAccepting
        if self._switch is not None:
            raise RuntimeError("a switch is already pending")
        self._switch = PendingSwitch(change, asyncio.get_running_loop().create_future())
        self._arrived.set()
        try:
            await self._switch.done
        finally:
            self._switch = None

    async def _apply_switch(self) -> None:
        pending = self._switch
        if pending is None or pending.done.done():
            return
        try:
            self.run_batch, self.weights = await self.run_in_worker(pending.change)
        except Exception as error:
            pending.done.set_exception(error)
        else:
            pending.done.set_result(None)

    async def stop(self) -> None:
        """Refuse new work, finish what is queued, then stop the worker thread."""
        self._closing = True
        self._arrived.set()
        if self._consumer is not None:
            await self._consumer
        if self._switch is not None and not self._switch.done.done():
            self._switch.done.set_exception(NotAccepting())
        self.executor.shutdown(wait=True)

    async def _consume(self) -> None:
        while (batch := await self._next_batch()) is not None:
            await self._run(batch)

    def _waiting_jobs(self) -> list[Job]:
        """Jobs with windows still to hand out, dropping those nobody waits for; least work left first."""
        now = time.monotonic()
        for job in list(self._jobs):
            if job.abandoned or job.future.done():
                self._forget(job, "client_gone")
            elif now > job.deadline:
                self._forget(job, "deadline")
                job.future.set_exception(DeadlinePassed())
        waiting = (job for job in self._jobs if job.waiting_windows)
        return sorted(waiting, key=lambda job: (job.waiting_pixels, job.enqueued_at))

    async def _next_batch(self) -> list[tuple[Job, Window]] | None:
        while True:
            waiting = self._waiting_jobs()
            if self._switch is not None and not self._switch.done.done():
                # Only jobs already part-run go on: a switch must not land between one image's tiles.
                waiting = [job for job in waiting if job.handed_out]
                if not waiting:
                    await self._apply_switch()
                    continue
            if not waiting:
                if self._closing:
                    return None
                self._arrived.clear()
                await self._arrived.wait()
                continue
            first = waiting[0]
            limit = self.tiling.batch_limit(*first.shape)
            same_shape = [job for job in waiting if job.shape == first.shape]
            available = sum(len(job.waiting_windows) for job in same_shape)
            remaining = first.enqueued_at + self.max_wait_s - time.monotonic()
            if available >= limit or remaining <= 0 or self._closing or first.handed_out:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        batch = []
        for job in same_shape:
            if not job.handed_out:
                job.weights = self.weights
            take = job.waiting_windows[: limit - len(batch)]
            batch.extend((job, window) for window in take)
            job.handed_out += len(take)
            if len(batch) == limit:
                break
        return batch

    def _compute(self, batch: list[tuple[Job, Window]]) -> tuple[BatchResult, dict[Job, np.ndarray]]:
        """On the worker thread: run the windows, blend them in, and finish every job that is complete."""
        result = self.run_batch(np.stack([job.image.crop(window) for job, window in batch]))
        finished = {}
        for (job, window), output in zip(batch, result.images, strict=True):
            job.image.add(window, output)
            job.finished += 1
            if job.finished == len(job.image.windows) and not job.abandoned:
                finished[job] = job.image.result()
        return result, finished

    def _learn(self, seconds: float, pixels: int) -> None:
        if pixels < LEARN_FROM_PIXELS:
            return
        measured = seconds / pixels
        if self.seconds_per_pixel is None:
            self.seconds_per_pixel = measured
            return
        measured = min(max(measured, self.seconds_per_pixel / 2), self.seconds_per_pixel * 2)
        self.seconds_per_pixel = (1 - FOLLOW) * self.seconds_per_pixel + FOLLOW * measured

    async def _run(self, batch: list[tuple[Job, Window]]) -> None:
        started = time.monotonic()
        jobs = list(dict.fromkeys(job for job, _ in batch))
        for job in jobs:
            job.started_at = job.started_at or started
        pixels = len(batch) * batch[0][1].height * batch[0][1].width
        self._running_until = started + self.estimate_s(pixels)
        self.metrics.batch_size.observe(len(batch))
        try:
            result, finished = await self.run_in_worker(self._compute, batch)
        except Exception as error:
            log.exception("a batch of %d windows failed", len(batch))
            for job in jobs:
                self._forget(job, "failed")
                if not job.future.done():
                    job.future.set_exception(InferenceFailed(f"{type(error).__name__}"))
            return
        finally:
            self._running_until = None
        self.metrics.tiles.labels(outcome="run").inc(len(batch))
        self._learn(result.inference_s, pixels)
        for job in jobs:
            job.inference_s += result.inference_s
            job.largest_batch = max(job.largest_batch, len(batch))
        for job, image in finished.items():
            if job in self._jobs:
                self._jobs.remove(job)
                self.metrics.queue_depth.set(len(self._jobs))
            if not job.future.done():
                outcome = Outcome(
                    image,
                    job.started_at - job.enqueued_at,
                    job.inference_s,
                    job.largest_batch,
                    len(job.image.windows),
                    job.weights,
                )
                job.future.set_result(outcome)
