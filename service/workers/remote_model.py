"""An HTTP worker's view of the model process (RELIGHT_WORKERS > 1): the same queue calls, over a socket.

It is a service.batching.handle.ModelHandle, as the single process's LocalModel is, so the
routes do not know which side of a process boundary the model is on. Pixels go through shared memory
(service.workers.shared_images): the decoded upload is copied into a shared buffer, the model
process writes the answer into the same buffer, and the buffer is reused once the answer is
encoded, or, for a withdrawn upload, once the model process has confirmed the withdrawal
(so that no late answer can land in a buffer that holds the next upload).

If the model process goes, whatever waits on it fails (NotAccepting before queueing,
InferenceFailed after), the worker is no longer ready, and on_lost() is called: relight-serve
stops when its model process does.
"""

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi.concurrency import run_in_threadpool

from service.batching.handle import InferenceFailed, ModelDescription, NoSharedMemory, NotAccepting, Outcome
from service.workers import shared_images
from service.workers.messages import Answered, Status, frame, read_message

log = logging.getLogger("relight.remote_model")

KEEP_IDLE_BYTES = 64 * shared_images.MiB  # idle shared buffers a worker keeps for the next uploads
INLINE_COPY_BYTES = 16 * shared_images.MiB  # larger uploads are copied on a thread, off the event loop


@dataclass(eq=False)
class RemoteJob:
    key: int
    buffer: shared_images.SharedBuffer
    pixels: np.ndarray  # in the buffer: the upload, then the answer
    future: asyncio.Future
    withdrawn: bool = False


class RemoteModel:
    """A ModelHandle (service.batching.handle) whose queue calls go to the model process over its Unix socket."""

    def __init__(self, socket_path: Path, shared_dir: Path, on_lost: Callable[[], None]):
        self.socket_path, self.on_lost = socket_path, on_lost
        self.buffers = shared_images.BufferPool(shared_dir, KEEP_IDLE_BYTES, forget=self._forget)
        self.ready = False
        self.warmup_error: str | None = None
        self._description: ModelDescription = {}
        self._keys = itertools.count()
        self._replies: dict[int, asyncio.Future] = {}
        self._jobs: dict[int, RemoteJob] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task | None = None

    async def start(self) -> None:
        reader, self._writer = await asyncio.open_unix_connection(self.socket_path)
        self._reading = asyncio.create_task(self._read(reader))

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reading is not None:
            await self._reading
        self.buffers.close()

    def description(self) -> ModelDescription:
        return self._description

    async def reload(self, name: str | None = None, wait: bool = False) -> ModelDescription:
        """The model process swaps (every worker sees the new weights); the description after it."""
        return await self._ask("reload", next(self._keys), (name, wait))

    async def exposition(self) -> bytes:
        """The model process's metrics (queue, batches, model and its process)."""
        return await self._ask("metrics", next(self._keys), None)

    async def admit(self, height: int, width: int, time_left_s: float) -> int:
        key = next(self._keys)
        # Sent as a deadline: time.monotonic() is one clock for all processes on a machine.
        await self._ask("admit", key, (height, width, time.monotonic() + time_left_s))
        return key

    def release(self, reservation: int | None) -> None:
        if reservation is not None:
            self._send("release", reservation, None)

    async def submit(self, pixels: np.ndarray, deadline: float, reservation: int | None = None) -> RemoteJob:
        key = next(self._keys) if reservation is None else reservation
        try:
            buffer = self.buffers.take(pixels.nbytes)
        except OSError as error:
            self.release(reservation)
            log.warning("no shared memory for a %dx%d image (%s); raise the tmpfs size (docker: --shm-size)",
                        pixels.shape[1], pixels.shape[0], error)  # fmt: skip
            raise NoSharedMemory from None
        shared = shared_images.view(buffer.memory, pixels.shape)
        if pixels.nbytes > INLINE_COPY_BYTES:
            await run_in_threadpool(np.copyto, shared, pixels)
        else:
            np.copyto(shared, pixels)
        if self._reading is None or self._reading.done():
            self.buffers.give_back(buffer)
            raise NotAccepting
        job = RemoteJob(key, buffer, shared, asyncio.get_running_loop().create_future())
        self._jobs[key] = job
        # Not waited for: a refusal (QueueFull, NotAccepting) comes back as the job's answer, so that an
        # upload waits for the model process to be scheduled twice (admit, answer), not three times.
        self._send("submit", key, (str(buffer.path), buffer.capacity, pixels.shape, deadline))
        return job

    def withdraw(self, job: RemoteJob, reason: str) -> None:
        """Drop a job nobody waits for; its buffer is reused after the model process has confirmed."""
        if self._jobs.pop(job.key, None) is None:
            return
        job.withdrawn = True

        def reuse_buffer(confirmed: asyncio.Future) -> None:
            if not confirmed.cancelled():
                confirmed.exception()  # NotAccepting when the model process is gone: nothing will write then
            self.buffers.give_back(job.buffer)

        asyncio.ensure_future(self._ask("withdraw", job.key, reason)).add_done_callback(reuse_buffer)

    def finished(self, job: RemoteJob) -> None:
        """The request is done with the job (answered, or given up without a withdrawal): free its buffer."""
        if job.key in self._jobs:
            self.withdraw(job, "client_gone")
        elif not job.withdrawn:
            self.buffers.give_back(job.buffer)

    def _forget(self, path: Path) -> None:
        self._send("forget", 0, str(path))

    def _send(self, kind: str, key: int, value) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(frame((kind, key, value)))

    async def _ask(self, kind: str, key: int, value):
        if self._reading is None or self._reading.done():
            raise NotAccepting
        reply = asyncio.get_running_loop().create_future()
        self._replies[key] = reply
        self._send(kind, key, value)
        result = await reply
        if isinstance(result, Exception):
            raise result
        return result

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while (message := await read_message(reader)) is not None:
            kind, key, value = message
            if kind == "status":
                status: Status = value
                self.ready, self.warmup_error, self._description = status
            elif kind == "reply":
                if (reply := self._replies.pop(key, None)) is not None and not reply.done():
                    reply.set_result(value)
            elif kind == "answer" and (job := self._jobs.pop(key, None)) is not None and not job.future.done():
                if isinstance(value, Exception):
                    job.future.set_exception(value)
                else:
                    answered: Answered = value
                    job.future.set_result(Outcome(job.pixels, **answered._asdict()))
        self._lost()

    def _lost(self) -> None:
        """The connection ended: answer everything that waits on it."""
        stopping = self._writer is not None and self._writer.is_closing()
        self.ready = False
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(NotAccepting())
        for job in self._jobs.values():
            if not job.future.done():
                job.future.set_exception(InferenceFailed("the model process is gone"))
        self._replies.clear()
        self._jobs.clear()
        if not stopping:
            log.error("the model process is gone")
            self.on_lost()
