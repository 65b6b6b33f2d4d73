"""Studies (``config.seeds``): K runs trained as one vmapped program equal the K single runs.

Tolerance: a study computes each replica's step under ``jax.vmap`` and splits its batch over
fewer devices than one run does (the replica axis takes some), so convolutions and batch
reductions sum in another order: one step differs from the single run by float32 round-off
(~1e-7 absolute), and over a few steps Adam's normalisation (``g / sqrt(v)``) grows that to
~1e-5 on small parameters. Parameters whose true gradient is 0, the conv biases that an
InstanceNorm cancels (CycleGAN's generator and PatchGAN), are moved by Adam's normalised
round-off in both runs, up to the learning rate per step; they are compared to that bound.
Within a study nothing changes the program, so interrupting and resuming one is bit-exact.
"""

import json
import os
import re
import signal

import jax
import numpy as np
import pytest
from tiny_configs import tiny_cyclegan, tiny_dcgan, tiny_pggan, tiny_pix2pix

from jaxgan import evaluate, parallel
from jaxgan.experiments import cyclegan as cyclegan_exp
from jaxgan.experiments import dcgan as dcgan_exp
from jaxgan.experiments import pggan as pggan_exp
from jaxgan.experiments import pix2pix as pix2pix_exp
from jaxgan.experiments import runner

RTOL, ATOL = 1e-4, 5e-5  # parameters and metrics, see the module docstring


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def study_of(config, seeds):
    c = config.copy_and_resolve_references()
    c.seeds = ",".join(map(str, seeds))
    return c


def single(config, seed):
    c = config.copy_and_resolve_references()
    c.seed = seed
    return c


def assert_replica_matches(study_state, k, single_state, bias_bound=0.0):
    got = jax.tree_util.tree_leaves_with_path(runner.replica(study_state, k))
    want = jax.tree.leaves(single_state)
    assert len(got) == len(want)
    for (path, x), y in zip(got, want, strict=True):
        name = jax.tree_util.keystr(path)
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype, name
        if x.dtype.kind != "f":
            np.testing.assert_array_equal(x, y, err_msg=name)
        elif bias_bound and re.search(r"params.*bias", name):
            assert np.max(np.abs(x - y), initial=0) <= bias_bound, name
        else:
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL, err_msg=name)


def assert_rows_match(study_rows, seed, single_rows):
    mine = [{k: v for k, v in r.items() if k != "seed"} for r in study_rows if r["seed"] == seed]
    assert [r["step"] for r in mine] == [r["step"] for r in single_rows]
    for a, b in zip(mine, single_rows, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)],
                                   rtol=RTOL, atol=ATOL, err_msg=f"step {a['step']}")


def sigterm_after(family, n):
    """The family with a study step that sends this process SIGTERM after ``n`` steps."""
    make_step, count = family.make_step, [0]

    def make(config, mesh, stage, **kw):
        step_fn = make_step(config, mesh, stage, **kw)

        def step(state, batch, key):
            out = step_fn(state, batch, key)
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGTERM)
            return out
        return step

    family.make_step = make
    return family


