"""The opt-in allocator tuning of CPU-only training (jaxgan.experiments.memory): off unless
JAXGAN_CPU_MALLOC=1, off on a non-CPU backend, the runner's hook in the order it releases
and holds, and (in fresh processes) what holding does to page faults and heap fragments."""

import os
import subprocess
import sys

import jax
import pytest

from jaxgan.experiments import cli, memory

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")


def test_entry_points_leave_malloc_alone_unless_asked(monkeypatch):
    # The entry point's first call; without the opt-in it never reaches mallopt.
    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append("mallopt") or True)
    monkeypatch.setattr(sys, "argv", ["dcgan", "--config.num_step=3"])  # exits before work
    for value in (None, "0", ""):
        if value is None:
            monkeypatch.delenv(memory.ENV, raising=False)
        else:
            monkeypatch.setenv(memory.ENV, value)
        with pytest.raises(SystemExit):
            cli.run_main("dcgan", lambda config, workdir: None)
        assert calls == [] and not memory.enable_if_requested()
    assert not memory.enabled()  # in this process, no entry point enabled it
    monkeypatch.setenv(memory.ENV, "1")
    with pytest.raises(SystemExit):
        cli.run_main("dcgan", lambda config, workdir: None)
    assert calls == ["mallopt"]


class _FakeLibc:
    """Records mallopt / malloc_trim calls; no free chunks (open_memstream fails)."""

    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1

    def open_memstream(self, *args):
        return 0


def test_nothing_is_held_on_a_non_cpu_backend(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(memory, "_libc", libc)  # as if JAXGAN_CPU_MALLOC=1 enabled it
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    said = []
    steps = memory.StepMemory(said.append)
    assert not memory.enabled() and said and "gpu" in said[0]
    step = lambda x: x + 1
    assert steps.run_step(step, 1) == 2 and steps.run_step(step, 2) == 3
    with steps.other_program():
        pass
    assert steps.run_step(step, 3) == 4
    assert libc.calls == [] and not memory.hold_freed_memory(True)


def test_the_runners_hook_releases_before_and_holds_after_a_steps_first_call(monkeypatch):
    # As the runner before the hook: released before a step's first call (it compiles) and
    # before any other program, held once that first call's results are ready.
    events = []
    monkeypatch.setattr(memory, "_libc", _FakeLibc())
    monkeypatch.setattr(memory, "hold_freed_memory",
                        lambda hold: events.append(f"hold={hold}") or hold)
    steps = memory.StepMemory(events.append, backend="cpu")

    def step(x):
        events.append("step")
        return x

    grown = lambda x: step(x)  # another compiled step (PGGAN's next stage)
    steps.run_step(step, 0)
    steps.run_step(step, 0)
    assert events == ["hold=False", "step", "hold=True", "step"]
    events.clear()
    with steps.other_program():
        events.append("samples")
    steps.run_step(step, 0)
    steps.run_step(grown, 0)
    steps.run_step(grown, 0)
    assert events == ["hold=False", "samples", "hold=False", "step", "hold=True",
                      "hold=False", "step", "hold=True", "step"]
    # refused (twice the peak does not fit): said once, and not retried until released
    events.clear()
    monkeypatch.setattr(memory, "hold_freed_memory",
                        lambda hold: events.append(f"hold={hold}") and False)
    steps = memory.StepMemory(events.append, backend="cpu")
    steps.run_step(step, 0)
    steps.run_step(step, 0)
    with steps.other_program():
        pass
    steps.run_step(step, 0)
    said = [e for e in events if e.startswith("memory:")]
    assert len(said) == 1 and "not held" in said[0]
    assert [e for e in events if not e.startswith("memory:")] == [
        "hold=False", "step", "hold=True", "step", "hold=False", "hold=False", "step",
        "hold=True"]


_FAULTS_SCRIPT = """
import resource, sys
import jax, jax.numpy as jnp
import jaxgan.experiments.dcgan  # the entry point's imports first, as under python -m
from jaxgan.experiments import memory
enabled = memory.enable_if_requested()
f = jax.jit(lambda x, w: jnp.sum(jnp.tanh(x @ w) @ w.T))  # a 64 MiB temporary
x, w = jnp.ones((4096, 256)), jnp.ones((256, 4096))
def faults():
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x, w).block_until_ready()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0
f(x, w).block_until_ready()  # compiled and run once, as the runner holds
before = faults()
holding = memory.hold_freed_memory(True)
f(x, w).block_until_ready()
# the fewest of three calls: XLA frees the block on its own thread after the result is
# ready, so on a loaded machine a call can start before the last one's block is back
held = min(faults() for _ in range(3))
memory.hold_freed_memory(False)
released = faults()
print(enabled, holding, before, held, released)
"""


@linux_only
def test_held_freed_memory_stops_per_step_page_faults():
    def run(opt_in: str) -> list[str]:
        env = {**os.environ, memory.ENV: opt_in}
        out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], env=env, capture_output=True,
                             text=True, timeout=120, check=True)
        return out.stdout.split()[-5:]

    pages = 64 * 2**20 // 4096
    # Not opted in: the 64 MiB temporary is mapped afresh and faulted page by page on every
    # call, and holding is a no-op.
    enabled, holding, before, held, released = run("0")
    assert (enabled, holding) == ("False", "False")
    assert min(int(before), int(held), int(released)) >= pages
    # JAXGAN_CPU_MALLOC=1: held, the block freed by the last call is reused; released, it is
    # mapped again.
    enabled, holding, before, held, released = run("1")
    assert (enabled, holding) == ("True", "True")  # 2x the small peak fits
    assert int(before) >= pages and int(held) < 1000
    assert int(released) >= pages


