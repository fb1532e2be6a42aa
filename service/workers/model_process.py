"""The model's own process (RELIGHT_WORKERS > 1): one engine and its one queue, serving the HTTP workers.

The HTTP workers parse, decode and encode in processes of their own, so no single GIL binds
them; this process only queues, batches and runs the model. Each worker holds one
connection on a Unix socket in a private directory and sends pickled (kind, key, value)
messages (service.workers.messages):

    admit    (height, width, deadline)  -> reply None, or TooBig / Backlogged
    release  None
    submit   (path, capacity, shape, deadline)
                                        -> later an answer: Answered (timings and the weights),
                                           the relit pixels written into the same shared buffer;
                                           or QueueFull / NotAccepting / DeadlinePassed /
                                           InferenceFailed
    withdraw reason                     -> reply None: no answer will be written after it
    forget   path                          the worker deleted that buffer: unmap it
    metrics  None                       -> reply: this process's /metrics text
    reload   (file name or None, wait)  -> reply, after the swap: the model description, or SwapRefused /
                                           NotAccepting (service.inference.weights_swap)

and this process pushes `status` (Status: ready, warm-up error, model description) when a worker
connects, when warm-up ends and when the weights change. Keys are the worker's: an admitted upload keeps its key
through submit. A worker that disconnects has its queued work dropped. Signals go to the
parent (relight-serve), which tells this process to stop once every worker has drained ("stop"),
or to swap to the weight file at RELIGHT_WEIGHTS on SIGHUP ("reload").
"""

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import uvloop
from prometheus_client import CollectorRegistry, generate_latest

from model.weights import WeightsError
from service.batching.batcher import Job, Reservation
from service.batching.handle import NotAccepting, SwapRefused
from service.inference.engine import Engine
from service.inference.hangup import HangupSwaps
from service.inference.local_model import LocalModel
from service.metrics import process_registry
from service.settings import Settings
from service.workers import shared_images
from service.workers.messages import Answered, Status, frame, read_message

log = logging.getLogger("relight.model_process")


def deaf_to_hangups() -> None:
    """A child of relight-serve ignores SIGHUP (relight-serve passes swaps on itself): it starts with SIGHUP blocked
    (supervisor.start_deaf_to_signals); ignoring it drops one that came meanwhile, then unblocking lets none wait."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def main(settings: Settings, engine_factory: Callable[[Settings], Engine], socket_path: Path, parent: Connection):
    """Load the model, listen, say so to the parent (or why not), and serve until the parent says stop."""
    deaf_to_hangups()
    os.setpgrp()  # Ctrl-C reaches the parent only; it stops this process after the workers have drained.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        engine = engine_factory(settings)
        engine.check_outputs()  # as a swap does (service.inference.weights_swap)
    except (WeightsError, RuntimeError) as error:
        parent.send(("failed", str(error)))
        return
    uvloop.run(serve(settings, engine, socket_path, parent, engine_factory))


async def serve(
    settings: Settings,
    engine: Engine,
    socket_path: Path,
    parent: Connection,
    engine_factory: Callable[[Settings], Engine] = Engine,
) -> None:
    loop = asyncio.get_running_loop()
    registry = process_registry()
    workers: set[asyncio.StreamWriter] = set()

    def status() -> Status:
        return Status(model.ready, model.warmup_error, model.description())

    def broadcast_status() -> None:
        for writer in workers:
            send(writer, ("status", None, status()))

    model = LocalModel(settings, engine, registry, on_status=broadcast_status, engine_factory=engine_factory)
    await model.start()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        workers.add(writer)
        send(writer, ("status", None, status()))
        try:
            await serve_worker(model, registry, reader, writer)
        finally:
            workers.discard(writer)
            writer.close()

    server = await asyncio.start_unix_server(connection, path=socket_path)
    stop = asyncio.Event()
    swaps = HangupSwaps()
    swaps.serve(model)
    threading.Thread(target=listen_to_parent, args=(parent, loop, stop, swaps.ask), daemon=True).start()
    parent.send(("listening", None))
    await stop.wait()
    server.close()
    await model.stop()
    log.info("model process stopped")


def listen_to_parent(
    parent: Connection, loop: asyncio.AbstractEventLoop, stop: asyncio.Event, reload: Callable[[], None]
) -> None:
    """On a thread: "reload" calls reload() on the loop; "stop", or the pipe's end (the parent is gone), sets stop."""
    while True:
        try:
            message = parent.recv()
        except EOFError:
            log.warning("relight-serve is gone; stopping")
            break
        if message != "reload":
            break
        loop.call_soon_threadsafe(reload)
    loop.call_soon_threadsafe(stop.set)


