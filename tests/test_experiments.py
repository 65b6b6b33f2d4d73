"""The main job: runs, samples, metrics.jsonl, checkpoints, bit-identical resume after a
SIGTERM (DCGAN, and PGGAN across a stage boundary), refusals and clear errors."""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image
from tiny_configs import tiny_dcgan, tiny_pggan, tiny_pix2pix

from jaxgan.configs import cyclegan as cyclegan_cfg
from jaxgan.configs import dcgan as dcgan_cfg
from jaxgan.configs import pggan as pggan_cfg
from jaxgan.configs import pix2pix as pix2pix_cfg
from jaxgan.experiments import cli, runner, translate
from jaxgan.experiments import cyclegan as cyclegan_exp
from jaxgan.experiments import dcgan as dcgan_exp
from jaxgan.experiments import pggan as pggan_exp
from jaxgan.experiments import pix2pix as pix2pix_exp
from jaxgan.train import pggan as pggan_train


def interrupting(family, at_steps, signum=signal.SIGTERM):
    """The family with a step that sends this process ``signum`` after the given steps."""
    make_step = family.make_step
    counter = {"n": 0}

    def make(config, mesh, stage):
        step_fn = make_step(config, mesh, stage)

        def step(state, batch, key):
            out = step_fn(state, batch, key)
            counter["n"] += 1
            if counter["n"] in at_steps:
                os.kill(os.getpid(), signum)
            return out

        return step

    family.make_step = make
    return family


