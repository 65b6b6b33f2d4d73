"""Pieces shared by the per-family train steps: input checks, optimizers, the finite guard.

The tree utilities are jitted on their own, so a step run op by op compiles each once, not
once per leaf shape."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgan import checks

__all__ = [
    "COMPUTE_DTYPES",
    "MixedPrecision",
    "adam",
    "apply_model",
    "apply_optimizer",
    "bind_config",
    "check_image_batch",
    "check_key",
    "commit_step",
    "freeze",
    "guard_finite",
    "in_compute_dtype",
    "init_variables",
    "jit_bound",
    "jit_init",
    "linear_decay_schedule",
    "load_torch_variables",
    "mixed_precision",
    "optimizer_count",
    "tree_all_finite",
]

PyTree = Any


def freeze(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
    """An immutable, hashable copy of ``config`` (equal configs hash equal)."""
    if isinstance(config, ml_collections.FrozenConfigDict):
        return config
    return ml_collections.FrozenConfigDict(config)


@functools.lru_cache(maxsize=64)
def _bind(fn: Callable, config: ml_collections.FrozenConfigDict, *args: Any) -> Callable:
    return functools.partial(fn, config, *args)


def bind_config(fn: Callable, config: ml_collections.ConfigDict, *args: Any) -> Callable:
    """``partial(fn, freeze(config), *args)``, the *same object* for equal configs, so that
    jax (which caches per function object) reuses one compilation."""
    return _bind(fn, freeze(config), *args)


@functools.lru_cache(maxsize=64)
def _jit_bound(fn: Callable, config: ml_collections.FrozenConfigDict, *args: Any) -> Callable:
    return jax.jit(functools.partial(fn, config, *args))


def jit_bound(fn: Callable, config: ml_collections.ConfigDict, *args: Any) -> Callable:
    """``jax.jit(partial(fn, freeze(config), *args))``, one cached object per (fn, config,
    args): for sampling helpers called repeatedly with the same config."""
    return _jit_bound(fn, freeze(config), *args)


@functools.lru_cache(maxsize=64)
def _jit_init(fn: Callable, config: ml_collections.FrozenConfigDict, *args: Any) -> Callable:
    jitted = jax.jit(functools.partial(fn, config, *args))

    def init(key: jax.Array) -> Any:
        with jax.threefry_partitionable(False):
            return jitted(key)

    return init


def jit_init(fn: Callable, config: ml_collections.ConfigDict, *args: Any) -> Callable:
    """``key -> fn(freeze(config), *args, key)``, jitted and cached per (fn, config, args), with
    the non-partitionable threefry (faster to compile; the state is replicated anyway)."""
    return _jit_init(fn, freeze(config), *args)


def adam(opt: ml_collections.ConfigDict, learning_rate: float | optax.Schedule | None = None
         ) -> optax.GradientTransformation:
    """``optax.adam`` from an optimizer config (fields ``learning_rate, b1, b2, eps``);
    ``learning_rate`` overrides ``opt.learning_rate`` (e.g. with a schedule)."""
    lr = opt.learning_rate if learning_rate is None else learning_rate
    return optax.adam(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps)


def adam_pair(config: ml_collections.ConfigDict, schedule: Callable | None = None
              ) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(G's, D's) :func:`adam` of ``config.optimizer``, at ``schedule(config)`` if given: the
    same objects for equal configs, so the steps that close over them share compilations."""
    return _adam_pair(freeze(config), schedule)


@functools.lru_cache(maxsize=64)
def _adam_pair(config: ml_collections.FrozenConfigDict, schedule: Callable | None):
    lr = None if schedule is None else schedule(config)
    return adam(config.optimizer, lr), adam(config.optimizer, lr)


@functools.lru_cache(maxsize=64)
def _vmapped(step: Callable) -> Callable:
    return jax.vmap(step)


def make_train_step(train_step: Callable, config: ml_collections.ConfigDict,
                    mesh: jax.sharding.Mesh | None = None, *, jit: bool = True,
                    donate: bool = True, compiler_options: dict | None = None,
                    replicas: bool = False) -> Callable:
    """``step(state, batch, key) -> (state, metrics)``: ``train_step`` bound to ``config``.

    ``jit=False`` gives the pure Python function. Otherwise it is compiled with the state
    donated (``donate``); with a ``mesh`` the batch is sharded over ``'data'`` and state and
    key replicated (:func:`jaxgan.parallel.jit_step`). ``replicas``: a study's step, vmapped
    over a leading replica axis of state, batch, key and metrics (one run per index).
    """
    from jaxgan import parallel

    step = bind_config(train_step, config)
    if replicas:
        step = _vmapped(step)
    if not jit:
        return step
    return parallel.jit_step(step, mesh, donate=donate, compiler_options=compiler_options)