def test_dcgan_study_equals_single_runs_and_resumes_exactly(tmp_path):
    c = tiny_dcgan()  # 6 steps, logs every 2, checkpoints every 3
    seeds = (0, 3)
    whole = runner.run(dcgan_exp.family(), study_of(c, seeds), tmp_path / "study")
    rows = read_jsonl(tmp_path / "study" / "metrics.jsonl")
    assert [(r["step"], r["seed"]) for r in rows] == [(s, k) for s in (2, 4, 6) for k in seeds]
    for k, seed in enumerate(seeds):
        alone = runner.run(dcgan_exp.family(), single(c, seed), tmp_path / f"seed{seed}")
        assert_replica_matches(whole, k, alone)
        assert_rows_match(rows, seed, read_jsonl(tmp_path / f"seed{seed}" / "metrics.jsonl"))
        assert (tmp_path / "study" / "samples" / f"seed_{seed}" / "step_0000006.png").exists()
        assert list((tmp_path / "study" / "tensorboard" / f"seed_{seed}").iterdir())
    assert sorted(os.listdir(tmp_path / "study" / "checkpoints")) == ["3", "6"]

    # SIGTERM after step 4 (logged past the step-3 checkpoint): saves step 4, then resumes
    cut = tmp_path / "cut"
    runner.run(sigterm_after(dcgan_exp.family(), 4), study_of(c, seeds), cut)
    assert sorted(os.listdir(cut / "checkpoints")) == ["3", "4"]
    resumed = runner.run(dcgan_exp.family(), study_of(c, seeds), cut)
    for x, y in zip(jax.tree.leaves(resumed), jax.tree.leaves(whole), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert (cut / "metrics.jsonl").read_text() == (tmp_path / "study" / "metrics.jsonl").read_text()

    # the evaluation: per seed as the single run scores, and the spread
    step, record = evaluate.evaluate_study(str(tmp_path / "study"), "swd", 32)
    assert step == 6 and sorted(record["per_seed"]) == list(seeds)
    for seed in seeds:
        _, alone = evaluate.evaluate_workdir(str(tmp_path / f"seed{seed}"), "swd", 32)
        for name, value in alone.items():
            np.testing.assert_allclose(record["per_seed"][seed][name], value, rtol=1e-3)
    values = [record["per_seed"][s]["swd_avg"] for s in seeds]
    summary = record["summary"]["swd_avg"]
    np.testing.assert_allclose([summary["mean"], summary["std"], summary["min"], summary["max"]],
                               [np.mean(values), np.std(values, ddof=1), min(values),
                                max(values)], rtol=1e-12)
    assert record["results"]["swd_avg"] == summary["mean"]
    saved = json.loads((tmp_path / "study" / "eval" / "6.json").read_text())
    assert sorted(saved["per_seed"]) == [str(s) for s in seeds]
    table = evaluate.format_table(step, record["results"], record["per_seed"])
    assert "mean +- std" in table and "seed 3" in table


@pytest.mark.parametrize("exp,config,steps", [
    (pggan_exp, tiny_pggan, 5),        # stage 1 from step 2, fading in to step 4
    (pix2pix_exp, tiny_pix2pix, 2),
    (cyclegan_exp, tiny_cyclegan, 2),
], ids=["pggan", "pix2pix", "cyclegan"])
def test_study_equals_single_runs(tmp_path, exp, config, steps):
    c = config()
    c.num_steps, c.log_every, c.checkpoint_every, c.sample_every = steps, 1, steps, 0
    seeds = (0, 1)
    whole = runner.run(exp.family(), study_of(c, seeds), tmp_path / "study")
    rows = read_jsonl(tmp_path / "study" / "metrics.jsonl")
    # CycleGAN's biases before InstanceNorm: Adam moves them by up to lr per step
    bound = 2 * steps * c.optimizer.learning_rate if exp is cyclegan_exp else 0.0
    # replica 1, the one not at the default seed (the DCGAN test checks both)
    alone = runner.run(exp.family(), single(c, 1), tmp_path / "seed1")
    assert_replica_matches(whole, 1, alone, bias_bound=bound)
    assert_rows_match(rows, 1, read_jsonl(tmp_path / "seed1" / "metrics.jsonl"))
    if exp is pggan_exp:
        assert int(whole.stage) == 1


def test_study_seeds_are_checked_before_training(tmp_path):
    c = tiny_dcgan()
    for bad in ("a,b", "0,0", "-1,2"):
        c.seeds = bad
        with pytest.raises(ValueError, match=r"--config.seeds=0,1,2"):
            runner.check_loop_config(c)
    assert not tmp_path.joinpath("x").exists()
    c.seeds = " 2, 5 "
    assert runner.study_seeds(c) == (2, 5)
    assert runner.seed_config(c, 5).seed == 5 and runner.seed_config(c, 5).seeds == ""


def test_resuming_with_other_seeds_is_refused():
    meta = {"seeds": [0, 1]}
    with pytest.raises(runner.WorkdirError, match=r"study of seeds 0,1.*--config.seeds=0,1"):
        runner.check_study("w", meta, (0, 2))
    with pytest.raises(runner.WorkdirError, match=r"study of seeds 0,1"):
        runner.check_study("w", meta, None)
    with pytest.raises(runner.WorkdirError, match=r"a single run"):
        runner.check_study("w", {}, (0, 1))
    runner.check_study("w", {"seeds": []}, None)
    runner.check_study("w", meta, (0, 1))


def test_study_mesh_deals_each_process_devices_into_replica_rows():
    mesh = parallel.make_study_mesh(2, 4)
    assert dict(mesh.shape) == {"replica": 2, "data": 4}
    assert [d.id for d in mesh.devices[1]] == [d.id for d in jax.devices()[4:8]]
    batch = parallel.shard_batch({"image": np.zeros((2, 8, 3), np.float32)}, mesh)
    assert batch["image"].shape == (2, 8, 3)
    assert batch["image"].sharding.spec == jax.sharding.PartitionSpec("replica", "data")
    assert runner.study_mesh_for(3, [8]).shape["replica"] == 1  # 3 does not divide 8 devices
    assert dict(runner.study_mesh_for(4, [6]).shape) == {"replica": 4, "data": 2}
    with pytest.raises(ValueError, match="cannot lay 3 replica"):
        parallel.make_study_mesh(3, 1)
