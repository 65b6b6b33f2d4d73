"""The jaxgan side of experiments/bench/run.py and conv.py (no torch needed, no timings
asserted)."""

import argparse
import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "bench" / "run.py"


def _load(name: str, path: pathlib.Path):
    if str(path.parent) not in sys.path:  # conv.py imports run.py beside it, as a script does
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return _load("jaxgan_bench_run", _PATH)


@pytest.fixture(scope="module")
def conv_bench():
    return _load("jaxgan_bench_conv", _PATH.with_name("conv.py"))


def test_conv_bench_times_with_freed_memory_held_then_released(conv_bench, monkeypatch):
    # As run.py and the entry points: the first call untimed with glibc's defaults, then
    # the memory held for the rest, and released again (also on an error) before the next
    # layer compiles.
    events = []
    monkeypatch.setattr(conv_bench.memory, "hold_freed_memory",
                        lambda hold: events.append(f"hold={hold}"))
    assert conv_bench._timed(lambda: events.append("call"), repeats=3) >= 0.0
    assert events == ["call", "hold=True"] + ["call"] * 4 + ["hold=False"]

    events.clear()

    def fails():
        events.append("call")
        if len(events) > 2:
            raise RuntimeError("layer failed")

    with pytest.raises(RuntimeError, match="layer failed"):
        conv_bench._timed(fails, repeats=3)
    assert events == ["call", "hold=True", "call", "hold=False"]


def test_parse_workloads(bench):
    assert bench.parse_workload("dcgan64") == ("dcgan", 64, 64)
    assert bench.parse_workload("pix2pix256_b8") == ("pix2pix", 256, 8)
    assert bench.parse_workload("cyclegan256_b1") == ("cyclegan", 256, 1)
    assert bench.parse_workload("pggan128_b16") == ("pggan", 128, 16)
    assert set(bench.QUICK_WORKLOADS) <= set(bench.WORKLOADS)
    with pytest.raises(ValueError, match="unknown workload"):
        bench.parse_workload("stylegan1024")


def test_cost_flops_of_a_matmul(bench):
    a = jnp.ones((32, 48), jnp.float32)
    b = jnp.ones((48, 16), jnp.float32)
    compiled = jax.jit(jnp.dot).lower(a, b).compile()
    flops = bench.cost_flops(compiled)
    assert flops is None or flops == pytest.approx(2 * 32 * 48 * 16, rel=0.05)


def test_missing_torch_is_a_clear_error(bench, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(SystemExit, match=r"pip install -e \"\.\[bench\]\""):
        bench.require_torch()


def test_machine_line_and_peak(bench, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert "cores" in bench.machine_line()
    peak = bench.matmul_peak(n=64, repeats=1)
    assert set(peak) == {"jax"} and peak["jax"] > 0


def test_rounds_alternate_frameworks_and_pool_their_steps(bench, monkeypatch):
    calls = []

    def fake_child(framework, name, args):
        calls.append(framework)
        k = len(calls)
        return {"times": [float(k), float(k) + 0.5], "step_s": k + 0.25, "batch_size": 4,
                "compile_s": 10.0 * k}

    monkeypatch.setattr(bench, "_run_child", fake_child)
    args = argparse.Namespace(rounds=3)
    j, t = bench._alternate_rounds("dcgan64", args, with_torch=True)
    assert calls == ["jax", "torch", "torch", "jax", "jax", "torch"]
    assert j["times"] == [1.0, 1.5, 4.0, 4.5, 5.0, 5.5] and j["step_s"] == 4.25
    assert t["times"] == [2.0, 2.5, 3.0, 3.5, 6.0, 6.5] and t["step_s"] == 3.25
    assert j["compile_s"] == 10.0  # the first round's (a cold compile)
    assert j["round_ratios"] == [2.25 / 1.25, 3.25 / 4.25, 6.25 / 5.25]
    j, t = bench._alternate_rounds("dcgan64", argparse.Namespace(rounds=1), with_torch=False)
    assert t is None and "round_ratios" not in j


def test_a_failed_workload_is_reported_and_the_rest_still_run(bench, monkeypatch, capsys):
    """On a GPU the parent lets XLA allocate on demand and the timing processes get the
    caller's environment; a workload whose process fails prints ``ratio <name> nan``, the
    next one still runs, and the exit status says which failed."""
    import os

    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    envs = []

    def fake_child(framework, name, args):
        envs.append(args.child_env)
        if name == "dcgan64":
            raise RuntimeError("jax dcgan64: the timing process failed (exit 1)")
        return {"times": [0.5], "step_s": 0.5, "batch_size": 1, "compile_s": 1.0,
                "flops": 1e9, "g_params": 1, "d_params": 1}

    monkeypatch.setattr(bench, "_run_child", fake_child)
    try:
        with pytest.raises(SystemExit, match="failed: dcgan64"):
            bench.main(["--workloads", "dcgan64,pix2pix256_b1", "--no-torch", "--malloc",
                        "default", "--repeats", "1"])
        assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    finally:
        os.environ.pop("XLA_PYTHON_CLIENT_PREALLOCATE", None)
    assert envs and all("XLA_PYTHON_CLIENT_PREALLOCATE" not in e for e in envs)
    out = capsys.readouterr().out
    assert "ratio dcgan64 nan" in out and "ratio pix2pix256_b1 nan" in out  # no torch: nan
    assert "pix2pix256_b1       0.500" in out


def test_gpu_check_script_parses():
    """experiments/bench/gpu_check.sh (the device command) is valid bash."""
    import subprocess

    script = _PATH.parent / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
