"""orbax checkpoints of a run: the train state, the grain iterator's position and the run's
metadata (family, model signature, stage, step, config), saved asynchronously together.

A checkpoint that cannot be written raises :class:`CheckpointWriteError` (its partial directory
removed, earlier ones kept); one that cannot be read is skipped for the newest readable one and
renamed ``<step>.corrupt`` so orbax no longer sees it (nothing is deleted). Paths are
``etils.epath`` (``gs://`` works). On several processes each saves its part of the state; only
the primary host creates, probes, cleans or renames directories. With ``iterator=None`` the data
position lives in ``meta`` (grain's iterator state restores only on the same process count)."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import sys
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grain
import orbax.checkpoint as ocp
from etils import epath

PyTree = Any

#: Suffix of a step directory that could not be read, set aside by :meth:`restore_newest`.
CORRUPT_SUFFIX = ".corrupt"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (unwritable directory, disk full); the checkpoints
    written before are kept."""


class CheckpointReadError(CheckpointError):
    """No checkpoint of the directory can be read."""


class _Quiet(logging.Filter):
    """Drop orbax's noise about failures the Checkpointer reports itself: orbax's ERROR records
    while a Checkpointer is open and its read-only-directory notice; and, once one was opened,
    what the reads and writes orbax abandoned report as they end (asyncio's "exception was never
    retrieved", orbax's coroutines' errors as they close, tensorstore's "Event loop is closed")."""

    def __init__(self) -> None:
        super().__init__()
        self.open = 0  # Checkpointers open
        self.package = str(Path(ocp.__file__).parent)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncio":  # about orbax's tasks, or writes to its directories?
            return "orbax" not in record.getMessage() + "".join(
                traceback.format_exception(*record.exc_info) if record.exc_info else "")
        if not record.pathname.startswith(self.package):
            return True
        read_only_notice = str(record.msg).startswith("Given directory is read only")
        return not (read_only_notice or self.open and record.levelno >= logging.ERROR)

    def install(self) -> None:
        for name in ("absl", "asyncio"):
            logging.getLogger(name).addFilter(self)  # a Filter is added at most once
        hook = sys.unraisablehook
        if getattr(hook, "quiet", None) is self:
            return

        def unraisable(u: Any) -> None:
            code = getattr(u.object, "cr_code", None)  # an abandoned orbax coroutine, closed
            closing = code is not None and code.co_filename.startswith(self.package)
            closed_loop = (type(u.exc_value) is RuntimeError
                           and str(u.exc_value) == "Event loop is closed")
            if not (closing or closed_loop):
                hook(u)

        unraisable.quiet = self
        sys.unraisablehook = unraisable


_QUIET = _Quiet()


def _first_line(e: BaseException) -> str:
    """``Type: first line`` of the error at the root of ``e``'s chain of causes."""
    while e.__cause__ is not None:
        e = e.__cause__
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def _os_reason(e: BaseException) -> str | None:
    """The OS error behind ``e`` ("No space left on device"), tensorstore's included."""
    while e is not None:
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
        code = re.search(r"os_error_code='(\d+)'", str(e))
        if code:
            return os.strerror(int(code.group(1)))
        e = e.__cause__ or e.__context__
    return None


def _release(*errors: BaseException) -> None:
    """Free now, quietly, the reads or writes that orbax abandoned on these failures
    (coroutines held by their frames), rather than at exit with a traceback each."""
    for e in errors:
        while e is not None:
            traceback.clear_frames(e.__traceback__)
            e = e.__cause__ or e.__context__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "coroutine ... was never awaited"
        gc.collect()