def linear_decay_schedule(learning_rate: float, constant_steps: int, decay_steps: int
                          ) -> optax.Schedule:
    """``learning_rate`` for ``constant_steps`` steps, then linearly to 0 over ``decay_steps``
    and 0 after: the per-step form of the reference's ``n_epochs`` + ``n_epochs_decay``."""
    if constant_steps < 0 or decay_steps < 0:
        raise ValueError(
            f"schedule lengths must be >= 0 steps; got constant_steps={constant_steps}, "
            f"decay_steps={decay_steps}"
        )
    if decay_steps == 0:
        return optax.constant_schedule(learning_rate)
    return optax.linear_schedule(learning_rate, 0.0, decay_steps, transition_begin=constant_steps)


@functools.partial(jax.jit, static_argnums=0)
def apply_optimizer(tx: optax.GradientTransformation, grads: PyTree, opt_state: PyTree,
                    params: PyTree) -> tuple[PyTree, PyTree]:
    """One optimizer step: ``(new params, new opt_state)``. Jitted with ``tx`` static: pass
    the same object each time."""
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def optimizer_count(opt_state: PyTree) -> jax.Array:
    """The update count (int32 scalar) of an optax state: the step its schedule is at."""
    found = optax.tree_utils.tree_get_all_with_path(opt_state, "count")
    if not found:
        raise ValueError("optimizer state has no 'count' (not an optax adam state?)")
    return found[0][1]


#: ``config.model.dtype`` values: the dtype convolutions and activations are computed in.
COMPUTE_DTYPES = ("float32", "bfloat16")


def _cast_floating(tree: PyTree, src: Any, dst: Any) -> PyTree:
    """Array leaves of dtype ``src`` cast to ``dst``; other leaves unchanged."""
    return jax.tree.map(
        lambda x: x.astype(dst) if getattr(x, "dtype", None) == src else x, tree)


class MixedPrecision:
    """A flax module computed in ``dtype`` (bfloat16) with float32 parameters (as PyTorch AMP).

    ``apply`` casts the float32 parameters and array arguments to ``dtype`` and the outputs
    back to float32, so losses, optimizer and parameters stay float32; ``batch_stats`` are
    never cast. bfloat16 has float32's exponent range, so no loss scaling is needed.
    """

    def __init__(self, module: nn.Module, dtype: Any):
        self.module = module
        self.dtype = jnp.dtype(dtype)

    def init(self, *args: Any, **kwargs: Any) -> PyTree:
        return self.module.init(*args, **kwargs)

    def apply(self, variables: Mapping[str, PyTree], *args: Any, **kwargs: Any) -> Any:
        f32, low = jnp.dtype(jnp.float32), self.dtype
        variables = dict(variables)
        variables["params"] = _cast_floating(variables["params"], f32, low)
        apply_kw = {k: kwargs.pop(k) for k in ("rngs", "mutable", "method") if k in kwargs}
        out = self.module.apply(variables, *_cast_floating(args, f32, low),
                                **_cast_floating(kwargs, f32, low), **apply_kw)
        return _cast_floating(out, low, f32)

    def __getattr__(self, name: str) -> Any:
        if name == "module":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.module, name)

    def __repr__(self) -> str:
        return f"MixedPrecision({self.module!r}, dtype={self.dtype.name})"


def mixed_precision(module: nn.Module, dtype: str) -> nn.Module | MixedPrecision:
    """``module`` itself for ``"float32"``, else :class:`MixedPrecision` in ``dtype``;
    ValueError for a dtype not in :data:`COMPUTE_DTYPES`."""
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"config.model.dtype={dtype!r} is not a compute dtype; choose one of "
                         f"{', '.join(COMPUTE_DTYPES)} (bfloat16: mixed precision, parameters "
                         "and optimizer float32)")
    if dtype == "float32":
        return module
    if jax.default_backend() == "cpu":
        warnings.warn(
            f"config.model.dtype={dtype!r} on XLA:CPU computes correctly but slowly: XLA:CPU "
            "converts to float32 around most bfloat16 operations, so a step is slower than in "
            "float32; it is meant for GPUs and TPUs",
            stacklevel=2)
    return MixedPrecision(module, dtype)


def in_compute_dtype(config: ml_collections.ConfigDict, nets: tuple | dict) -> tuple | dict:
    """A tuple or dict of networks through :func:`mixed_precision` in ``config.model.dtype``."""
    dtype = config.model.dtype
    if isinstance(nets, dict):
        return {k: mixed_precision(v, dtype) for k, v in nets.items()}
    return tuple(mixed_precision(v, dtype) for v in nets)


def init_variables(model: nn.Module, key: jax.Array, *args: Any, **kwargs: Any
                   ) -> tuple[PyTree, PyTree]:
    """``model.init`` -> ``(params, batch_stats)``; ``batch_stats`` is ``{}`` without BatchNorm."""
    pkey, dkey = jax.random.split(key)
    variables = model.init({"params": pkey, "dropout": dkey}, *args, **kwargs)
    return variables["params"], variables.get("batch_stats", {})