async def reply_after_swap(
    model: LocalModel, writer: asyncio.StreamWriter, key: int, name: str | None, wait: bool
) -> None:
    try:
        send(writer, ("reply", key, await model.reload(name, wait)))
    except (SwapRefused, NotAccepting) as refusal:
        send(writer, ("reply", key, refusal))


def send(writer: asyncio.StreamWriter, message: tuple) -> None:
    if not writer.is_closing():
        writer.write(frame(message))


async def serve_worker(
    model: LocalModel, registry: CollectorRegistry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One HTTP worker's messages, in order; on its end, its reservations and queued work are dropped."""
    reservations: dict[int, Reservation] = {}
    jobs: dict[int, Job] = {}
    mapped: dict[str, np.ndarray] = {}  # the worker's shared buffers, mapped once
    swaps: set[asyncio.Task] = set()  # held: the event loop keeps only weak references to tasks

    def answer(key: int, pixels: np.ndarray, future: asyncio.Future) -> None:
        if jobs.pop(key, None) is None or future.cancelled():
            return  # withdrawn: the worker may already have reused the buffer
        if (error := future.exception()) is not None:
            send(writer, ("answer", key, error))
            return
        outcome = future.result()
        np.copyto(pixels, outcome.image)
        answered = Answered(outcome.queue_s, outcome.inference_s, outcome.batch_size, outcome.tiles, outcome.weights)
        send(writer, ("answer", key, answered))

    try:
        while (message := await read_message(reader)) is not None:
            kind, key, value = message
            if kind == "admit":
                height, width, deadline = value
                # Deadlines are time.monotonic() values: CLOCK_MONOTONIC is one clock for all processes here.
                try:
                    reservations[key] = await model.admit(height, width, deadline - time.monotonic())
                    send(writer, ("reply", key, None))
                except Exception as refusal:
                    send(writer, ("reply", key, refusal))
            elif kind == "release":
                model.release(reservations.pop(key, None))
            elif kind == "submit":
                path, capacity, shape, deadline = value
                reservation = reservations.pop(key, None)
                try:
                    if path not in mapped:
                        mapped[path] = shared_images.attach(Path(path), capacity)
                    pixels = shared_images.view(mapped[path], shape)
                    job = await model.submit(pixels, deadline, reservation)
                except Exception as refusal:
                    model.release(reservation)
                    send(writer, ("answer", key, refusal))
                    continue
                jobs[key] = job
                job.future.add_done_callback(lambda future, key=key, pixels=pixels: answer(key, pixels, future))
            elif kind == "withdraw":
                if (job := jobs.pop(key, None)) is not None:
                    model.withdraw(job, value)
                send(writer, ("reply", key, None))
            elif kind == "forget":
                mapped.pop(value, None)
            elif kind == "metrics":
                send(writer, ("reply", key, generate_latest(registry)))
            elif kind == "reload":
                # Not awaited here: the swap takes seconds to minutes, and this worker's uploads go on meanwhile.
                swaps.add(task := asyncio.create_task(reply_after_swap(model, writer, key, *value)))
                task.add_done_callback(swaps.discard)
    finally:
        for job in jobs.values():
            model.withdraw(job, "client_gone")
        for reservation in reservations.values():
            model.release(reservation)
