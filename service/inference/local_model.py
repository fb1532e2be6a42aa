"""The model and its one queue in this process: the engine, the batcher, their metrics and the warm-up.

The app holds one of these with RELIGHT_WORKERS=1; with more, the model process holds it
(service.workers.model_process) and the HTTP workers reach it through service.workers.remote_model.
Both are a service.batching.handle.ModelHandle.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from model.tiling import Tiling
from service.batching.batcher import Batcher, Job, Reservation
from service.batching.handle import ModelDescription, NotAccepting, SwapBusy, SwapRefused
from service.exits import exit_now
from service.inference import weights_swap
from service.inference.engine import Engine, compiled_graphs
from service.inference.weights_swap import EngineFactory
from service.metrics import ModelMetrics
from service.settings import Settings

log = logging.getLogger("relight")


class LocalModel:
    """A ModelHandle (service.batching.handle) for the engine in this process: its queue calls go to its Batcher.

    engine_factory builds the engine of a weights swap (reload) with the live settings and the new file's path.
    on_status is called when readiness or the live weights change (the model process tells its workers then).
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        registry: CollectorRegistry,
        on_status: Callable[[], None] = lambda: None,
        engine_factory: EngineFactory = Engine,
    ):
        self.settings, self.engine, self.on_status, self.engine_factory = settings, engine, on_status, engine_factory
        self.metrics = ModelMetrics(registry, settings.max_batch_size)
        self.metrics.compiled_graphs.set_function(compiled_graphs)
        tiling = Tiling(settings.tile_size, settings.tile_overlap, settings.max_batch_size, settings.max_batch_pixels)
        self.batcher = Batcher(
            engine.run, engine.weights_tag, tiling, settings.max_wait_ms / 1000, settings.max_queue, self.metrics
        )
        self.ready = False  # every warm-up shape run
        self.warmup_error: str | None = None
        self._warmup: asyncio.Task | None = None
        self._swapping = asyncio.Lock()
        self._went_live(engine)

    def _went_live(self, engine: Engine) -> None:
        self.engine, self.weights_since = engine, time.time()
        metrics = self.metrics
        metrics.model_info.clear()  # one series, the live weights': a label set per swap would grow without bound
        metrics.model_info.labels(
            device=str(engine.device), dtype=engine.dtype_name, weights_sha256=engine.weights_sha256[:12]
        ).set(1)
        metrics.weights_info.clear()
        metrics.weights_info.labels(file=engine.weights_path.name, sha256=engine.weights_sha256[:12]).set(1)
        metrics.weights_since.set(self.weights_since)

    async def start(self) -> None:
        """On the event loop: start the queue's consumer, then warm up behind it (/healthz answers meanwhile)."""
        self.batcher.start()
        self._warmup = asyncio.create_task(self._warm_up())

    async def stop(self) -> None:
        """Finish every queued job, then stop; during warm-up, or once the queue is done during a weights swap, end
        the process at once (exit status 0).

        Nothing is accepted before warm-up ends, so there is nothing to drain, but the inference thread is
        inside a forward pass that cannot be interrupted (tens of seconds on a slow CPU, or a compilation),
        and Python's exit would wait for it: `docker stop` would SIGKILL the process first. A swap's new weights
        load and warm up on a thread of their own, as long as the warm-up at startup, and would hold the exit
        the same way; they never serve once the queue has stopped.
        """
        if self._warmup is not None and not self._warmup.done():
            log.warning("stopped during warm-up: nothing was accepted; exiting without finishing it")
            exit_now(0)
        await self.batcher.stop()
        if self._swapping.locked():
            log.warning("stopped during a weights swap: every accepted request was answered; exiting without "
                        "finishing the swap (its weights never served)")  # fmt: skip
            exit_now(0)

    async def _warm_up(self) -> None:
        try:
            self.batcher.seconds_per_pixel = await self.batcher.run_in_worker(
                self.engine.warm_up,
                self.settings.warmup_shapes(),
                self.batcher.tiling.batch_limit,
                self.settings.warmup_budget_s,
            )
        except Exception as error:
            self.warmup_error = f"warm-up failed: {type(error).__name__}: {error}"
            log.exception("warm-up failed; staying not ready")
        else:
            # "Live since" is when answers started, not when the file was read minutes of warm-up earlier.
            self.weights_since = time.time()
            self.metrics.weights_since.set(self.weights_since)
            self.ready = True
            log.info("ready")
        self.on_status()

    def description(self) -> ModelDescription:
        engine = self.engine
        return {
            "architecture": engine.metadata["architecture"],
            "weights": engine.weights_path.name,
            "weights_sha256": engine.weights_sha256,
            "weights_tag": engine.weights_tag,
            "weights_since": datetime.fromtimestamp(self.weights_since, UTC).isoformat(timespec="seconds"),
            "value_range": list(engine.value_range),
            "device": str(engine.device),
            "dtype": engine.dtype_name,
            "compiled_shapes": [list(shape) for shape in sorted(engine.compiled_shapes)],
        }

    async def reload(self, name: str | None = None, wait: bool = False) -> ModelDescription:
        """Swap to another weight file while serving (service.inference.weights_swap); the same bytes as the live file:
        nothing is reloaded. One swap at a time: one asked for meanwhile raises SwapBusy, or with `wait` (SIGHUP's,
        service.inference.hangup) runs after it. Logs and counts the outcome. Whatever goes wrong is a refusal and the
        live weights keep serving: an error no check foresaw (CUDA out of memory in the output check, a bug) is
        logged with its traceback and raised as SwapRefused naming it, never as itself (a 500 from the endpoint, an
        unanswered reload with RELIGHT_WORKERS > 1, nothing at all after a SIGHUP)."""
        if self._swapping.locked() and not wait:
            raise SwapBusy("another weights swap is in progress; ask again once it has ended")
        async with self._swapping:
            try:
                engine = await self._swap(weights_swap.weights_path(self.settings, name))
            except NotAccepting:
                raise
            except Exception as error:
                refusal = error if isinstance(error, SwapRefused) else SwapRefused(f"{type(error).__name__}: {error}")
                if refusal is not error:
                    log.error("weights swap failed unexpectedly", exc_info=error)
                self.metrics.swaps.labels(outcome="refused").inc()
                log.warning("weights swap refused: %s; still serving %s", refusal, self.engine.weights_tag)
                raise refusal from None
            if engine is None:
                log.info("weights unchanged: %s already holds the live bytes (%s)", name or "RELIGHT_WEIGHTS",
                         self.engine.weights_tag)  # fmt: skip
            else:
                old = self.engine.weights_tag
                self._went_live(engine)
                self.metrics.swaps.labels(outcome="done").inc()
                log.info("weights swapped: %s -> %s", old, engine.weights_tag)
                self.on_status()
        return self.description()

    async def _swap(self, path: Path) -> Engine | None:
        """The new engine once it serves; None when `path` holds the live bytes already."""
        settings, factory, live = self.settings, self.engine_factory, self.engine
        limit = self.batcher.tiling.batch_limit
        if await asyncio.to_thread(weights_swap.serving_already, path, live):
            return None
        if settings.swap_unload_first:
            new: list[Engine] = []

            def change():
                new.append(weights_swap.replace_in_place(settings, factory, path, live, limit))
                return new[0].run, new[0].weights_tag

            await self.batcher.switch(change)
            return new[0]
        engine = await weights_swap.load_beside(settings, factory, path, live, limit)
        await self.batcher.switch(lambda: (engine.run, engine.weights_tag))
        return engine

    async def exposition(self) -> bytes:
        """Metrics not in the app's registry: none, as this model's are registered there."""
        return b""

    async def admit(self, height: int, width: int, time_left_s: float) -> Reservation:
        return await self.batcher.admit(height, width, time_left_s)

    def release(self, reservation: Reservation | None) -> None:
        self.batcher.release(reservation)

    async def submit(self, pixels: np.ndarray, deadline: float, reservation: Reservation | None = None) -> Job:
        return await self.batcher.submit(pixels, deadline, reservation)

    def withdraw(self, job: Job, reason: str) -> None:
        self.batcher.withdraw(job, reason)

    def finished(self, job: Job) -> None:
        """A job whose request ended without its answer and without withdrawing it is not run for nobody."""
        if not job.future.done():
            self.batcher.withdraw(job, "client_gone")
