"""What the HTTP routes need of the model, written down: `ModelHandle`, its one answer (`Outcome`) and its refusals.

Two classes implement it: `service.inference.local_model.LocalModel` (the model and its queue in this process,
RELIGHT_WORKERS=1) and `service.workers.remote_model.RemoteModel` (an HTTP worker's connection to the model
process, RELIGHT_WORKERS > 1). An upload's life through it, as `service.http.routes` drives it:

    reservation = await admit(height, width, time_left_s)   # before decoding: TooBig, Backlogged
    release(reservation)                                     # only if decoding fails
    job = await submit(rgb, deadline, reservation)           # QueueFull, NotAccepting
    outcome = await job.future                               # Outcome; or QueueFull, NotAccepting, DeadlinePassed,
                                                             # InferenceFailed
    withdraw(job, reason)                                    # the client left or the deadline passed first
    finished(job)                                            # always, once the answer is encoded or given up

and, for the operator, `await reload(name, wait)` swaps the weights while serving (service.inference.weights_swap).

Deadlines are `time.monotonic()` values (one clock for every process on a machine).
"""

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol, TypedDict
from urllib.parse import quote

import numpy as np

SHA256_PREFIX = 12  # hex digits of a weights tag: 48 bits, no collision among any operator's files
# What a file name keeps as it is in a tag: printable ASCII but "%". The tag is an HTTP header's value, which holds
# latin-1 at most and no control characters (RFC 9110 section 5.5): any other character would fail every answer.
TAG_SAFE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")


def weights_tag(file_name: str, sha256: str) -> str:
    """How answers, /info and logs name weights: "stacked_dmshn.safetensors sha256:0123456789ab" (file name and the
    first SHA256_PREFIX hex digits of the SHA-256 of its bytes). The name's characters outside printable ASCII, and
    "%", are percent-encoded as UTF-8 (RFC 3986; urllib.parse.unquote reverses it): "模型.safetensors" is
    "%E6%A8%A1%E5%9E%8B.safetensors"."""
    return f"{quote(file_name, safe=TAG_SAFE)} sha256:{sha256[:SHA256_PREFIX]}"


class QueueFull(Exception):
    """RELIGHT_MAX_QUEUE images are waiting: 503."""


class NoSharedMemory(QueueFull):
    """With workers, the shared-memory tmpfs (/dev/shm) has no room left for this image: 503, like a full queue
    (it frees as answers go out), but the answer and the refusal metric name the cause: the tmpfs is too small."""


class NotAccepting(Exception):
    """The queue is stopping (the service is draining) or the model process is gone: 503."""


class InferenceFailed(Exception):
    """The batch this image was in failed on the model (the message names the error's type): 500."""


class DeadlinePassed(Exception):
    """The request's deadline passed before its windows ran: 504."""


class SwapRefused(Exception):
    """A weights swap did not happen (the file is missing, unreadable, another architecture, gives non-finite
    outputs, or cannot be loaded beside the live one); the live weights keep serving. The message says why."""


class SwapBusy(SwapRefused):
    """Another weights swap was in progress: this one was not tried (409). Nothing is wrong with its file."""


class TooBig(Exception):
    """The image alone would take `seconds` of compute, more than the request may take: 413."""

    def __init__(self, seconds: float):
        self.seconds = seconds


class Backlogged(Exception):
    """The work ahead (`ahead_s` seconds) leaves too little time for this image; retry after `retry_after_s`: 503."""

    def __init__(self, retry_after_s: int, ahead_s: float):
        self.retry_after_s, self.ahead_s = retry_after_s, ahead_s


class ModelDescription(TypedDict, total=False):
    """What is served, as description() returns it (GET /info's model, /readyz, the reload answer, trace
    attributes). Empty until a worker's first status from the model process arrives (RemoteModel)."""

    architecture: str  # a key of model.dmshn.ARCHITECTURES
    weights: str  # the file's name in RELIGHT_WEIGHTS's folder
    weights_sha256: str  # the whole file's, hex
    weights_tag: str  # "FILE sha256:PREFIX" (weights_tag), as the Relight-Weights header
    weights_since: str  # when these weights began answering, ISO 8601 UTC, seconds
    value_range: list[float]  # [low, high], the network's pixel range
    device: str  # torch's name: "cpu", "cuda:0"
    dtype: str  # "float32", "bfloat16", "float16"
    compiled_shapes: list[list[int]]  # [batch, height, width] shapes torch.compile has built


@dataclass
class Outcome:
    """A relit image and how it was made: the one result type, whichever side of a process boundary ran it."""

    image: np.ndarray  # uint8 (H, W, 3), the upload's height and width
    queue_s: float  # from submission to its first window's batch starting
    inference_s: float  # summed over the batches its windows ran in
    batch_size: int  # the largest batch its windows ran in
    tiles: int  # windows it was cut into (1: not tiled)
    weights: str  # the weights that made it: "FILE sha256:PREFIX" (weights_tag)


class SubmittedJob(Protocol):
    """An accepted image, as its request holds it: `future` resolves to its Outcome or raises a refusal."""

    @property
    def future(self) -> asyncio.Future: ...


class ModelHandle(Protocol):
    """The model and its one queue as the app sees it. `ready`: every warm-up shape run; `warmup_error`: why
    warm-up failed (None while it has not). A reservation is an opaque token from admit()."""

    ready: bool
    warmup_error: str | None

    async def start(self) -> None:
        """In the app's lifespan, on the event loop: start the queue (and warm up, or connect to what does)."""

    async def stop(self) -> None:
        """In the app's lifespan: answer every accepted image, then stop."""

    def description(self) -> ModelDescription:
        """What is served (ModelDescription)."""

    async def reload(self, name: str | None = None, wait: bool = False) -> ModelDescription:
        """Swap to the weight file `name` in RELIGHT_WEIGHTS's folder (None: RELIGHT_WEIGHTS itself) while serving;
        returns the description() after it. One swap at a time: with `wait`, after the one in progress; without,
        SwapBusy. Raises SwapRefused (the live weights unchanged) or NotAccepting."""

    async def exposition(self) -> bytes:
        """Prometheus text of the model's metrics where they are not in the app's registry (else empty)."""

    async def admit(self, height: int, width: int, time_left_s: float) -> Hashable:
        """Reserve room for an upload of height x width pixels before decoding it; raises TooBig or Backlogged."""

    def release(self, reservation: Hashable | None) -> None:
        """Give back a reservation that will not be submitted (its upload failed to decode)."""

    async def submit(self, pixels: np.ndarray, deadline: float, reservation: Hashable | None = None) -> SubmittedJob:
        """Queue uint8 (H, W, 3) pixels, taking the reservation's place; raises QueueFull or NotAccepting."""

    def withdraw(self, job: SubmittedJob, reason: str) -> None:
        """The request gave up ("client_gone" or "deadline"): the job's windows that have not run are dropped."""

    def finished(self, job: SubmittedJob) -> None:
        """The request is done with the job (answer encoded, or given up): what it holds is freed, and a job
        still queued is withdrawn as "client_gone"."""
