"""The messages between an HTTP worker and the model process: pickled (kind, key, value) tuples on a Unix socket,
each framed by its length (4 bytes, big-endian). The kinds and their values: service.workers.model_process."""

import asyncio
import pickle
import struct
from typing import NamedTuple

from service.batching.handle import ModelDescription

LENGTH = struct.Struct("!I")


class Answered(NamedTuple):
    """An `answer` message's value when the image was relit: how it was made (service.batching.handle.Outcome's
    fields but the image, which the model process has written into the worker's shared buffer)."""

    queue_s: float
    inference_s: float
    batch_size: int
    tiles: int
    weights: str


class Status(NamedTuple):
    """A `status` message's value, pushed by the model process: whether warm-up has run, why it failed, and what
    is served."""

    ready: bool
    warmup_error: str | None
    description: ModelDescription


def frame(message: tuple) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> tuple | None:
    """The next message, or None when the other side has closed the connection."""
    try:
        (length,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
        return pickle.loads(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
