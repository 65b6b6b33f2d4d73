"""orbax checkpoints of a run: the train state, the grain iterator's position and the run's
metadata (family, model signature, stage, step, config), saved asynchronously together."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grain
import orbax.checkpoint as ocp

PyTree = Any


class Checkpointer:
    """orbax CheckpointManager (async, ``max_to_keep``) over items ``state`` (the train
    state), ``data`` (the grain iterator position) and ``meta`` (family, model signature,
    stage, step, config)."""

    def __init__(self, directory: Path, max_to_keep: int):
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self.manager = ocp.CheckpointManager(directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def meta(self, step: int) -> dict:
        out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def save(self, step: int, state: PyTree, iterator: Any, meta: dict, force: bool = False):
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=grain.checkpoint.CheckpointSave(iterator),
                meta=ocp.args.JsonSave(meta),
            ),
            force=force,
        )

    def restore(self, step: int, template: PyTree, iterator: Any = None) -> PyTree:
        """The state of checkpoint ``step`` (shaped and sharded as ``template``); the grain
        ``iterator``, when given, is set to the saved position in place."""
        items = {"state": ocp.args.StandardRestore(template)}
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(iterator)
        return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

    def newest_meta(self) -> tuple[int, dict] | None:
        """(step, metadata) of the newest checkpoint, or None when there is none."""
        step = self.latest_step()
        return None if step is None else (step, self.meta(step))

    def restore_newest(self, build: Callable[[dict], tuple[PyTree, Any]]
                       ) -> tuple[int, PyTree, Any, dict] | None:
        """Restore the newest checkpoint: ``build(meta)`` gives the (state template, grain
        iterator or None) that its metadata calls for. Returns (step, state, iterator, meta),
        or None when the directory holds no checkpoint."""
        step = self.latest_step()
        if step is None:
            return None
        meta = self.meta(step)
        template, iterator = build(meta)
        return step, self.restore(step, template, iterator), iterator, meta

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
