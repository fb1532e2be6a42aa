"""Keep the C heap's freed memory for the next forward pass (glibc only; a no-op elsewhere).

A 1024x1024 forward pass on the CPU allocates about 1.3 GB of activations, most of it in blocks
far above glibc's mmap threshold (32 MB at most). glibc maps each such block fresh and unmaps it
when freed, so every pass faults its whole working set back in, zeroed by the kernel, page by
page: 320,000 minor faults a pass on the main thread, 600,000 on the service's worker thread,
whose own arena maps large blocks whatever mmap_max says. Served from the one main heap, never
trimmed, the next pass reuses the previous pass's pages: 1.7x faster at 1024x1024 on the worker
thread, eager and compiled alike (`python bench/allocator.py`, table in bench/RESULTS.md). The
price: the heap stays at its peak (the largest batch's working set) instead of shrinking
between passes.
"""

import ctypes
import ctypes.util
import logging

log = logging.getLogger("relight.allocator")

# mallopt() parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8


def reuse_freed_memory() -> bool:
    """Make every thread allocate from glibc's main heap, with no mmap'd blocks and no trimming.

    Call it before the threads that run the model first allocate: a thread keeps the arena it got
    first. Returns False where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    done = all(
        mallopt(parameter, value)
        for parameter, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))
    )
    if not done:
        log.warning("mallopt refused; forward passes fault their working set in afresh")
    return done
