"""Model summaries for ``python -m jaxgan.models``: a layer table, the parameter count, and for
discriminators the receptive field and output map shape (traced by ``jax.eval_shape``: nothing is
computed)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from jaxgan.models.patchgan import PatchDiscriminator, PixelDiscriminator, receptive_field
from jaxgan.models.pggan import PGGANDiscriminator, PGGANGenerator, num_stages
from jaxgan.models.registry import create


@dataclasses.dataclass
class Summary:
    """What :func:`summarize` found. ``rows`` are (parameter path, shape, size)."""

    model: nn.Module
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    rows: list[tuple[str, tuple[int, ...], int]]
    parameters: int
    receptive_field: int | None = None

    def format(self) -> str:
        width = max([len(r[0]) for r in self.rows] + [9])
        lines = [
            f"model: {type(self.model).__name__}("
            + ", ".join(f"{f.name}={getattr(self.model, f.name)!r}" for f in _fields(self.model))
            + ")",
            f"input_shape: {'x'.join(map(str, self.input_shape))}",
            "",
            f"{'parameter':<{width}}  {'shape':<22} {'count':>12}",
            f"{'-' * width}  {'-' * 22} {'-' * 12}",
        ]
        lines += [f"{p:<{width}}  {s!s:<22} {n:>12,}" for p, s, n in self.rows]
        lines.append("")
        lines.append(f"parameters: {self.parameters}")
        if self.receptive_field is not None:
            lines.append(f"receptive_field: {self.receptive_field}")
            lines.append(f"output_shape: {self.output_shape[1]}x{self.output_shape[2]}")
        else:
            lines.append(f"output: {'x'.join(map(str, self.output_shape[1:]))} per sample")
        return "\n".join(lines)


def _fields(m: nn.Module) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(m) if f.name not in ("parent", "name")]


def _default_input(model: nn.Module) -> tuple[int, ...]:
    if isinstance(model, (DCGANGenerator, PGGANGenerator)):
        return (1, model.latent_dim)
    if isinstance(model, DCGANDiscriminator):
        return (1, model.resolution, model.resolution, model.channels)
    if isinstance(model, PGGANDiscriminator):
        return (4, model.resolution, model.resolution, model.channels)
    size = 2**model.num_downs if hasattr(model, "num_downs") else 256
    return (1, size, size, model.in_channels)


def _call_kwargs(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, (PGGANGenerator, PGGANDiscriminator)):
        return {"stage": num_stages(model.resolution) - 1, "alpha": 1.0}
    return {"train": False}


def summarize(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> Summary:
    """Trace ``model`` on an input of ``input_shape`` (N first; a default per model)."""
    shape = tuple(input_shape or _default_input(model))
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    kwargs = _call_kwargs(model)
    out, variables = jax.eval_shape(lambda x: model.init_with_output(rngs, x, **kwargs), x)
    flat = jax.tree_util.tree_flatten_with_path(variables.get("params", {}))[0]
    rows = [
        ("/".join(str(getattr(k, "key", k)) for k in path), tuple(v.shape), math.prod(v.shape))
        for path, v in flat
    ]
    rf = None
    if isinstance(model, (PatchDiscriminator, PixelDiscriminator)):
        rf = receptive_field(model)
    elif isinstance(model, DCGANDiscriminator):
        n = int(math.log2(model.resolution)) - 2
        rf = receptive_field([(4, 2)] * n + [(4, 1)])
    elif isinstance(model, PGGANDiscriminator):
        rf = model.resolution  # the dense layers see the whole image
    out_shape = tuple(out.shape)
    if rf is not None and len(out_shape) == 1:
        out_shape = (out_shape[0], 1, 1, 1)
    return Summary(model, shape, out_shape, rows, sum(r[2] for r in rows), rf)


def model_from_args(
    name: str,
    *,
    part: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    n_layers: int | None = None,
    norm: str | None = None,
    resolution: int | None = None,
) -> tuple[nn.Module, tuple[int, ...] | None]:
    """Build the model the CLI flags describe; returns it and the full input shape (or None)."""
    overrides: dict[str, Any] = {}
    if n_layers is not None:
        overrides["n_layers"] = n_layers
    if norm is not None:
        overrides["norm"] = norm
    if resolution is not None:
        overrides["resolution"] = resolution
    probe = create(name, part)
    fields = {f.name for f in _fields(probe)}
    full_shape = None
    if input_shape is not None:
        h, w, c = input_shape
        key = "in_channels" if "in_channels" in fields else "channels"
        overrides[key] = c
        if isinstance(probe, (DCGANDiscriminator, PGGANDiscriminator)):
            if h != w:
                raise ValueError(f"{name} takes square images, got --input-shape {h},{w},{c}")
            overrides.setdefault("resolution", h)
        if isinstance(probe, (DCGANGenerator, PGGANGenerator)):
            raise ValueError(
                f"{name} part g takes latents, not images: use --resolution and --part d for "
                "the discriminator's input"
            )
        full_shape = (4 if isinstance(probe, PGGANDiscriminator) else 1, h, w, c)
    bad = sorted(set(overrides) - fields)
    if bad:
        flags = {"n_layers": "--n-layers", "norm": "--norm", "resolution": "--resolution"}
        raise ValueError(
            f"{name} (part {part or 'default'}) does not take "
            + ", ".join(flags.get(b, b) for b in bad)
        )
    return create(name, part, **overrides), full_shape
