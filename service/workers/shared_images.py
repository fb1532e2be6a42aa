"""Pixels in shared memory between an HTTP worker and the model process (RELIGHT_WORKERS > 1).

Each buffer is a file in a private directory on a tmpfs, mapped by both sides: the worker
copies the decoded upload in, the model process writes the relit pixels into the same
pages, and the worker encodes them from there. Buffers are reused: making a fresh one costs
1.5 ms per 1024x1024 image (reserving, zeroing and faulting in new pages, then unmapping
them) where copying into a mapped one costs 0.2 ms. The space is reserved when a file is
made (posix_fallocate), so a full tmpfs is an OSError there, never a SIGBUS on a write.
"""

import itertools
import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHM = Path("/dev/shm")
MiB = 1 << 20
_names = itertools.count()


def make_directory() -> Path:
    """A private directory on the shared-memory tmpfs (or the temp directory where there is none)."""
    return Path(tempfile.mkdtemp(prefix="relight-", dir=SHM if SHM.is_dir() else None))


def remove_directory(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def attach(path: Path, capacity: int) -> np.ndarray:
    """Map a shared file as flat uint8; the mapping lives as long as the array (and its views)."""
    fd = os.open(path, os.O_RDWR)
    try:
        return np.frombuffer(mmap.mmap(fd, capacity), np.uint8)
    finally:
        os.close(fd)


def view(memory: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return memory[: int(np.prod(shape))].reshape(shape)


@dataclass(eq=False)
class SharedBuffer:
    """One file in the pool's directory and this process's mapping of it: `capacity` bytes, a whole number of
    MiB, all reserved when the file was made. An image of shape (H, W, 3) uses its first H * W * 3 bytes
    (view); the rest is left as it was. The mapping stays valid after the file is deleted, until the array
    and its views are gone."""

    path: Path
    memory: np.ndarray  # flat uint8, `capacity` bytes

    @property
    def capacity(self) -> int:
        return self.memory.size


class BufferPool:
    """A worker's shared buffers: taken per upload, given back once its answer is encoded.

    Buffers are whole MiB; up to keep_bytes of idle ones are kept, and one is reused for an image
    of at least half its size (any image, for a 1 MiB buffer). forget(path) is called for each
    buffer deleted, so that the other side can unmap it. Files are named after the worker's pid.
    """

    def __init__(self, directory: Path, keep_bytes: int, forget=lambda path: None):
        self.directory, self.keep_bytes, self.forget = directory, keep_bytes, forget
        self.idle: list[SharedBuffer] = []

    def take(self, nbytes: int) -> SharedBuffer:
        """A buffer of at least `nbytes` bytes (nbytes >= 1): the smallest idle one that holds nbytes and is no
        larger than max(2 * nbytes, 1 MiB), else a new file of nbytes rounded up to whole MiB. Its bytes are
        whatever was there (zeros when new).

        Raises OSError when a new file cannot be made or its space reserved: ENOSPC where /dev/shm (Docker's
        default: 64 MB) or the fallback temp directory is full; a file made is removed before. The pool stays
        usable. RemoteModel.submit (service.workers.remote_model) logs it and raises NoSharedMemory, which the
        /relight route answers with 503 (service.http.routes.not_queued).
        """
        fitting = [buffer for buffer in self.idle if nbytes <= buffer.capacity <= max(2 * nbytes, MiB)]
        if fitting:
            buffer = min(fitting, key=lambda buffer: buffer.capacity)
            self.idle.remove(buffer)
            return buffer
        return self._make(-(-nbytes // MiB) * MiB)

    def give_back(self, buffer: SharedBuffer) -> None:
        """Keep `buffer` idle for a later take(); then, while the idle buffers come to more than keep_bytes bytes,
        delete the longest idle (the one just given back too, when it alone is larger), calling forget(path)."""
        self.idle.append(buffer)
        while sum(idle.capacity for idle in self.idle) > self.keep_bytes:
            self._delete(self.idle.pop(0))

    def close(self) -> None:
        while self.idle:
            self._delete(self.idle.pop())

    def _make(self, capacity: int) -> SharedBuffer:
        path = self.directory / f"{os.getpid()}-{next(_names)}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, capacity)
        except BaseException:
            path.unlink()
            raise
        finally:
            os.close(fd)
        return SharedBuffer(path, attach(path, capacity))

    def _delete(self, buffer: SharedBuffer) -> None:
        buffer.path.unlink(missing_ok=True)
        self.forget(buffer.path)
