"""``python -m jaxgan.models NAME [--input-shape H,W,C] [--n-layers N] [--norm batch|instance|none]
[--resolution R] [--part g|d]``: print a model's layer table, ending with ``parameters: N``
(and ``receptive_field: N`` / ``output_shape: HxW`` for a discriminator)."""

from __future__ import annotations

import argparse
import sys

from jaxgan.models.registry import names
from jaxgan.models.summary import model_from_args, summarize


def _shape(text: str) -> tuple[int, int, int]:
    try:
        h, w, c = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input-shape takes H,W,C (e.g. 256,256,6), got {text!r}")
    return h, w, c


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m jaxgan.models", description="Summarise a jaxgan model by reference name."
    )
    ap.add_argument("name", help="one of: " + ", ".join(names()))
    ap.add_argument("--input-shape", type=_shape, help="H,W,C of the input images")
    ap.add_argument("--n-layers", type=int, help="PatchGAN depth (with name n_layers)")
    ap.add_argument("--norm", choices=("batch", "instance", "none"))
    ap.add_argument("--resolution", type=int, help="DCGAN / PGGAN image side")
    ap.add_argument("--part", choices=("g", "d"), help="generator or discriminator")
    args = ap.parse_args(argv)
    try:
        model, shape = model_from_args(
            args.name,
            part=args.part,
            input_shape=args.input_shape,
            n_layers=args.n_layers,
            norm=args.norm,
            resolution=args.resolution,
        )
        print(summarize(model, shape).format())
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
