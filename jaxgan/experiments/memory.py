"""Opt-in glibc malloc tuning for CPU-only training: the train step's freed memory kept for
reuse, in steady state only.

``JAXGAN_CPU_MALLOC=1`` (Linux, glibc; off by default) turns it on; set it before the entry
point starts, as it takes effect before jax starts its threads. Why: XLA:CPU allocates a
step's temporaries as one big block, which glibc ``mmap``s and unmaps, so every step
page-faults it afresh; held freed memory lets the next step reuse it. :class:`StepMemory`
holds only between runs of one compiled step (not across a compile, sample grid or
evaluation) and only where the process could grow to twice its peak. On a TPU or GPU it
holds nothing (the step's memory is the device's; one arena serialises the host threads).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

ENV = "JAXGAN_CPU_MALLOC"
HELP = (f"Environment: {ENV}=1 tunes glibc's malloc for CPU-only training (one arena, the "
        "step's freed memory kept for reuse; jaxgan.experiments.memory); off by default, and "
        "nothing is held on a TPU or GPU backend.")

# mallopt(3) parameters and glibc's initial values (once set, the trim threshold stops adapting).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD = 65536, 128 * 1024

# Parked while held: glibc's large bins (>= 1 KiB, searched best-fit) below a step's big blocks.
_PARK_MIN, _PARK_MAX = 1024, 4 << 20
_PARK_PASSES = 4  # a chunk larger than asked for is split, its remainder freed: parked again
_CHUNK_OVERHEAD = 16  # malloc(n) takes a chunk of (n + 8) rounded up to 16 bytes

_libc = None
_held = False
_parked: list[int] = []


def requested() -> bool:
    """Whether this process opted in: ``JAXGAN_CPU_MALLOC=1``."""
    return os.environ.get(ENV, "") == "1"


def enable_if_requested() -> bool:
    """The entry points' call, before jax starts its threads: :func:`keep_freed_memory` if
    :func:`requested`, else nothing (glibc's defaults). Returns whether it is enabled."""
    return requested() and keep_freed_memory()


def keep_freed_memory() -> bool:
    """Enable :func:`hold_freed_memory` for this process: one malloc arena for all threads.

    Unconditional (entry points go through :func:`enable_if_requested`). Call it before jax
    starts its threads, whose own arenas would ``mmap`` big blocks whatever the settings.
    Returns whether it is enabled (False off glibc).
    """
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
        libc.malloc.argtypes, libc.malloc.restype = (ctypes.c_size_t,), ctypes.c_void_p
        libc.free.argtypes, libc.free.restype = (ctypes.c_void_p,), None
        libc.open_memstream.restype = ctypes.c_void_p
        libc.open_memstream.argtypes = (ctypes.POINTER(ctypes.c_void_p),
                                        ctypes.POINTER(ctypes.c_size_t))
        libc.malloc_info.argtypes, libc.malloc_info.restype = (ctypes.c_int, ctypes.c_void_p), \
            ctypes.c_int
        libc.fclose.argtypes, libc.fclose.restype = (ctypes.c_void_p,), ctypes.c_int
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    if libc.mallopt(_M_ARENA_MAX, 1) != 1:
        return False
    _libc = libc
    return True


def enabled() -> bool:
    """Whether :func:`keep_freed_memory` enabled :func:`hold_freed_memory` here."""
    return _libc is not None


def disable() -> None:
    """Holding off for the rest of the process (released first if held); the one arena
    stays, as glibc cannot take it back."""
    global _libc
    if _held:
        hold_freed_memory(False)
    _libc = None


class StepMemory:
    """The training loop's one hook into this module, made once jax is up.

    ``run_step(step_fn, *args)``: on a step function's first call (a compile) and the first
    after :meth:`other_program`, freed memory is released before it and held once its results
    are ready. ``with other_program():`` wraps anything else (sample grids, evaluations). Not
    enabled, both are plain calls; on a non-CPU backend it calls :func:`disable`. ``say``
    reports (once) where holding was refused.
    """

    def __init__(self, say: Callable[[str], Any] | None = None, backend: str | None = None):
        self._say = say or (lambda line: None)
        self._last: Any = None  # the step function that ran last, while held or refused
        self._told = False
        if enabled():
            import jax

            backend = backend or jax.default_backend()
            if backend != "cpu":
                disable()
                self._say(f"memory: {ENV}=1 is for CPU-only training; on the {backend} backend "
                          "freed memory is not held (the one malloc arena stays)")
        self._on = enabled()

    def run_step(self, step_fn: Callable[..., Any], *args: Any) -> Any:
        if not self._on or step_fn is self._last:
            return step_fn(*args)
        hold_freed_memory(False)  # it compiles, or follows another program: nothing held
        out = step_fn(*args)
        import jax

        jax.block_until_ready(out)
        self._last = step_fn
        if not hold_freed_memory(True) and not self._told:  # reuse its block from now on
            self._say("memory: the step's freed memory is not held (twice the process's "
                      "peak would not fit in memory): steps page-fault their temporaries "
                      "afresh")
            self._told = True
        return out

    @contextlib.contextmanager
    def other_program(self) -> Iterator[None]:
        if self._on:
            hold_freed_memory(False)
            self._last = None  # the next step holds again once it ran
        yield


def hold_freed_memory(hold: bool) -> bool:
    """``True``: keep freed memory for reuse (no ``mmap`` for big blocks, no trimming) and
    :func:`park_fragments`, for a program that has run once. ``False``: undo both and return
    free memory to the OS, before another program runs. Returns whether memory is now held.

    No-op unless :func:`keep_freed_memory` enabled it. Holding is skipped unless the process
    could grow to twice its peak so far (:func:`safe_to_hold`): XLA frees a step's block after
    the results are ready, so a held heap can take the next step's block beside the last.
    """
    global _held
    if _libc is None:
        return False
    if hold:
        status = "/proc/self/status"
        if not safe_to_hold(_proc_bytes(status, "VmHWM"), _proc_bytes(status, "VmRSS"),
                            _proc_bytes("/proc/meminfo", "MemAvailable")):
            return False
        _libc.mallopt(_M_MMAP_MAX, 0)
        _libc.mallopt(_M_TRIM_THRESHOLD, -1)  # -1: never trim (mallopt(3))
        if not _parked:
            park_fragments()
        _held = True
        return True
    _held = False
    unpark_fragments()
    _libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    _libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
    _libc.malloc_trim(0)
    return False


def free_chunks() -> list[tuple[int, int]]:
    """The main arena's free chunks, ``(smallest chunk size in bytes, count)`` per glibc bin
    (``malloc_info(3)``, fast bins and tcache aside; the unsorted bin mixes sizes). Empty
    unless :func:`keep_freed_memory` enabled holding, or where ``malloc_info`` fails."""
    if _libc is None:
        return []
    buf, size = ctypes.c_void_p(), ctypes.c_size_t()
    stream = _libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    if not stream:
        return []
    try:
        ok = _libc.malloc_info(0, stream) == 0
    finally:
        _libc.fclose(stream)  # sets buf, size
    text = ctypes.string_at(buf.value, size.value).decode("ascii", "replace") if buf.value else ""
    _libc.free(buf.value)
    if not ok:
        return []
    heap = text.split("</heap>")[0]  # the main arena (the only one: keep_freed_memory)
    # ``from`` is the smallest chunk's size field, whose low bit (previous chunk in use) is set
    return [(int(low) & ~1, int(count)) for low, count in
            re.findall(r'<size from="(\d+)" to="\d+" total="\d+" count="(\d+)"/>', heap)]


def parkable_chunks() -> list[tuple[int, int]]:
    """The bins of :func:`free_chunks` that :func:`park_fragments` parks: glibc's large bins
    (searched best-fit) up to 4 MiB."""
    return [(size, count) for size, count in free_chunks() if _PARK_MIN <= size < _PARK_MAX]


def park_fragments() -> int:
    """Allocate and keep the main arena's free chunks of 1 KiB to 4 MiB (a compile leaves
    many), so allocations no longer search them under the arena's lock; returns how many are
    parked in all. Each is asked for at its bin's smallest size; a larger one is split and its
    remainder parked in a later pass (unsorted-bin chunks too: asking for those at once could
    split a step's big block). :func:`unpark_fragments` frees them."""
    if _libc is None:
        return 0
    for _ in range(_PARK_PASSES):
        wanted = parkable_chunks()
        if not wanted:
            break
        for size, count in wanted:
            for _ in range(count):
                pointer = _libc.malloc(size - _CHUNK_OVERHEAD)
                if pointer:
                    _parked.append(pointer)
    return len(_parked)


def unpark_fragments() -> None:
    """Free what :func:`park_fragments` parked."""
    if _libc is None:
        return
    while _parked:
        _libc.free(_parked.pop())


def safe_to_hold(peak: int | None, resident: int | None, available: int | None) -> bool:
    """Whether the process (``peak`` resident bytes, ``resident`` now) could grow to twice its
    peak within ``resident + available`` bytes. Unknown values (no /proc) count as safe."""
    if peak is None or resident is None or available is None:
        return True
    return 2 * peak <= resident + available


def _proc_bytes(path: str, field: str) -> int | None:
    """A ``field: N kB`` line of a /proc file, in bytes (None where there is none)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
