"""The messages between an HTTP worker and the model process: pickled (kind, key, value) tuples on a Unix socket,
each framed by its length (4 bytes, big-endian). The kinds and their values: service.workers.model_process."""

import asyncio
import pickle
import struct

LENGTH = struct.Struct("!I")


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
