"""Comparing two executions of one train step (eager vs jit, sharded vs one device, resumed
vs uninterrupted) with tolerances that follow from how the step computes.

Two executions of the same step on the same inputs differ only in the order of float32
summations (XLA fuses differently; a sharded program adds per-device partial sums). Losses
and statistics therefore agree to a few ulps (``rtol`` 1e-5). Parameters after an Adam step
mostly do too, with one exception: Adam's update ``lr * m / (sqrt(v) + eps)`` is
``lr * g / (|g| + eps)`` on the first step, so a coordinate whose gradient is within
summation noise of zero (``|g|`` comparable to ``eps``) can move by any amount up to
``lr`` in either execution. Such coordinates are rare (measured: 2 of 65,536 in a U-Net
kernel), except in parameters whose gradient is exactly zero in exact arithmetic (a conv
bias followed by InstanceNorm, which subtracts it again): there every coordinate is noise
(measured: 696 of 597,480 state elements of a small CycleGAN, 0.12%).
:func:`assert_step_outputs_close` allows such differences, bounded by the exact limit
``2 * lr * steps``, and fails if more than ``max_outlier_fraction`` of all the state's
floating-point elements are outside the tight tolerance.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import numpy as np

__all__ = ["assert_step_outputs_close"]


def assert_step_outputs_close(
    got: tuple[Any, Any],
    want: tuple[Any, Any],
    *,
    learning_rate: float,
    steps: int = 1,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    max_outlier_fraction: float = 1e-2,
) -> None:
    """Assert ``(state, metrics)`` pairs agree (see the module doc for the tolerances).

    Args:
      got, want: ``(state, metrics)`` from the two executions.
      learning_rate: the largest learning rate used (bounds an outlier's difference).
      steps: optimizer steps taken from a common state.
      rtol, atol: the tight tolerance for metrics and for almost every state element.
      max_outlier_fraction: the share of the state's floating-point elements (all leaves
        together) that may exceed the tight tolerance (within ``2 * learning_rate * steps``).
    """
    (got_state, got_metrics), (want_state, want_metrics) = got, want
    chex.assert_trees_all_close(got_metrics, want_metrics, rtol=rtol, atol=atol)
    chex.assert_trees_all_equal_structs(got_state, want_state)
    bound = 2.0 * learning_rate * steps + atol
    paths = jax.tree_util.tree_flatten_with_path(want_state)[0]
    n_loose, n_total, worst = 0, 0, ""
    for (path, w), g in zip(paths, jax.tree.leaves(got_state), strict=True):
        name = jax.tree_util.keystr(path)
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (name, g.shape, w.shape)
        if not np.issubdtype(w.dtype, np.inexact):
            np.testing.assert_array_equal(g, w, err_msg=name)
            continue
        diff = np.abs(g.astype(np.float64) - w)
        loose = diff > atol + rtol * np.abs(w)
        assert np.all(np.isfinite(g) == np.isfinite(w)), name
        assert not loose.any() or diff[loose].max() <= bound, (
            f"{name}: a difference of {diff[loose].max():.3g} exceeds the Adam bound "
            f"2 * lr * steps = {bound:.3g}")
        n_loose, n_total = n_loose + int(loose.sum()), n_total + loose.size
        if loose.any():
            worst = f"{name} ({int(loose.sum())} of {loose.size})"
    assert n_loose <= max_outlier_fraction * n_total, (
        f"{n_loose} of {n_total} state elements differ beyond rtol={rtol}, atol={atol} "
        f"(more than {max_outlier_fraction:.1%}; last: {worst})")
