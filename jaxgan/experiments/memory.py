"""glibc's malloc told to keep the train step's freed memory for reuse, in steady state only.

XLA:CPU allocates each step's temporaries as one block (384 MB for the DCGAN 64 step at
batch 64), which glibc serves by ``mmap`` and unmaps when it is freed: every step
page-faults and zeroes it afresh (~98,000 minor faults and 0.2 s of system time per DCGAN
step on the 2-core CPU; the Winograd layers' memory passes ran at 2-3 GB/s). Holding freed
memory (no ``mmap`` for big blocks, no trimming) makes the next step reuse the block: no
faults; dcgan64 1.10 -> 0.99 s, pix2pix at batch 1 0.98 -> 0.86 s (experiments/bench/
RESULTS.md).

Held across a compile, though, the compiler's freed memory stays in the heap beside the new
program's block: PGGAN 128x128 at batch 16 (an 11 GiB block) was killed at 24 GB. So the
runner holds only once a program has run (``hold_freed_memory(True)`` after its first
step) and releases before the next compile (``hold_freed_memory(False)``: glibc's defaults
again, and what is free goes back to the OS).

Process-wide and glibc-only (Linux); the entry points call :func:`keep_freed_memory` first
thing; ``JAXGAN_KEEP_FREED_MEMORY=0`` turns it all off.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt(3) parameters (glibc's malloc.h) and glibc's initial values (a trim threshold set
# explicitly no longer adapts to the block sizes freed, as glibc's own does).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD = 65536, 128 * 1024

_libc = None


def keep_freed_memory() -> bool:
    """Enable :func:`hold_freed_memory` for this process: one malloc arena for all threads.

    Call it before jax starts its threads (they would take arenas of their own, which
    ``mmap`` big blocks whatever the settings). Returns whether it is enabled (False off
    glibc, e.g. macOS, or with ``JAXGAN_KEEP_FREED_MEMORY=0``).
    """
    global _libc
    if os.environ.get("JAXGAN_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    if libc.mallopt(_M_ARENA_MAX, 1) != 1:
        return False
    _libc = libc
    return True


def hold_freed_memory(hold: bool) -> None:
    """``True``: keep freed memory for reuse (no ``mmap`` for big blocks, no trimming), for a
    program that has run once. ``False``: glibc's initial values (``mmap`` for big blocks,
    a fixed 128 KiB trim threshold), and free memory returned to the OS (``malloc_trim``),
    before compiling another program. No-op unless
    :func:`keep_freed_memory` enabled it."""
    if _libc is None:
        return
    if hold:
        _libc.mallopt(_M_MMAP_MAX, 0)
        _libc.mallopt(_M_TRIM_THRESHOLD, -1)  # -1: never trim (mallopt(3))
    else:
        _libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        _libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        _libc.malloc_trim(0)
