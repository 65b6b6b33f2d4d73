"""``python -m jaxgan.evaluate --workdir DIR [--metrics swd,ms_ssim] [--num-images N]``:
evaluate the latest checkpoint of a training run against its dataset.

The family, config and model come from the checkpoint. Prints a table and writes
``DIR/eval/<step>.json``. Metrics: ``swd`` (PGGAN's sliced Wasserstein distance, x1e3 per
pyramid level and the average), ``ms_ssim`` (diversity: mean MS-SSIM over pairs of generated
images; lower is more diverse), ``fid`` / ``kid`` (need ``--inception=weights.npz``, see
``jaxgan.metrics.inception``). Conditional families (pix2pix, CycleGAN) are scored on G(A)
of the eval split against its B images.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jaxgan.evaluate",
                                 description="Evaluate a run's latest checkpoint.")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--metrics", default="swd,ms_ssim", help="comma-separated: swd,ms_ssim,fid,kid")
    ap.add_argument("--num-images", type=int, default=None,
                    help="images per side (default: the run's eval_num_images)")
    ap.add_argument("--inception", default=None, help="Inception weights (.npz) for fid/kid")
    args = ap.parse_args(argv)
    if args.num_images is not None and args.num_images < 2:
        ap.error(f"--num-images must be at least 2 (MS-SSIM scores pairs), got {args.num_images}")
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    try:
        step, results = evaluate_workdir(args.workdir, args.metrics, args.num_images,
                                         args.inception)
    except (runner.WorkdirError, CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(step, results))
    print(f"wrote {eval_path(args.workdir, step)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
