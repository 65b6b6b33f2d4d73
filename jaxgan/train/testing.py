"""Comparing two executions of one train step (eager vs jit, sharded vs one device, resumed
vs uninterrupted).

They differ only in the order of float32 summations, so losses and statistics agree to a few
ulps. Parameters after Adam mostly do too, but a coordinate whose gradient is within noise of
zero (e.g. a conv bias before InstanceNorm) moves by ``lr * g / (|g| + eps)``: anything up to
``lr`` per step. :func:`assert_step_outputs_close` allows those, bounded by ``2 * lr * steps``.
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
    """Assert ``(state, metrics)`` pairs agree within ``rtol`` / ``atol``, except at most
    ``max_outlier_fraction`` of all state float elements, which must be within ``2 *
    learning_rate * steps`` (the largest learning rate; optimizer steps from a common state).
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