def assert_states_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_dcgan_run_outputs_and_same_seed_reproduces(tmp_path):
    c = tiny_dcgan()
    s1 = dcgan_exp.train_and_evaluate(c, str(tmp_path / "a"))
    s2 = dcgan_exp.train_and_evaluate(c, str(tmp_path / "b"))
    assert int(s1.step) == 6
    lines = (tmp_path / "a" / "metrics.jsonl").read_text()
    assert lines == (tmp_path / "b" / "metrics.jsonl").read_text()
    rows = read_jsonl(tmp_path / "a" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert {"d_loss", "g_loss"} <= set(rows[0])
    assert_states_equal(s1, s2)
    grid = Image.open(tmp_path / "a" / "samples" / "step_0000006.png")
    assert grid.size[0] >= 64
    assert sorted(os.listdir(tmp_path / "a" / "checkpoints")) == ["3", "6"]
    assert list((tmp_path / "a" / "tensorboard").iterdir())


def test_dcgan_sigterm_then_resume_is_bit_identical(tmp_path):
    c = tiny_dcgan()
    full = dcgan_exp.train_and_evaluate(c, str(tmp_path / "full"))
    wd = str(tmp_path / "resumed")
    stopped = runner.run(interrupting(dcgan_exp.family(), {2}), c, wd,
                         evaluate=dcgan_exp.evaluate)
    assert int(stopped.step) == 2
    assert "2" in os.listdir(tmp_path / "resumed" / "checkpoints")
    resumed = dcgan_exp.train_and_evaluate(c, wd)
    assert_states_equal(full, resumed)
    assert (tmp_path / "full" / "metrics.jsonl").read_text() == (
        tmp_path / "resumed" / "metrics.jsonl").read_text()


def test_pggan_resume_across_stage_boundary_is_bit_identical(tmp_path):
    c = tiny_pggan()
    assert pggan_train.stage_start_step(c, 1) == 2  # stage 1 begins at step 2
    full = pggan_exp.train_and_evaluate(c, str(tmp_path / "full"))
    assert full.stage == 1
    wd = str(tmp_path / "resumed")
    # Stop during stage 0 (step 1), then inside stage 1's fade (steps 2+3 = step 4).
    first = runner.run(interrupting(pggan_exp.family(), {1}), c, wd)
    assert first.stage == 0 and int(first.step) == 1
    second = runner.run(interrupting(pggan_exp.family(), {3}), c, wd)
    assert second.stage == 1 and int(second.step) == 4
    resumed = pggan_exp.train_and_evaluate(c, wd)
    assert resumed.stage == 1
    assert_states_equal(full, resumed)
    assert read_jsonl(tmp_path / "full" / "metrics.jsonl") == read_jsonl(
        tmp_path / "resumed" / "metrics.jsonl")
    assert (tmp_path / "resumed" / "samples" / "step_0000009.png").exists()


def test_workdir_of_another_model_is_refused(tmp_path):
    c = tiny_dcgan()
    c.num_steps = c.checkpoint_every = 1
    dcgan_exp.train_and_evaluate(c, str(tmp_path))
    c.model.ngf = 8
    with pytest.raises(runner.WorkdirError, match="holds a checkpoint of dcgan"):
        dcgan_exp.train_and_evaluate(c, str(tmp_path))


def test_resume_may_change_how_the_model_is_computed(tmp_path):
    """impl and dtype are not the model: a checkpoint written before model.dtype existed, or
    with another conv formulation, resumes; another width does not."""
    sig = {"model": {"latent_dim": 100, "ngf": 64, "ndf": 64, "impl": "auto"}, "image_size": 64}
    meta = {"family": "dcgan", "signature": sig}
    now = {**sig, "model": {**sig["model"], "impl": "xla", "dtype": "bfloat16"}}
    runner.check_signature(tmp_path, meta, "dcgan", now)
    wider = {**sig, "model": {**sig["model"], "ngf": 128, "dtype": "float32"}}
    with pytest.raises(runner.WorkdirError, match="'ngf': 64.*'ngf': 128"):
        runner.check_signature(tmp_path, meta, "dcgan", wider)


def test_checkpoint_config_without_newer_fields_restores_with_their_defaults(tmp_path):
    """A checkpoint written before a config field existed (model.dtype, eval_inception):
    restoring it without a config (``python -m jaxgan.evaluate``) takes those fields from the
    family's defaults and keeps every value the checkpoint has."""
    c = tiny_dcgan()
    c.num_steps = c.checkpoint_every = 1
    trained = dcgan_exp.train_and_evaluate(c, str(tmp_path))
    meta_file = tmp_path / "checkpoints" / "1" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    del meta["config"]["model"]["dtype"], meta["config"]["eval_inception"]
    meta_file.write_text(json.dumps(meta))
    state, step, config = runner.restore_latest(dcgan_exp.family(), None, str(tmp_path))
    assert step == 1
    assert config.model.dtype == "float32" and config.eval_inception == ""
    assert (config.model.ngf, config.image_size, config.data.source) == (4, 16, "digits:16")
    assert_states_equal(state, trained)
    without = runner.Family(**{**vars(dcgan_exp.family()), "default_config": None})
    with pytest.raises(AttributeError, match="dtype"):  # what the defaults are for
        runner.restore_latest(without, None, str(tmp_path))


@pytest.mark.parametrize("configs, geometry", [
    (dcgan_cfg, {"image_size", "channels"}), (pggan_cfg, {"resolution", "channels"}),
    (pix2pix_cfg, {"image_size", "in_channels", "out_channels"}),
    (cyclegan_cfg, {"image_size", "in_channels", "out_channels"})])
def test_model_signature_is_the_model_and_the_image_geometry(configs, geometry):
    """The fields each family's checkpoints have recorded since they were first written: a
    signature with more or fewer would refuse to resume them."""
    config = configs.get_config()
    signature = runner.model_signature(config)
    assert set(signature) == {"model", *geometry}
    assert signature["model"] == config.model.to_dict()


def test_model_field_added_since_a_checkpoint_counts_as_its_default(tmp_path):
    """A checkpoint whose signature lacks a model field (written before it existed) resumes
    with that field at the family's default, and is refused with another value."""
    ours = runner.model_signature(tiny_dcgan())
    old = json.loads(json.dumps(ours))
    del old["model"]["ndf"]  # as if ndf were added to jaxgan after this checkpoint
    meta = {"family": "dcgan", "signature": old}
    defaults = runner.default_signature(dcgan_exp.family())
    assert defaults["model"]["ndf"] == 64
    ours["model"]["ndf"] = 64
    runner.check_signature(tmp_path, meta, "dcgan", ours, defaults)
    with pytest.raises(runner.WorkdirError, match="holds a checkpoint of dcgan"):
        runner.check_signature(tmp_path, meta, "dcgan", ours)  # no defaults: refused
    ours["model"]["ndf"] = 32
    with pytest.raises(runner.WorkdirError, match="'ndf': 32"):
        runner.check_signature(tmp_path, meta, "dcgan", ours, defaults)


@pytest.mark.parametrize("exp", [dcgan_exp, pix2pix_exp, cyclegan_exp, pggan_exp],
                         ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_every_family_restores_missing_fields_from_its_library_defaults(exp):
    from jaxgan.train import cyclegan, dcgan, pggan, pix2pix

    train = {"dcgan": dcgan, "pix2pix": pix2pix, "cyclegan": cyclegan, "pggan": pggan}
    defaults = train[exp.family().name].default_config()
    config = runner.saved_config(exp.family(), {"seed": 7, "model": {"impl": "xla"}})
    assert config.seed == 7 and config.model.impl == "xla"
    assert config.model.dtype == "float32"
    assert {**config.model.to_dict(), "impl": "auto"} == defaults.model.to_dict()
    assert config.log_every == 50  # a loop field, from add_run_fields


def test_unwritable_workdir_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(runner.WorkdirError, match="not writable"):
        runner.prepare_workdir(blocker / "run")


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    c = tiny_dcgan()
    c.log_every = 1
    fam = dcgan_exp.family()
    make_step = fam.make_step

    def make(config, mesh, stage):
        step_fn = make_step(config, mesh, stage)

        def step(state, batch, key):
            state, metrics = step_fn(state, batch, key)
            if int(state.step) >= 4:
                metrics = dict(metrics, d_loss=metrics["d_loss"] * np.nan,
                               finite=metrics["finite"] & False)
            return state, metrics

        return step

    fam.make_step = make
    with pytest.raises(runner.NonFiniteLossError, match=r"last good checkpoint \(step 3\)"):
        runner.run(fam, c, str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3"]


def test_unknown_config_field_lists_valid_fields():
    c = dcgan_cfg.get_config()
    with pytest.raises(ValueError, match=r"'num_step'.*Did you mean num_steps.*Valid fields"):
        cli.check_overrides(c, ["--config.num_step=3"])
    with pytest.raises(ValueError, match=r"Valid fields of model: .*model.ngf"):
        cli.check_overrides(c, ["--config.model.nfg=3"])
    cli.check_overrides(c, ["--config.model.ngf=3", "--workdir=x"])


def test_cli_reports_unknown_field_without_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "jaxgan.experiments.dcgan", "--config.num_step=3"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 2
    assert "unknown config field 'num_step'" in out.stderr
    assert "Traceback" not in out.stderr


def test_pix2pix_runs_and_translates_a_folder(tmp_path):
    c = tiny_pix2pix()
    c.batch_size, c.num_steps, c.num_samples = 2, 2, 2
    state = pix2pix_exp.train_and_evaluate(c, str(tmp_path / "wd"))
    assert int(state.step) == 2
    assert (tmp_path / "wd" / "samples" / "step_0000002.png").exists()
    src = tmp_path / "in" / "sub"
    src.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((40, 50, 3), 40 * i, np.uint8)).save(src / f"x{i}.jpg")
    restored, step, _ = runner.restore_latest(pix2pix_exp.family(), c, str(tmp_path / "wd"))
    assert step == 2
    assert_states_equal(state, restored)
    n = translate.translate_folder(
        lambda x, k: pix2pix_exp.T.translate(c, restored, x), str(tmp_path / "in"),
        str(tmp_path / "out"), image_size=32, channels=3)
    assert n == 2
    out = Image.open(tmp_path / "out" / "sub" / "x1.png")
    assert out.size == (32, 32)


def test_default_configs_match_the_issue():
    for cfg in (dcgan_cfg, pix2pix_cfg, cyclegan_cfg, pggan_cfg):
        c = cfg.get_config()
        assert c.num_steps > 0 and "seed" in c
    c = pggan_cfg.get_config()
    assert c.resolution >= 32  # grows through 4 -> 8 -> 16 -> 32
    assert c.num_steps == pggan_train.steps_to_kimg(c, c.schedule.total_kimg)


def test_eval_hook_logs_metrics_and_evaluate_command(tmp_path):
    from jaxgan import evaluate

    c = tiny_dcgan()
    c.num_steps, c.eval_every, c.eval_num_images, c.eval_metrics = 3, 3, 16, "swd,ms_ssim"
    dcgan_exp.train_and_evaluate(c, str(tmp_path))
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    evals = [r for r in rows if "eval/swd_avg" in r]
    assert evals and evals[-1]["step"] == 3 and evals[-1]["eval/swd_avg"] > 0
    assert 0 < evals[-1]["eval/ms_ssim_diversity"] <= 1
    step, results = evaluate.evaluate_workdir(str(tmp_path), "swd", 16)
    assert step == 3 and results["swd_avg"] > 0
    saved = json.loads((tmp_path / "eval" / "3.json").read_text())
    assert saved["results"] == results
    assert evaluate.main(["--workdir", str(tmp_path / "nothing")]) == 2


def test_named_configs_load_and_have_docstrings():
    from pathlib import Path

    files = sorted((Path(__file__).parents[1] / "experiments" / "configs").glob("*.py"))
    assert len(files) >= 8
    for f in files:
        c = cli.load_config_file(str(f))
        assert c.num_steps > 0 and c.data.source, f
        text = f.read_text()
        assert text.startswith('"""') and "python -m jaxgan.experiments." in text, f
        assert "Cost" in text, f


def test_ctrl_c_checkpoints_like_sigterm_then_resume_is_bit_identical(tmp_path, capsys):
    c = tiny_dcgan()
    full = dcgan_exp.train_and_evaluate(c, str(tmp_path / "full"))
    wd = str(tmp_path / "resumed")
    stopped = runner.run(interrupting(dcgan_exp.family(), {2}, signal.SIGINT), c, wd)
    assert int(stopped.step) == 2
    assert "SIGINT: saved checkpoint at step 2" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "resumed" / "checkpoints")) == ["2"]
    assert_states_equal(full, dcgan_exp.train_and_evaluate(c, wd))


