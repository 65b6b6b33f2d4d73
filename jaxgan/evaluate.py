"""``python -m jaxgan.evaluate --workdir DIR [--metrics swd,ms_ssim] [--num_images N]``:
evaluate the latest checkpoint of a training run against its dataset.

Family, config and model come from the checkpoint; prints a table and writes
``DIR/eval/<step>.json``. Metrics: ``swd``, ``ms_ssim`` (diversity; lower is more diverse),
``fid`` / ``kid`` (need ``--inception=weights.npz``, see :mod:`jaxgan.metrics.inception`).
Conditional families (pix2pix, CycleGAN) score G(A) of the eval split against its B images. A
study (``--config.seeds``) is scored per seed: the JSON holds ``per_seed``, ``summary`` (the
spread) and the means as ``results``. Multi-host: start it on every host with the training's
distributed flags; all hosts' rows are scored and process 0 writes the result.
"""

from __future__ import annotations

import importlib
import json
import sys

import jax
import numpy as np
from etils import epath

from jaxgan.checkpoint import CheckpointError
from jaxgan.experiments import runner

FAMILIES = ("dcgan", "pix2pix", "cyclegan", "pggan")


def evaluate_workdir(workdir: str, metrics: str = "swd,ms_ssim", num_images: int | None = None,
                     inception: str | None = None) -> tuple[int, dict[str, float]]:
    """(step, results) of the latest checkpoint of ``workdir``, also written to
    ``workdir/eval/<step>.json``; a study's results are the means (see :func:`evaluate_study`)."""
    step, record = evaluate_study(workdir, metrics, num_images, inception)
    return step, record["results"]


def spread(per_seed: dict[int, dict[str, float]]) -> dict[str, dict[str, float]]:
    """metric -> {mean, std, min, max} over seeds; ``std`` is the sample standard deviation
    (ddof=1, 0 for one seed): the spread a new seed would be expected to show."""
    names = next(iter(per_seed.values())).keys() if per_seed else ()
    out = {}
    for name in names:
        v = np.array([r[name] for r in per_seed.values()], np.float64)
        out[name] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                     "min": float(v.min()), "max": float(v.max())}
    return out


def evaluate_study(workdir: str, metrics: str = "swd,ms_ssim", num_images: int | None = None,
                   inception: str | None = None) -> tuple[int, dict]:
    """Evaluate the latest checkpoint of ``workdir`` seed by seed; returns (step, record) and
    writes the record to ``workdir/eval/<step>.json``: ``results`` (a study's means),
    and for a study ``per_seed`` ({seed: results}) and ``summary`` (:func:`spread`)."""
    name = runner.checkpoint_family(workdir)
    if name not in FAMILIES:
        raise runner.WorkdirError(f"checkpoint in {workdir} is of unknown family {name!r}")
    module = importlib.import_module(f"jaxgan.experiments.{name}")
    state, step, config = runner.restore_latest(module.family(), None, workdir)
    if inception:
        config.eval_inception = inception
    record = {"step": step, "family": name,
              "num_images": config.eval_num_images if num_images is None else num_images,
              "metrics": metrics}
    seeds = runner.study_seeds(config)
    if not seeds:
        record["results"] = module.evaluate(config, state, step, num_images=num_images,
                                            metrics=metrics)
    else:
        per_seed = {seed: module.evaluate(runner.seed_config(config, seed),
                                          runner.replica(state, k), step,
                                          num_images=num_images, metrics=metrics)
                    for k, seed in enumerate(seeds)}
        record["per_seed"] = per_seed
        record["summary"] = spread(per_seed)
        record["results"] = {k: v["mean"] for k, v in record["summary"].items()}
    out = eval_path(workdir, step)
    if jax.process_index() == 0:  # the other processes of a multi-host run write nothing
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return step, record


def eval_path(workdir: str, step: int) -> epath.Path:
    """``<workdir>/eval/<step>.json`` as an ``etils.epath`` path (``gs://`` kept)."""
    return runner.workdir_path(workdir) / "eval" / f"{step}.json"


def format_table(step: int, results: dict[str, float], per_seed: dict | None = None) -> str:
    """The printed table: one value per metric, or for a study one column per seed and the
    spread (mean +- std, min, max)."""
    width = max(len(k) for k in results) if results else 6
    if not per_seed:
        lines = [f"{'metric':<{width}}  value   (step {step})", "-" * (width + 20)]
        lines += [f"{k:<{width}}  {v:.6g}" for k, v in results.items()]
        return "\n".join(lines)
    summary = spread(per_seed)
    head = "".join(f"  {'seed ' + str(s):>10}" for s in per_seed)
    lines = [(f"{'metric':<{width}}{head}  {'mean +- std':>22}  {'min':>10}  {'max':>10}"
             f"   (step {step}, {len(per_seed)} seeds)")]
    lines.append("-" * len(lines[0]))
    for k in results:
        cells = "".join(f"  {r[k]:>10.5g}" for r in per_seed.values())
        m = summary[k]
        lines.append(f"{k:<{width}}{cells}  {m['mean']:>10.5g} +- {m['std']:<8.3g}  "
                     f"{m['min']:>10.5g}  {m['max']:>10.5g}")
    return "\n".join(lines)


def _flags():
    """This command's flags, in their own ``FlagValues`` so :func:`main` can take its own argv."""
    from absl import flags

    from jaxgan.experiments import cli

    fv = flags.FlagValues()
    flags.DEFINE_string("workdir", None, "The training run's workdir.", flag_values=fv)
    flags.DEFINE_string("metrics", "swd,ms_ssim", "Comma-separated: swd, ms_ssim, fid, kid.",
                        flag_values=fv)
    flags.DEFINE_integer("num_images", None,
                         "Images per side (default: the run's eval_num_images).", flag_values=fv)
    flags.DEFINE_string("inception", None, "Inception weights (.npz) for fid / kid.",
                        flag_values=fv)
    cli.define_distributed_flags(fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), evaluate, print; returns the exit status
    (2 for a bad flag or an unreadable workdir; ``--help`` exits 0)."""
    from absl import flags, logging

    from jaxgan.experiments import cli

    argv = sys.argv[1:] if argv is None else list(argv)
    fv = _flags()
    prog = "python -m jaxgan.evaluate"
    if any(a in ("-h", "--help", "--helpfull") for a in argv):
        print(f"{prog}: evaluate a run's latest checkpoint.\n\n{fv.get_help()}")
        raise SystemExit(0)
    try:
        fv([prog, *argv])
        if not fv.workdir:
            raise flags.Error("--workdir is required (the training run's workdir)")
        if fv.num_images is not None and fv.num_images < 2:
            raise flags.Error(f"--num_images must be at least 2 (MS-SSIM scores pairs), "
                              f"got {fv.num_images}")
        cli.start_distributed(fv)
    except (flags.Error, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.set_verbosity(logging.WARNING)
    try:
        step, record = evaluate_study(fv.workdir, fv.metrics, fv.num_images, fv.inception)
    except (runner.WorkdirError, CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if jax.process_index() == 0:
        print(format_table(step, record["results"], record.get("per_seed")))
        print(f"wrote {eval_path(fv.workdir, step)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