_FRAGMENTS_SCRIPT = """
import ctypes, sys
from jaxgan.experiments import memory
assert memory.keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.argtypes, libc.malloc.restype = (ctypes.c_size_t,), ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
# a compiler's leftovers: 3000 free chunks of 1.5-60 KB, each between two that stay
chunks = [libc.malloc(1500 + 10 * i) for i in range(6000)]  # in a row, from the heap's top
for chunk in chunks[::2]:
    libc.free(chunk)
libc.free(libc.malloc(1 << 16))  # sorts the freed chunks into their bins
def large():  # free chunks in glibc's large bins (searched best-fit), up to 4 MiB
    return sum(c for size, c in memory.parkable_chunks())
before = large()
written = []  # files opened for writing (the peak is read, never reset through /proc)
sys.addaudithook(lambda event, args: event == "open" and args[1] not in (None, "r", "rb")
                 and written.append(str(args[0])))
memory.hold_freed_memory(True)
held, parked = large(), len(memory._parked)
memory.hold_freed_memory(False)
libc.free(libc.malloc(1 << 16))  # sorts the chunks freed on release into their bins
assert not [p for p in written if p.startswith("/proc")], written
print(before, held, parked, large(), len(memory._parked))
"""


@linux_only
def test_held_memory_parks_the_heaps_fragments_and_frees_them_on_release():
    out = subprocess.run([sys.executable, "-c", _FRAGMENTS_SCRIPT], capture_output=True,
                         text=True, timeout=120, check=True)
    before, held, parked, released, left = map(int, out.stdout.split()[-5:])
    # Held: the fragments are allocated and kept, out of the bins every allocation searches.
    # (About 3000: Python's own allocations in between may take one or two of them.)
    assert before >= 2950 and held < 50 and parked >= 2950
    # Released: freed again (before the trim), none kept.
    assert released >= 2950 and left == 0


def test_freed_memory_is_held_only_where_twice_the_peak_fits():
    gib = 2**30
    # A big step's peak that twice over does not fit: held, its heap could take a second
    # temporary block beside the first and the process be killed.
    assert not memory.safe_to_hold(14 * gib, 3 * gib, 20 * gib)
    assert memory.safe_to_hold(int(1.4 * gib), 1 * gib, 23 * gib)
    assert memory.safe_to_hold(None, 1, 1)  # no /proc: as before