def apply_model(
    model: nn.Module,
    params: PyTree,
    batch_stats: PyTree,
    *args: Any,
    train: bool = True,
    dropout_key: jax.Array | None = None,
    **kwargs: Any,
) -> tuple[jax.Array, PyTree]:
    """Apply a flax module, threading BatchNorm statistics: ``(output, batch_stats)``, updated
    only with ``train``; ``dropout_key`` feeds the ``'dropout'`` rng stream."""
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    rngs = {"dropout": dropout_key} if dropout_key is not None else None
    if train and batch_stats:
        out, updates = model.apply(variables, *args, train=train, rngs=rngs,
                                   mutable=["batch_stats"], **kwargs)
        return out, updates["batch_stats"]
    return model.apply(variables, *args, train=train, rngs=rngs, **kwargs), batch_stats


def check_image_batch(
    family: str,
    batch: Any,
    expected: Mapping[str, Sequence[int | None]],
    *,
    same_batch_size: bool = True,
) -> int:
    """Validate a batch of images at trace time; returns N.

    ``expected`` maps each required key to a shape ``(None, S, S, C)``; with
    ``same_batch_size`` all entries must share N. Raises TypeError for a non-mapping batch,
    ValueError naming the key, the expected float32 shape and what was given.
    """
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"{family} train_step: batch must be a dict with keys {sorted(expected)}; "
            f"got {type(batch).__name__}"
        )
    sizes = {}
    for name, (_, size, _, c) in expected.items():
        if name not in batch:
            raise ValueError(
                f"{family} train_step: batch is missing {name!r}: expected float32[N, {size}, "
                f"{size}, {c}] images in [-1, 1]; got keys {sorted(batch)}"
            )
        checks.check_images(batch[name], f"{family} train_step: batch[{name!r}]", channels=c,
                            size=size, dtype=jnp.float32)
        sizes[name] = int(batch[name].shape[0])
    if same_batch_size and len(set(sizes.values())) > 1:
        raise ValueError(f"{family} train_step: batch entries differ in batch size: {sizes}")
    return next(iter(sizes.values()))


def check_key(family: str, key: Any) -> None:
    """A PRNG key: a typed key array of shape () or a raw uint32[2] key."""
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
        return
    if dtype == jnp.uint32 and shape == (2,):
        return
    raise ValueError(
        f"{family} train_step: key must be one PRNG key (jax.random.key(seed)); got "
        f"{checks.describe(key)}"
    )


@jax.jit
def tree_all_finite(tree: PyTree) -> jax.Array:
    """bool scalar: every floating-point leaf of ``tree`` is finite (True for an empty tree)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    if not leaves:
        return jnp.bool_(True)
    return jnp.all(jnp.stack(leaves))


@jax.jit
def guard_finite(finite: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    """``new`` where ``finite`` else ``old``, leaf by leaf (trees of the same structure)."""
    return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)


def commit_step(old: PyTree, new: PyTree, metrics: dict[str, jax.Array], finite: jax.Array,
                **advance: Any) -> tuple[PyTree, dict[str, jax.Array]]:
    """The steps' non-finite policy: ``new`` if ``finite`` (all losses and grads) else ``old``;
    either way ``step`` advances by one and the ``advance`` fields take their given values.
    Returns ``(state, {**metrics, "finite": finite})``."""
    state = guard_finite(finite, new, old).replace(step=old.step + 1, **advance)
    return state, {**metrics, "finite": finite}


def load_torch_variables(what: str, source: Any, model_name: str, params: PyTree,
                         batch_stats: PyTree, *, part: str | None = None, **fields: Any
                         ) -> tuple[PyTree, PyTree]:
    """``(params, batch_stats)`` from a PyTorch reference state_dict (``.pth`` path or
    mapping), for fine-tuning. ValueError (naming ``what``) for a file of another architecture
    or one that does not fit the fresh ``params`` / ``batch_stats``."""
    from jaxgan.interop import torch as interop

    try:
        v = interop.load_state_dict(model_name, source, part=part, **fields)
    except interop.StateDictMismatchError as e:
        raise ValueError(f"{what}: {e} (set config.model to the checkpoint's architecture)"
                         ) from e
    new_params, new_stats = v["params"], v.get("batch_stats", {})
    for name, got, want in (("params", new_params, params),
                            ("batch_stats", new_stats, batch_stats)):
        shapes = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), got)
        expected = jax.tree.map(lambda x: (tuple(x.shape), str(x.dtype)), want)
        if shapes != expected:
            raise ValueError(f"{what}: the loaded {name} do not fit the config's {model_name}: "
                             f"{shapes} != {expected}")
    return new_params, new_stats
