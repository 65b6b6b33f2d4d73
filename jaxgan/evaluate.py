"""``python -m jaxgan.evaluate --workdir DIR [--metrics swd,ms_ssim] [--num_images N]``:
evaluate the latest checkpoint of a training run against its dataset.

On a multi-host run, start it on every host as the training was (the same distributed flags):
the metrics are computed over every host's rows, and process 0 writes the result.

The family, config and model come from the checkpoint. Prints a table and writes
``DIR/eval/<step>.json``. Metrics: ``swd`` (PGGAN's sliced Wasserstein distance, x1e3 per
pyramid level and the average), ``ms_ssim`` (diversity: mean MS-SSIM over pairs of generated
images; lower is more diverse), ``fid`` / ``kid`` (need ``--inception=weights.npz``, see
``jaxgan.metrics.inception``). Conditional families (pix2pix, CycleGAN) are scored on G(A)
of the eval split against its B images.
"""

from __future__ import annotations

import importlib
import json
import sys

import jax
from etils import epath

from jaxgan.checkpoint import CheckpointError
from jaxgan.experiments import runner

FAMILIES = ("dcgan", "pix2pix", "cyclegan", "pggan")


def evaluate_workdir(workdir: str, metrics: str = "swd,ms_ssim", num_images: int | None = None,
                     inception: str | None = None) -> tuple[int, dict[str, float]]:
    """Evaluate the latest checkpoint of ``workdir``; returns (step, results) and writes
    ``workdir/eval/<step>.json``."""
    name = runner.checkpoint_family(workdir)
    if name not in FAMILIES:
        raise runner.WorkdirError(f"checkpoint in {workdir} is of unknown family {name!r}")
    module = importlib.import_module(f"jaxgan.experiments.{name}")
    state, step, config = runner.restore_latest(module.family(), None, workdir)
    if inception:
        config.eval_inception = inception
    results = module.evaluate(config, state, step, num_images=num_images, metrics=metrics)
    out = eval_path(workdir, step)
    if jax.process_index() == 0:  # the other processes of a multi-host run write nothing
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"step": step, "family": name,
                  "num_images": config.eval_num_images if num_images is None else num_images,
                  "metrics": metrics, "results": results}
        out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return step, results


def eval_path(workdir: str, step: int) -> epath.Path:
    """``<workdir>/eval/<step>.json`` as an ``etils.epath`` path (``gs://`` kept)."""
    return runner.workdir_path(workdir) / "eval" / f"{step}.json"


def format_table(step: int, results: dict[str, float]) -> str:
    width = max(len(k) for k in results) if results else 6
    lines = [f"{'metric':<{width}}  value   (step {step})", "-" * (width + 20)]
    lines += [f"{k:<{width}}  {v:.6g}" for k, v in results.items()]
    return "\n".join(lines)


def _flags():
    """This command's flags, in their own absl ``FlagValues`` (not the global FLAGS, so that
    :func:`main` can be called from Python with an argv of its own)."""
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
        step, results = evaluate_workdir(fv.workdir, fv.metrics, fv.num_images, fv.inception)
    except (runner.WorkdirError, CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if jax.process_index() == 0:
        print(format_table(step, results))
        print(f"wrote {eval_path(fv.workdir, step)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