def _tensorboard_scalars(logdir):
    """{tag: [(step, value)]} as TensorBoard reads the event files: in the order they were
    written, a SessionLog START at step s dropping what was logged at steps >= s."""
    import struct

    from tensorboardX.proto import event_pb2

    events = []
    for f in logdir.iterdir():
        data, pos = f.read_bytes(), 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            events.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + n]))
            pos += 12 + n + 4
    scalars = {}
    for e in sorted(events, key=lambda e: e.wall_time):
        if e.HasField("session_log") and e.session_log.status == e.session_log.START:
            scalars = {k: [(s, v) for s, v in rows if s < e.step] for k, rows in scalars.items()}
        for v in e.summary.value:
            scalars.setdefault(v.tag, []).append((e.step, v.simple_value))
    return scalars


def test_tensorboard_agrees_with_metrics_jsonl_after_a_crash_and_resume(tmp_path):
    c = tiny_dcgan()
    c.log_every = 1
    fam = dcgan_exp.family()
    make_step = fam.make_step

    def make(config, mesh, stage):  # dies after step 5, logged past the step-3 checkpoint
        step_fn = make_step(config, mesh, stage)

        def step(state, batch, key):
            if int(state.step) == 5:
                raise KeyboardInterrupt
            return step_fn(state, batch, key)
        return step

    fam.make_step = make
    with pytest.raises(KeyboardInterrupt):
        runner.run(fam, c, str(tmp_path))
    assert max(r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")) == 5
    dcgan_exp.train_and_evaluate(c, str(tmp_path))
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    scalars = _tensorboard_scalars(tmp_path / "tensorboard")
    assert [s for s, _ in scalars["d_loss"]] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([v for _, v in scalars["d_loss"]], [r["d_loss"] for r in rows],
                               rtol=1e-6)


def test_resuming_past_num_steps_says_so(tmp_path, capsys):
    c = tiny_dcgan()
    dcgan_exp.train_and_evaluate(c, str(tmp_path))
    again = dcgan_exp.train_and_evaluate(c, str(tmp_path))
    assert int(again.step) == 6
    assert "already at num_steps=6" in capsys.readouterr().out
    c.num_steps = 3
    with pytest.raises(runner.WorkdirError, match=r"already at step 6, past num_steps=3.*"
                       r"--config.num_steps above 6"):
        dcgan_exp.train_and_evaluate(c, str(tmp_path))


@pytest.mark.parametrize("field", ["log_every", "checkpoint_every", "max_checkpoints"])
def test_zero_intervals_are_refused_before_the_workdir_is_made(tmp_path, field):
    c = tiny_dcgan()
    c[field] = 0
    with pytest.raises(ValueError, match=rf"{field}=0 must be a whole number >= 1.*"
                       rf"--config.{field}=10"):
        dcgan_exp.train_and_evaluate(c, str(tmp_path / "wd"))
    assert not (tmp_path / "wd").exists()


def test_pggan_evaluates_its_linear_output_during_and_after_training(tmp_path, monkeypatch):
    from jaxgan import evaluate

    generate = pggan_exp.T.generate
    # The linear output reaches past [-1, 1] (to +-1.5 and beyond in the default run).
    monkeypatch.setattr(pggan_exp.T, "generate", lambda *a, **k: 3.0 * generate(*a, **k))
    c = tiny_pggan()  # 4x4 for 2 steps, then 8x8 (fading in for 2 steps), 16x16 from step 6
    c.resolution, c.schedule.batch_size_per_stage = 16, (8, 8, 8)
    c.num_steps, c.eval_every, c.eval_num_images, c.checkpoint_every = 8, 4, 8, 8
    pggan_exp.train_and_evaluate(c, str(tmp_path))  # evaluates at 4 (8x8: skipped) and 8
    evals = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "eval/swd_avg" in r]
    assert [r["step"] for r in evals] == [8]
    step, results = evaluate.evaluate_workdir(str(tmp_path), "swd,ms_ssim", 8)
    assert step == 8 and results["swd_avg"] > 0 and 0 <= results["ms_ssim_diversity"] <= 1


