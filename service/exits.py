"""Ending the process at once, with the clean-up such an exit would otherwise skip.

relight-serve ends with os._exit where Python's own exit would wait for a thread inside a forward pass or a
compilation (SIGTERM during warm-up or a weights swap, a second signal while draining): `docker stop` would
SIGKILL it first. os._exit runs no `finally` and no atexit hook, so what must not outlive the process (the
RELIGHT_PID_FILE, service.pid_file) registers here instead.
"""

import contextlib
import logging
import os
from collections.abc import Callable
from typing import NoReturn

_cleanups: list[Callable[[], None]] = []


def on_exit_now(cleanup: Callable[[], None]) -> Callable[[], None]:
    """Run `cleanup` if exit_now ends the process; returns the function that takes it back."""
    _cleanups.append(cleanup)
    return lambda: _cleanups.remove(cleanup)


def exit_now(status: int) -> NoReturn:
    """Run the registered clean-ups (newest first; one that raises does not stop the others), flush the logs, and
    end the process with `status` without waiting for any thread."""
    for cleanup in reversed(_cleanups):
        with contextlib.suppress(Exception):
            cleanup()
    logging.shutdown()
    os._exit(status)
