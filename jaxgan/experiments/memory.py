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
again, and what is free goes back to the OS). And it holds only where the process could
grow to twice its peak (a held heap can take a second block; PGGAN 128 is not held).

While held, the compiler's freed memory is parked (:func:`park_fragments`): the compile
leaves the one arena cut into ~47,000 free chunks between allocations that stay (for the
DCGAN step; 36,800 of them 1 KiB to 1.4 MiB, 0.57 GB). Every allocation in glibc's large
bins then walks them best-fit, under the arena's lock, and the step's matmul workspaces
(Eigen's and oneDNN's, per call and per block) took 3.4% of the CPU samples in
``_int_malloc`` and waited on the lock besides. Allocated and kept while held, they are out
of the bins (their pages were resident already); released, they are freed before the trim.
dcgan64 0.857 -> 0.787 s per step on average over six alternating fresh-process pairs,
every pair faster (experiments/bench/RESULTS.md).

Process-wide and glibc-only (Linux); the entry points call :func:`keep_freed_memory` first
thing; ``JAXGAN_KEEP_FREED_MEMORY=0`` turns it all off.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys

# mallopt(3) parameters (glibc's malloc.h) and glibc's initial values (a trim threshold set
# explicitly no longer adapts to the block sizes freed, as glibc's own does).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD = 65536, 128 * 1024

# The free chunks parked while held: glibc's large bins (chunks of at least 1 KiB, which are
# searched best-fit) up to 4 MiB (a step's own temporary blocks are far larger, and few).
_PARK_MIN, _PARK_MAX = 1024, 4 << 20
_PARK_PASSES = 4  # a chunk larger than asked for is split, its remainder freed: parked again
_CHUNK_OVERHEAD = 16  # malloc(n) takes a chunk of (n + 8) rounded up to 16 bytes

_libc = None
_parked: list[int] = []


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


def hold_freed_memory(hold: bool) -> bool:
    """``True``: keep freed memory for reuse (no ``mmap`` for big blocks, no trimming) and
    park the heap's fragments (:func:`park_fragments`), for a program that has run once.
    ``False``: the fragments freed, glibc's initial values (``mmap`` for big blocks, a fixed
    128 KiB trim threshold), and free memory returned to the OS (``malloc_trim``), before
    compiling another program. No-op unless :func:`keep_freed_memory` enabled it.

    Holding is skipped unless the process could grow to twice its peak resident set since
    the last release (:func:`safe_to_hold`). Held, the heap can take a second temporary
    block beside the first: XLA frees a step's block on its own thread after the results
    are ready, so the next step may allocate before it. The DCGAN step's heap grew by one
    more 410 MB block at its sixth call; PGGAN 128's by its 11 GiB block, which killed it on
    the 24 GiB machine. Returns whether freed memory is now held.
    """
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
        return True
    unpark_fragments()
    _libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    _libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
    _libc.malloc_trim(0)
    try:  # restart the peak resident set ("5": reset VmHWM, proc(5)) for the next check
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return False


def free_chunks() -> list[tuple[int, int]]:
    """The main arena's free chunks, as ``(smallest chunk size in bytes, count)`` per glibc
    bin (``malloc_info(3)``; fast bins and tcache aside, and the unsorted bin: chunks freed
    since the last search, of any size, which that search sorts into their bins). Empty
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
    """Allocate and keep the main arena's free chunks of 1 KiB to 4 MiB (glibc's large bins),
    so that allocations no longer search them; returns how many are parked in all.
    :func:`hold_freed_memory` parks while held and frees them (:func:`unpark_fragments`) on
    release. Each chunk is asked for at its bin's smallest size; a larger one is split and
    its remainder parked in a later pass (as are chunks that were in the unsorted bin: the
    unsorted bin mixes sizes, and asking for its count at its smallest size could split a
    step's big block)."""
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
    """Whether the process (``peak`` resident bytes since the last release, ``resident``
    now) could grow to twice its peak within ``resident + available`` bytes. Unknown values
    (no /proc) count as safe. PGGAN 128 at batch 16 on 24 GiB: a 14.1 GB peak, not held;
    DCGAN's 1.4 GB and pix2pix's 2.3-3.5 GB are."""
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