def test_stage_batches_that_several_processes_cannot_split_are_refused_up_front(
        tmp_path, monkeypatch):
    c = tiny_pggan()
    c.schedule.batch_size_per_stage = (8, 12)
    monkeypatch.setattr(jax, "process_count", lambda *a, **k: 2)
    with pytest.raises(ValueError, match=r"stage 1 \(8x8, schedule.batch_size_per_stage\): "
                       r"global batch size 12 does not split over 8 devices of 2 processes; "
                       r"nearest valid: 8 or 16"):
        pggan_exp.train_and_evaluate(c, str(tmp_path / "wd"))
    assert not (tmp_path / "wd").exists()


def test_one_process_gives_each_stage_the_devices_its_batch_divides(capsys):
    c = tiny_pggan()
    c.schedule.batch_size_per_stage = (8, 4)
    assert runner.check_batch_sizes(pggan_exp.family(), c) == [8, 4]
    out = capsys.readouterr().out
    assert "stage 1 (8x8, schedule.batch_size_per_stage): global batch size 4 uses 4 of 8 " \
           "devices" in out and "stage 0" not in out
    assert runner.mesh_for([8]).devices.size == 8 and runner.mesh_for([4]).devices.size == 4


def test_gs_workdir_stays_a_gs_path_through_every_write(tmp_path, monkeypatch):
    """A gs:// workdir reaches orbax, TensorBoard and every file write as gs:// (epath with
    its gs backend stubbed onto tmp_path: no network)."""
    from etils import epath
    from etils.epath import testing as epath_testing

    bucket = tmp_path / "bucket"

    def local(p):
        p = os.fspath(p)
        return str(bucket / p[len("gs://bucket/"):]) if p.startswith("gs://bucket/") else p

    def one(fn, p, *a, **k):
        return fn(local(p), *a, **k)

    def two(fn, p, dst, *a, **k):
        return fn(local(p), local(dst), *a, **k)

    def glob(fn, p):
        return [f"gs://bucket/{os.path.relpath(g, bucket)}" for g in fn(local(p))]

    opened = []

    class Checkpoints:  # stands in for jaxgan.checkpoint.Checkpointer (orbax, tensorstore)
        def __init__(self, directory, max_to_keep, **kw):
            opened.append(directory)

        def restore_newest(self, build):
            return None

        def save(self, *a, **k):
            pass

        def reached_preemption(self, step):
            return False

        def latest_step(self):
            return None

        def wait(self):
            pass

        close = wait

    logdirs = []

    class Board:
        def __init__(self, logdir, **kw):
            logdirs.append(logdir)

        def add_scalar(self, *a):
            pass

        def close(self):
            pass

    import tensorboardX

    monkeypatch.setattr(runner, "Checkpointer", Checkpoints)
    monkeypatch.setattr(tensorboardX, "SummaryWriter", Board)
    monkeypatch.chdir(tmp_path)
    c = tiny_dcgan()
    c.num_steps, c.sample_every, c.checkpoint_every = 2, 2, 2
    fns = {name: one for name in ("exists", "isdir", "listdir", "makedirs", "mkdir", "open",
                                  "remove", "rmtree", "stat")}
    with epath_testing.mock_epath(**fns, rename=two, replace=two, glob=glob):
        assert str(runner.workdir_path("gs://bucket/run")) == "gs://bucket/run"
        dcgan_exp.train_and_evaluate(c, "gs://bucket/run")
        from jaxgan import evaluate
        assert str(evaluate.eval_path("gs://bucket/run", 2)) == "gs://bucket/run/eval/2.json"
    assert [str(d) for d in opened] == ["gs://bucket/run/checkpoints"]
    assert isinstance(opened[0], epath.Path)
    assert logdirs == ["gs://bucket/run/tensorboard"]
    run = bucket / "run"
    assert sorted(os.listdir(run)) == ["config.json", "metrics.jsonl", "samples"]
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [2]
    assert os.listdir(run / "samples") == ["step_0000002.png"]
    assert not (tmp_path / "gs:").exists()  # not pathlib's <cwd>/gs:/bucket/run


