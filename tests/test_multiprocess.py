"""Several JAX processes on 127.0.0.1 (gloo CPU collectives, 2 CPU devices each), as on a pod
slice or a multi-GPU host: DCGAN and PGGAN train and checkpoint as 2 processes x 2 devices
with the results of 1 process x 4 devices, and so do pix2pix and CycleGAN with their
evaluation and sample grids of the fixed validation pairs; a SIGTERM to one of two DCGAN
processes makes both save the same step, and both resume to the uninterrupted result; a PGGAN
checkpoint written by 2 processes in a fade resumes on 1; a workdir the processes do not share
is refused before training (through the CLI, with --coordinator_address/--num_processes/
--process_id); a 2-seed DCGAN study as 2 processes (each holding its rows of both replicas'
batches) equals it as 1.

Every run is a subprocess with a timeout: on a timeout all of a session's processes are
killed and the test fails showing every log. The 2-process results equal the 1-process ones
to float32 round-off, not bit for bit: the cross-process all-reduce (gloo) sums the devices'
partial gradients and batch statistics in another order than XLA:CPU's in-process one, a
few ulps per reduction, which the following steps carry on (WGAN-GP's gradient penalty
most: PGGAN's metrics differ by up to ~2e-5 relative after 9 steps, DCGAN's by ~1e-6).
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # seconds for one session (all its processes)

_SCRIPT = r'''
import json, os, signal, sys
args = json.loads(sys.argv[1])
from absl import flags
flags.FLAGS.mark_as_parsed()
import jax
import numpy as np
from jaxgan.experiments import cli, runner
from jaxgan.experiments import cyclegan as cyclegan_exp, dcgan as dcgan_exp
from jaxgan.experiments import pggan as pggan_exp, pix2pix as pix2pix_exp

cli.maybe_initialize_distributed("auto", args.get("coordinator"), args.get("num_processes"),
                                 args.get("process_id"))
cli.enable_compilation_cache()  # a test's sessions share one (JAXGAN_CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


import tiny_configs  # noqa: E402

exp = {"dcgan": dcgan_exp, "pggan": pggan_exp, "pix2pix": pix2pix_exp,
       "cyclegan": cyclegan_exp}[args["family"]]
c = getattr(tiny_configs, "tiny_" + args["family"])()
for field, value in args.get("config", {}).items():
    c[field] = value
family = exp.family()
if "preempt_at" in args:  # SIGTERM to one process after that many steps of this run
    make_step, calls = family.make_step, [0]

    def make(config, mesh, stage):
        step_fn = make_step(config, mesh, stage)

        def step(state, batch, key):
            out = step_fn(state, batch, key)
            calls[0] += 1
            if calls[0] == args["preempt_at"]:
                if jax.process_index() == args["preempt_process"]:
                    os.kill(os.getpid(), signal.SIGTERM)
                # Every process waits until the notice is out (JAX's notifier polls for the
                # signal), so the run cannot end before the processes agree on a step.
                from jax._src import distributed
                distributed.global_state.client.blocking_key_value_get(
                    "RECEIVED_PREEMPTION_NOTICE", 120_000)
            return out
        return step

    family.make_step = make
state = runner.run(family, c, args["workdir"], evaluate=exp.evaluate)
if runner.study_seeds(c):  # a study's state, split over its replicas: whole on every process
    from jax.sharding import NamedSharding, PartitionSpec
    mesh = jax.tree.leaves(state)[0].sharding.mesh
    state = jax.jit(lambda s: s, out_shardings=NamedSharding(mesh, PartitionSpec()))(state)
if args.get("state_out") and jax.process_index() == 0:
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    np.savez(args["state_out"], **{jax.tree_util.keystr(path): np.asarray(jax.device_get(x))
                                   for path, x in leaves})
print("RESULT", json.dumps({"step": int(np.max(jax.device_get(state.step))),
                            "process": jax.process_index()}), flush=True)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: Path, devices: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_", "XLA_", "TPU_", "SLURM_", "OMPI_"))}
    return {**env, "JAX_NUM_CPU_DEVICES": str(devices), "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),  # conftest.py's, as in this process
            "JAXGAN_CACHE_DIR": str(tmp / "xla_cache"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}


class Session:
    """Processes started together (one JAX run of 1 or more processes); :meth:`wait` ends
    them within the session's timeout, or kills them all and fails with their logs."""

    def __init__(self, tmp: Path, name: str, commands: list[list[str]], devices: int):
        self.name, self.logs, self.procs = name, [], []
        self.deadline = time.monotonic() + TIMEOUT
        for i, command in enumerate(commands):
            log = tmp / f"{name}.{i}.log"
            self.logs.append(log)
            with log.open("w") as f:
                self.procs.append(subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT,
                                                   env=_env(tmp, devices), cwd=ROOT))

    def text(self) -> str:
        return "\n".join(f"---- {self.name} process {i} ----\n{log.read_text()}"
                         for i, log in enumerate(self.logs))

    def wait(self, expect_rc: int | None = 0) -> list[str]:
        try:
            for p in self.procs:
                p.wait(timeout=max(self.deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            for p in self.procs:
                p.kill()
            for p in self.procs:
                p.wait()
            pytest.fail(f"{self.name}: timed out after {TIMEOUT} s\n{self.text()}")
        codes = [p.returncode for p in self.procs]
        if expect_rc is not None and any(c != expect_rc for c in codes):
            pytest.fail(f"{self.name}: exit codes {codes}, expected {expect_rc}\n{self.text()}")
        return [log.read_text() for log in self.logs]


def run_session(tmp: Path, name: str, processes: int, devices: int, **args) -> Session:
    """Start one run of the test script over ``processes`` processes."""
    port = free_port()
    commands = []
    for i in range(processes):
        a = dict(args)
        if processes > 1:
            a.update(coordinator=f"127.0.0.1:{port}", num_processes=processes, process_id=i)
        commands.append([sys.executable, "-c", _SCRIPT, json.dumps(a)])
    return Session(tmp, name, commands, devices)


def rows(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def assert_metrics_close(got: Path, want: Path, rtol: float) -> None:
    a, b = rows(got), rows(want)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert sorted(x) == sorted(y)
        np.testing.assert_allclose([x[k] for k in sorted(x)], [y[k] for k in sorted(y)],
                                   rtol=rtol, atol=1e-7, err_msg=f"step {x['step']}")


def assert_states_close(got: Path, want: Path, atol: float, rtol: float = 0,
                        cancelled: tuple[str, ...] = ()) -> None:
    """Every state leaf within ``atol``, except the biases named in ``cancelled`` (and their
    Adam moments): a bias right before an instance norm is cancelled by it, so its exact
    gradient is 0 and its computed one is round-off, which Adam normalises into updates of up
    to the learning rate in either direction; those are only checked to have moved by less than
    lr per step. ``rtol`` is relative to each leaf's largest magnitude."""
    a, b = np.load(got), np.load(want)
    assert sorted(a) == sorted(b)
    for k in a:
        if any(f"{layer}['bias']" in k for layer in cancelled):
            assert np.abs(a[k] - b[k]).max() <= 2 * 2e-4 * 4, k  # both at most lr x steps
            continue
        if a[k].size:  # within atol + rtol x the leaf's largest magnitude
            err = np.abs(a[k].astype(np.float64) - b[k]).max()
            assert err <= atol + rtol * np.abs(b[k]).max(), (k, err)


def test_dcgan_sigterm_to_one_of_two_processes_saves_one_step_and_resumes_on_both(tmp_path):
    # evaluated at step 8: every process scores the whole eval batches (their rows gathered)
    steps = {"num_steps": 8, "eval_every": 8, "eval_num_images": 16, "eval_metrics": "swd"}
    ref = run_session(tmp_path, "ref_1x4", 1, 4, family="dcgan", workdir=str(tmp_path / "ref"),
                      config=steps, state_out=str(tmp_path / "ref.npz"))
    wd = tmp_path / "two"
    cut = run_session(tmp_path, "preempted_2x2", 2, 2, family="dcgan", workdir=str(wd),
                      config=steps, preempt_at=2, preempt_process=1)
    logs = cut.wait()
    saved = sorted(os.listdir(wd / "checkpoints"))
    assert len(saved) == 1 and 2 <= int(saved[0]) < 8, saved  # one step, saved by both
    assert f"SIGTERM: saved checkpoint at step {saved[0]}" in logs[0]
    done = [json.loads(line.split(" ", 1)[1]) for log in logs for line in log.splitlines()
            if line.startswith("RESULT ")]
    assert [d["step"] for d in done] == [int(saved[0])] * 2, cut.text()
    resumed = run_session(tmp_path, "resumed_2x2", 2, 2, family="dcgan", workdir=str(wd),
                          config=steps, state_out=str(tmp_path / "two.npz"))
    ref.wait()
    logs = resumed.wait()
    assert f"resumed dcgan from {wd}/checkpoints at step {saved[0]}" in logs[0]
    assert "resumed" not in logs[1]  # status lines from process 0 only
    assert_metrics_close(wd, tmp_path / "ref", rtol=1e-5)
    assert "eval/swd_avg" in rows(wd)[-1]
    assert_states_close(tmp_path / "two.npz", tmp_path / "ref.npz", atol=1e-6)
    assert sorted(os.listdir(wd / "samples")) == sorted(os.listdir(tmp_path / "ref" / "samples"))
    assert "8" in os.listdir(wd / "checkpoints")
    # python -m jaxgan.evaluate of that checkpoint: 2 processes score what 1 process does
    scores = []
    for processes, devices in ((2, 2), (1, 4)):
        port = free_port()
        command = [sys.executable, "-m", "jaxgan.evaluate", f"--workdir={wd}", "--metrics=swd",
                   "--num_images=16"]
        logs = Session(tmp_path, f"evaluate_{processes}", [
            command + ([f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                        f"--process_id={i}"] if processes > 1 else [])
            for i in range(processes)], devices).wait()
        assert "swd_avg" in logs[0]
        assert processes == 1 or "swd_avg" not in logs[1]  # the table from process 0 only
        scores.append(json.loads((wd / "eval" / "8.json").read_text())["results"])
    assert sorted(scores[0]) == sorted(scores[1])
    np.testing.assert_allclose([scores[0][k] for k in sorted(scores[0])],
                               [scores[1][k] for k in sorted(scores[1])], rtol=1e-5)


def test_dcgan_study_as_two_processes_equals_one(tmp_path):
    # replicas over each process's 2 devices, each replica's batch over the 2 processes
    study = {"seeds": "0,1", "eval_every": 6, "eval_num_images": 16, "eval_metrics": "swd"}
    ref = run_session(tmp_path, "study_1x4", 1, 4, family="dcgan", workdir=str(tmp_path / "ref"),
                      config=study, state_out=str(tmp_path / "ref.npz"))
    two = run_session(tmp_path, "study_2x2", 2, 2, family="dcgan", workdir=str(tmp_path / "two"),
                      config=study, state_out=str(tmp_path / "two.npz"))
    ref.wait()
    logs = two.wait()
    assert "2 seeds 0,1 as one program" in logs[0]
    assert [(r["step"], r["seed"], "d_loss" in r) for r in rows(tmp_path / "two")] == [
        (s, k, True) for s in (2, 4, 6) for k in (0, 1)] + [(6, 0, False), (6, 1, False)]
    assert "eval/swd_avg" in rows(tmp_path / "two")[-1]
    assert_metrics_close(tmp_path / "two", tmp_path / "ref", rtol=1e-5)
    assert_states_close(tmp_path / "two.npz", tmp_path / "ref.npz", atol=1e-6)
    for seed in (0, 1):
        assert sorted(os.listdir(tmp_path / "two" / "samples" / f"seed_{seed}")) == [
            "step_0000003.png", "step_0000006.png"]


def test_pggan_checkpoint_of_two_processes_mid_fade_resumes_on_one(tmp_path):
    """2 processes x 2 devices to step 3 (stage 1, 8x8, began at step 2 and is fading in),
    resumed on 1 process x 4 devices: the data position is global, not grain's per-process
    iterator state."""
    quiet = {"sample_every": 0}
    ref = run_session(tmp_path, "ref_1x4", 1, 4, family="pggan", workdir=str(tmp_path / "ref"),
                      config=quiet, state_out=str(tmp_path / "ref.npz"))
    wd = tmp_path / "two"
    first = run_session(tmp_path, "first_2x2", 2, 2, family="pggan", workdir=str(wd),
                        config={**quiet, "num_steps": 3})
    first.wait()
    assert "growing to stage 1" in first.text()
    resumed = run_session(tmp_path, "resumed_1x4", 1, 4, family="pggan", workdir=str(wd),
                          config=quiet, state_out=str(tmp_path / "one.npz"))
    ref.wait()
    logs = resumed.wait()
    assert "resumed pggan" in logs[0] and "at step 3" in logs[0]
    assert_metrics_close(wd, tmp_path / "ref", rtol=1e-4)
    assert_states_close(tmp_path / "one.npz", tmp_path / "ref.npz", atol=1e-5)


@pytest.mark.parametrize("family", ["pix2pix", "cyclegan"])
def test_translation_family_as_two_processes_equals_one(tmp_path, family):
    """2 x 2 devices against 1 x 4 with a checkpoint, an evaluation and sample grids of the
    fixed validation pairs: the same metrics, the same evaluation (every process scores the
    whole eval set, its rows gathered) and the same grids (all pairs, not 1/2 of them)."""
    steps = {"eval_every": 4, "eval_num_images": 8, "eval_metrics": "swd"}
    ref = run_session(tmp_path, "ref_1x4", 1, 4, family=family, workdir=str(tmp_path / "ref"),
                      config=steps, state_out=str(tmp_path / "ref.npz"))
    wd = tmp_path / "two"
    two = run_session(tmp_path, "two_2x2", 2, 2, family=family, workdir=str(wd), config=steps,
                      state_out=str(tmp_path / "two.npz"))
    ref.wait()
    two.wait()
    assert_metrics_close(wd, tmp_path / "ref", rtol=1e-5)
    assert "eval/swd_avg" in rows(wd)[-1]
    want = {"g_l1"} if family == "pix2pix" else {"cycle_a", "identity_b", "d_a_loss"}
    assert want <= set().union(*rows(wd))
    cancelled = () if family == "pix2pix" else (  # CycleGAN's convs followed by a norm
        *[f"['{g}']['{layer}']" for g in ("g_ab", "g_ba") for layer in (
            "Conv2d_0", "Conv2d_1", "Conv2d_2", "ConvTranspose2d_0", "ConvTranspose2d_1",
            "ResnetBlock_0']['Conv2d_0", "ResnetBlock_0']['Conv2d_1")],
        *[f"['{d}']['Conv2d_{i}']" for d in ("d_a", "d_b") for i in (1, 2, 3)])
    # CycleGAN's gradients reach ~4 (the cycle losses' weight 10): its Adam moments differ by
    # round-off relative to that scale. pix2pix: Adam's step g / sqrt(v) normalises the
    # round-off of a gradient near 0, so a parameter can move by more (one U-Net kernel entry:
    # 2.6e-6 after the 4 steps, 1.3% of the learning rate)
    assert_states_close(tmp_path / "two.npz", tmp_path / "ref.npz",
                        atol=1e-5 if family == "pix2pix" else 1e-6, rtol=1e-5,
                        cancelled=cancelled)
    grids = sorted(os.listdir(tmp_path / "ref" / "samples"))
    assert grids and sorted(os.listdir(wd / "samples")) == grids
    for name in grids:
        a = np.asarray(Image.open(wd / "samples" / name), np.int16)
        b = np.asarray(Image.open(tmp_path / "ref" / "samples" / name), np.int16)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, name  # a rounding step at most
    assert sorted(os.listdir(wd / "checkpoints")) == ["2", "4"]


def test_workdir_not_shared_by_the_processes_is_refused_before_training(tmp_path):
    port = free_port()
    commands = [[sys.executable, "-m", "jaxgan.experiments.dcgan",
                 f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                 f"--process_id={i}", f"--workdir={tmp_path / f'host{i}' / 'run'}",
                 "--config.num_steps=2", "--config.image_size=16", "--config.channels=1",
                 "--config.model.ngf=4", "--config.model.ndf=4", "--config.data.source=digits:16"]
                for i in range(2)]
    session = Session(tmp_path, "unshared", commands, 2)
    logs = session.wait(expect_rc=1)
    assert "process 0 of 2: 2 local cpu device(s) of 4" in logs[0]
    assert "process 1 of 2: 2 local cpu device(s) of 4" in logs[1]
    for log in logs:
        assert "is not shared by the 2 processes" in log and "process(es) 1" in log, log
        assert "gs://" in log and "Traceback" not in log, log
    assert sorted(os.listdir(tmp_path / "host0" / "run")) == []  # the probe removed, no run
    assert not (tmp_path / "host1").exists()  # process 1 wrote nothing
