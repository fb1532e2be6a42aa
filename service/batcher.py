"""One bounded queue in front of the model and one consumer that batches same-size images.

The consumer takes the oldest waiting image, then up to max_batch_size - 1 more of the same
size that arrive within max_wait of the first one's arrival, and runs them as one forward
pass in a single worker thread, so the event loop keeps accepting and decoding uploads
meanwhile. Images abandoned by their client or past their deadline are dropped before they
are computed. An exception in a batch answers that batch's requests with an error; the next
batch runs as usual.
"""

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.engine import BatchResult
from service.metrics import Metrics

log = logging.getLogger("relight.batcher")


class QueueFull(Exception):
    pass


class NotAccepting(Exception):
    """The batcher is stopping (the service is draining)."""


class InferenceFailed(Exception):
    pass


class DeadlinePassed(Exception):
    pass


@dataclass
class Outcome:
    image: np.ndarray
    queue_s: float
    inference_s: float
    batch_size: int


@dataclass(eq=False)
class Job:
    pixels: np.ndarray
    deadline: float  # time.monotonic() after which nobody waits for the answer
    future: asyncio.Future
    enqueued_at: float = field(default_factory=time.monotonic)
    abandoned: bool = False  # set by the request handler when its client has gone


class Batcher:
    def __init__(
        self,
        run_batch: Callable[[np.ndarray], BatchResult],
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        metrics: Metrics,
    ):
        self.run_batch = run_batch
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relight-inference")
        self._pending: collections.deque[Job] = collections.deque()
        self._arrived = asyncio.Event()
        self._closing = False
        self._consumer: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._consumer = asyncio.create_task(self._consume(), name="relight-batcher")

    async def run_in_worker(self, function, *args):
        """Run on the inference thread (used for warm-up, so it never overlaps a batch)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def submit(self, pixels: np.ndarray, deadline: float) -> Job:
        if self._closing:
            raise NotAccepting
        if len(self._pending) >= self.max_queue:
            raise QueueFull
        job = Job(pixels, deadline, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self.metrics.queue_depth.set(len(self._pending))
        self._arrived.set()
        return job

    def withdraw(self, job: Job, reason: str) -> None:
        """The request gave up (client gone, deadline passed): free its place in the queue now."""
        job.abandoned = True
        if job in self._pending:
            self._pending.remove(job)
            self.metrics.queue_depth.set(len(self._pending))
            self.metrics.dropped.labels(reason=reason).inc()
            log.info("dropped a queued image (%s)", reason)

    async def stop(self) -> None:
        """Refuse new work, finish what is queued, then stop the worker thread."""
        self._closing = True
        self._arrived.set()
        if self._consumer is not None:
            await self._consumer
        self.executor.shutdown(wait=True)

    async def _consume(self) -> None:
        while (batch := await self._next_batch()) is not None:
            live = [job for job in batch if self._still_wanted(job)]
            if live:
                await self._run(live)

    async def _next_batch(self) -> list[Job] | None:
        while not self._pending:
            if self._closing:
                return None
            self._arrived.clear()
            await self._arrived.wait()
        shape = self._pending[0].pixels.shape
        window_closes = self._pending[0].enqueued_at + self.max_wait_s
        while True:
            batch = [job for job in self._pending if job.pixels.shape == shape][: self.max_batch_size]
            remaining = window_closes - time.monotonic()
            if len(batch) == self.max_batch_size or remaining <= 0 or self._closing:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        for job in batch:
            self._pending.remove(job)
        self.metrics.queue_depth.set(len(self._pending))
        return batch

    def _still_wanted(self, job: Job) -> bool:
        if job.abandoned or job.future.done():
            self.metrics.dropped.labels(reason="client_gone").inc()
            log.info("dropped a queued image: its client went away")
            return False
        if time.monotonic() > job.deadline:
            self.metrics.dropped.labels(reason="deadline").inc()
            job.future.set_exception(DeadlinePassed())
            return False
        return True

    async def _run(self, jobs: list[Job]) -> None:
        started = time.monotonic()
        self.metrics.batch_size.observe(len(jobs))
        try:
            result = await self.run_in_worker(self.run_batch, np.stack([job.pixels for job in jobs]))
        except Exception as error:
            log.exception("a batch of %d failed", len(jobs))
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(InferenceFailed(f"{type(error).__name__}"))
            return
        for job, image in zip(jobs, result.images, strict=True):
            if not job.future.done():
                job.future.set_result(Outcome(image, started - job.enqueued_at, result.inference_s, len(jobs)))