def _no_cluster_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_",
                         "OMPI_", "TPU_", "KUBERNETES_")):
            monkeypatch.delenv(k)


def test_distributed_start_where_a_cluster_is_described_or_detected(monkeypatch):
    calls = []
    _no_cluster_env(monkeypatch)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    assert cli.maybe_initialize_distributed("auto") is False  # a plain host: left alone
    assert cli.detect_cluster() is None and calls == []
    assert cli.maybe_initialize_distributed("auto", "10.0.0.1:1234", 2, 1) is True
    assert calls[-1] == {"coordinator_address": "10.0.0.1:1234", "num_processes": 2,
                         "process_id": 1}
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert cli.maybe_initialize_distributed("auto") is True
    assert calls[-1] == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4,
                         "process_id": 3}
    assert cli.maybe_initialize_distributed("false") is False and len(calls) == 2
    _no_cluster_env(monkeypatch)
    # SLURM (as JAX detects it): several tasks start, one task is a single host
    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node1", "SLURM_NTASKS": "2",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    assert cli.detect_cluster() == ("SlurmCluster", 2)
    assert cli.maybe_initialize_distributed("auto") is True
    assert calls[-1] == {"coordinator_address": None, "num_processes": None, "process_id": None}
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert cli.maybe_initialize_distributed("auto") is False and len(calls) == 3
    assert cli.maybe_initialize_distributed("true") is True and len(calls) == 4


def test_a_coordinator_address_alone_names_the_missing_flags(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_", "SLURM_", "OMPI_", "TPU_", "KUBERNETES_"))}
    env["JAX_COORDINATOR_ADDRESS"] = "127.0.0.1:1234"
    out = subprocess.run([sys.executable, "-m", "jaxgan.experiments.dcgan",
                          f"--workdir={tmp_path / 'wd'}"], capture_output=True, text=True,
                         timeout=120, check=False, env=env)
    assert out.returncode == 2, out.stderr
    assert "Number of processes must be defined" in out.stderr
    assert "--num_processes=N and --process_id=I" in out.stderr
    assert "JAX_NUM_PROCESSES" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "wd").exists()