class Checkpointer:
    """orbax CheckpointManager (async, ``max_to_keep``) over items ``state``, ``data`` (the
    grain iterator position) and ``meta``.

    ``read_only=True`` (evaluation) creates and writes nothing, not even the directory;
    otherwise the directory is created and proved writable here, before any training, and stale
    temporary directories of an interrupted save are removed.
    """

    def __init__(self, directory: epath.PathLike, max_to_keep: int, *,
                 read_only: bool = False):
        self.directory = epath.Path(directory)
        self.read_only = read_only
        self._pending: int | None = None  # the step of the save in flight
        self._failed = False  # a CheckpointWriteError was raised
        self._closed = False
        if read_only:
            options = ocp.CheckpointManagerOptions(
                read_only=True, create=False, save_interval_steps=0,
                enable_async_checkpointing=False)
        else:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
                # created in save(): a failure raises there, not in a thread that times out
                async_options=ocp.AsyncOptions(create_directories_asynchronously=False))
        _QUIET.install()
        with self._writing(None):
            self.manager = ocp.CheckpointManager(self.directory, options=options)
            if not read_only and ocp.multihost.is_primary_host(0):
                probe = self.directory / f".write_test_{uuid.uuid4().hex}"
                probe.mkdir()
                probe.rmdir()
        _QUIET.open += 1

    # -- writing

    @contextlib.contextmanager
    def _writing(self, step: int | None, closing: bool = False) -> Iterator[None]:
        """Raise orbax's failure to write checkpoint ``step`` as one CheckpointWriteError,
        after removing the partial (temporary) step directory. While closing, an error after
        one already raised is the same failure and is not raised again."""
        try:
            yield
        except ocp.checkpoint_manager.StepAlreadyExistsError:
            raise
        except Exception as e:  # OSError, tensorstore's ValueError, orbax's TimeoutError
            if ocp.multihost.is_primary_host(0) and self.directory.is_dir():
                tmp = ocp.path.atomicity_types.TMP_DIR_SUFFIX
                for path in self.directory.glob(f"*{tmp}"):
                    with contextlib.suppress(OSError):
                        path.rmtree()
            _release(e)
            if closing and self._failed:
                return
            self._failed = True
            what = "checkpoint directory" if step is None else f"checkpoint of step {step} in"
            reason = _os_reason(e) or "write failed"
            raise CheckpointWriteError(
                f"cannot write the {what} {self.directory}: {reason} ({_first_line(e)}). "
                "Free disk space or fix its permissions, or choose another --workdir; the "
                "checkpoints already written there are kept."
            ) from e

    def save(self, step: int, state: PyTree, iterator: Any, meta: dict, force: bool = False):
        """Start saving checkpoint ``step`` (asynchronously). ``iterator``: a grain iterator
        whose position is saved too, or None (the position is in ``meta``). Raises
        CheckpointWriteError when it, or the previous save, cannot be written."""
        self.wait()
        items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(iterator)
        with self._writing(step):
            self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        self._pending = step

    def reached_preemption(self, step: int) -> bool:
        """Whether every process saves at ``step`` after a preemption notice (SIGTERM) to any of
        them (False on one process without ``jax.distributed``); call it on every process at
        every step."""
        return self.manager.reached_preemption(step)

    def wait(self) -> None:
        """Wait for the save in flight; CheckpointWriteError when it failed."""
        step, self._pending = self._pending, None
        with self._writing(step):
            self.manager.wait_until_finished()

    def close(self) -> None:
        """Wait for the save in flight (CheckpointWriteError when it failed) and release
        orbax's threads."""
        if self._closed:
            return
        self._closed = True
        step = self._pending
        try:
            self.wait()
        finally:
            try:
                with self._writing(step, closing=True):
                    self.manager.close()
            finally:
                _QUIET.open -= 1

    # -- reading

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def meta(self, step: int) -> dict:
        out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def restore(self, step: int, template: PyTree, iterator: Any = None) -> PyTree:
        """The state of checkpoint ``step`` (shaped and sharded as ``template``); the grain
        ``iterator``, when given, is set to the saved position in place."""
        items = {"state": ocp.args.StandardRestore(template)}
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(iterator)
        return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

    def newest_meta(self) -> tuple[int, dict] | None:
        """(step, metadata) of the newest checkpoint whose metadata reads, or None when there
        is no checkpoint. Unreadable ones are reported, not moved."""
        found = self._newest(lambda meta: None, lambda step, prepared: None, move=False)
        return None if found is None else found[:2]

    def restore_newest(self, build: Callable[[dict], tuple[PyTree, Any]]
                       ) -> tuple[int, PyTree, Any, dict] | None:
        """Restore the newest readable checkpoint: ``build(meta)`` gives its (state template,
        grain iterator or None); its own errors propagate. Returns (step, state, iterator, meta),
        or None for no checkpoint. Newer unreadable ones are renamed ``<step>.corrupt`` (unless
        read-only); CheckpointReadError when none reads."""
        found = self._newest(build, lambda step, built: self.restore(step, *built),
                             move=not self.read_only)
        if found is None:
            return None
        step, meta, (_, iterator), state = found
        return step, state, iterator, meta

    def _newest(self, prepare: Callable[[dict], Any], read: Callable[[int, Any], Any],
                move: bool) -> tuple[int, dict, Any, Any] | None:
        """(step, meta, prepare(meta), read(step, prepared)) of the newest checkpoint whose
        metadata and ``read`` succeed, or None when there is none. ``prepare``'s own errors
        propagate; the unreadable newer checkpoints are reported (see :meth:`_report`)."""
        skipped = []
        for step in reversed(self.manager.all_steps()):
            try:
                meta = self.meta(step)
            except Exception as e:  # noqa: BLE001 (unreadable: a missing file or item, bad JSON)
                skipped.append((step, e))
                continue
            prepared = prepare(meta)
            try:
                result = read(step, prepared)
            except Exception as e:  # noqa: BLE001 (orbax wraps tensorstore's read errors so)
                skipped.append((step, e))
                continue
            self._report(skipped, step, move=move)
            return step, meta, prepared, result
        self._report(skipped, None)
        return None

    def _report(self, skipped: list[tuple[int, BaseException]], used: int | None,
                move: bool = False) -> None:
        """Say which checkpoints were skipped and why; with ``move``, rename them
        ``<step>.corrupt`` so that orbax ignores them and the step can be saved again.
        Raises CheckpointReadError when none could be used (``used`` None)."""
        if not skipped:
            return
        _release(*(e for _, e in skipped))
        why = "; ".join(f"step {step}: {_first_line(e)}" for step, e in skipped)
        if used is None:
            raise CheckpointReadError(
                f"no checkpoint in {self.directory} can be read ({why}). Nothing was "
                "changed: move those step directories away, or choose another --workdir, to "
                "start afresh.")
        where = ""
        if move:
            if ocp.multihost.is_primary_host(0):
                names = [self._set_aside(step).name for step, _ in skipped]
                where = f"; renamed {', '.join(names)} (nothing deleted)"
            ocp.multihost.sync_global_processes("jaxgan_checkpoint_set_aside")
            self.manager.reload()
        if ocp.multihost.is_primary_host(0):
            print(f"warning: skipped unreadable checkpoint(s) in {self.directory} ({why})"
                  f"{where}; using step {used}", flush=True)

    def _set_aside(self, step: int) -> epath.Path:
        """Rename step directory ``step`` to ``<step>.corrupt`` (``.corrupt.1``, ... when
        taken): out of orbax's sight, nothing lost."""
        target = self.directory / f"{step}{CORRUPT_SUFFIX}"
        n = 0
        while target.exists():
            n += 1
            target = self.directory / f"{step}{CORRUPT_SUFFIX}.{n}"
        (self.directory / str(step)).rename(target)
        return target
