"""RELIGHT_PID_FILE: the file that names relight-serve's process, for the operator who signals it (SIGHUP: swap to
the weight file at RELIGHT_WEIGHTS; SIGTERM: drain and stop). gunicorn's --pid and nginx's pid file do the same.
"""

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from service.exits import on_exit_now


@contextlib.contextmanager
def pid_file(path: Path | None) -> Iterator[None]:
    """Hold this process's id (decimal, one line) at `path` while the block runs, then remove it, also when
    service.exits.exit_now ends the process, unless another process has written its own there since. Enter it once
    the signal handlers are in, so that a process the file names can take a SIGHUP. Written atomically (a reader
    never sees half an id). Exits with a message (SystemExit, before the weights load) when the file cannot be
    written, or names a process that is still running (another server given the same file; a stale file whose
    process is gone is replaced)."""
    if path is None:
        yield
        return
    pid = str(os.getpid())
    running = holder(path)
    if running is not None and running != os.getpid():  # our own id: a stale file from a container's last PID 1
        sys.exit(f"relight: cannot start: RELIGHT_PID_FILE {path} names process {running}, which is running")
    incoming = path.with_name(f".{path.name}.{pid}")
    try:
        incoming.write_text(pid + "\n")
        incoming.replace(path)
    except OSError as error:
        incoming.unlink(missing_ok=True)
        sys.exit(f"relight: cannot start: RELIGHT_PID_FILE: {error}")

    def remove() -> None:
        if holder(path) == int(pid):
            path.unlink()

    take_back = on_exit_now(remove)
    try:
        yield
    finally:
        take_back()
        with contextlib.suppress(OSError):
            remove()


def holder(path: Path) -> int | None:
    """The id in the pid file at `path` if that process is running, else None (no file, not an id, or gone)."""
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except PermissionError:
        return pid  # running, as another user
    except (OSError, ValueError):
        return None
    return pid
