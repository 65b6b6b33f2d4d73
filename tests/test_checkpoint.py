"""Checkpoints that cannot be written or read: an unwritable directory and a full disk stop
the run at once with one clear CheckpointWriteError (no temporary directory left, earlier
checkpoints kept); an unreadable checkpoint is skipped for the newest readable one and set
aside as ``<step>.corrupt`` (nothing deleted); a read-only Checkpointer creates nothing.

The write failures are injected (CI runs as root, where permissions do not deny anything):
``os.mkdir`` and ``open`` raising for paths under the checkpoint directory, or a real
``RLIMIT_FSIZE`` that makes tensorstore's array writes fail. They run in a subprocess with a
timeout (this file's ``__main__``), so a hang (orbax waited 300 s) fails with its log.
"""

import builtins
import contextlib
import errno
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_configs import tiny_dcgan

from jaxgan.checkpoint import Checkpointer, CheckpointReadError, CheckpointWriteError

TMP = ".orbax-checkpoint-tmp"


def tiny_state(step, n=1000):
    rng = np.random.default_rng(step)
    return {"w": jnp.asarray(rng.standard_normal(n), jnp.float32), "b": jnp.arange(3)}


def data_iterator():
    return iter(grain.MapDataset.range(100).to_iter_dataset())


def write_steps(directory, steps, max_to_keep=5):
    """Checkpoints ``steps``; at step s the iterator has yielded s items."""
    ckpt = Checkpointer(directory, max_to_keep)
    it, done = data_iterator(), 0
    for step in steps:
        for _ in range(step - done):
            next(it)
        done = step
        ckpt.save(step, tiny_state(step), it, {"step": step})
    ckpt.close()


def build(meta):
    return tiny_state(0), data_iterator()


def digest(directory):
    """{relative path: sha1} of every file under ``directory``."""
    return {str(p.relative_to(directory)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def assert_restored(found, step):
    got_step, state, it, meta = found
    assert (got_step, meta) == (step, {"step": step})
    np.testing.assert_array_equal(state["w"], tiny_state(step)["w"])
    assert next(it) == step  # the iterator is at the saved position


# ----------------------------------------------------------------------------------------------
# Write failures, in a subprocess (python tests/test_checkpoint.py SCENARIO DIR)


@contextlib.contextmanager
def failing_writes(directory, code, dirs=True):
    """``open`` for writing, and ``os.mkdir`` with ``dirs``, raise OSError(``code``) under
    ``directory``."""
    real_mkdir, real_open = os.mkdir, builtins.open
    inside = str(directory) + os.sep

    def error(path):
        return OSError(code, os.strerror(code), str(path))

    def mkdir(path, *args, **kwargs):
        if dirs and str(path).startswith(inside):
            raise error(path)
        return real_mkdir(path, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if str(file).startswith(inside) and any(c in mode for c in "wax+"):
            raise error(file)
        return real_open(file, mode, *args, **kwargs)

    os.mkdir, builtins.open = mkdir, open_
    try:
        yield
    finally:
        os.mkdir, builtins.open = real_mkdir, real_open


def attempt(fn):
    """The CheckpointWriteError message that ``fn()`` raises, or None."""
    try:
        fn()
    except CheckpointWriteError as e:
        return str(e)
    return None


def scenario_unwritable(d):
    write_steps(d, [1])
    before = digest(d)
    ckpt = Checkpointer(d, 3)  # opened while writable; then the directory stops being so
    out = {}
    with failing_writes(d, errno.EACCES):
        start = time.monotonic()
        out["save"] = attempt(lambda: (ckpt.save(2, tiny_state(2), data_iterator(), {}),
                                       ckpt.wait()))
        out["close"] = attempt(ckpt.close)
        out["reopen"] = attempt(lambda: Checkpointer(d, 3))  # the rerun: before training
        out["seconds"] = time.monotonic() - start
    out["kept"] = digest(d) == before
    out["entries"] = sorted(os.listdir(d))
    return out


def scenario_disk_full(d, fault):
    """Steps 1 and 2 written, then a full disk (``fault``: "fsize", a real limit on file size
    that tensorstore's array writes meet; "enospc", injected into Python's writes)."""
    write_steps(d, [1, 2], max_to_keep=2)
    before = digest(d)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if fault == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails (EFBIG) instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, hard))
        faults = contextlib.nullcontext()
    else:  # files, not directories: the step's temporary directory is made, then fails
        faults = failing_writes(d, errno.ENOSPC, dirs=False)
    big = tiny_state(3, n=200_000)  # 800 kB of noise: over the limit
    out = {"raised": []}
    ckpt = Checkpointer(d, 2)  # opened with space left
    with faults:
        for name, call in [("save3", lambda: ckpt.save(3, big, data_iterator(), {"step": 3})),
                           ("save4", lambda: ckpt.save(4, big, data_iterator(), {"step": 4})),
                           ("wait", ckpt.wait)]:
            message = attempt(call)
            if message:  # the run stops here
                out["raised"] = [name, message]
                break
        out["close"] = attempt(ckpt.close)
        out["after_first"] = sorted(os.listdir(d))

        def rerun():  # the disk still full
            again = Checkpointer(d, 2)
            try:
                again.save(3, big, data_iterator(), {"step": 3})
                again.wait()
            finally:
                with contextlib.suppress(CheckpointWriteError):
                    again.close()

        out["rerun"] = attempt(rerun)
    out["kept"] = digest(d) == before
    out["entries"] = sorted(os.listdir(d))
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space freed: it saves again
    ckpt = Checkpointer(d, 2)
    ckpt.save(3, big, data_iterator(), {"step": 3})
    ckpt.close()
    restored = Checkpointer(d, 2).restore(3, tiny_state(0, n=200_000))
    out["saved_after"] = bool(np.array_equal(restored["w"], big["w"]))
    out["final"] = sorted(os.listdir(d))
    return out


def scenario_training_disk_full(workdir):
    """A run to step 3, then a rerun to 9 on a disk that fills up: the save of step 6 fails in
    the background, and the run stops at the next save (step 9) with one error."""
    from jaxgan.experiments import dcgan

    c = tiny_dcgan()
    c.num_steps = 3
    dcgan.train_and_evaluate(c, str(workdir))
    before = digest(workdir / "checkpoints")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))  # the arrays are larger
    c.num_steps = 9
    out = {"error": attempt(lambda: dcgan.train_and_evaluate(c, str(workdir)))}
    out["kept"] = digest(workdir / "checkpoints") == before
    out["entries"] = sorted(os.listdir(workdir / "checkpoints"))
    return out


def run_scenario(name, directory, *args, timeout=90):
    """Run ``scenario_<name>`` in a subprocess; its result (JSON) and stderr."""
    cmd = [sys.executable, __file__, name, str(directory), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{name} hung past {timeout} s:\n{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_unwritable_checkpoint_directory_stops_at_once_with_one_clear_error(tmp_path):
    d = tmp_path / "checkpoints"
    out, stderr = run_scenario("unwritable", d)
    assert out["seconds"] < 30  # not orbax's 300 s wait for a directory never made
    for when in ("save", "reopen"):
        message = out[when]
        assert message is not None, when
        assert str(d) in message and "Permission denied" in message, message
        assert "--workdir" in message and "permissions" in message, message
    assert out["close"] is None  # the failure is reported once
    assert out["kept"] and out["entries"] == ["1"]  # no temporary directory, step 1 intact
    assert "Traceback" not in stderr, stderr


@pytest.mark.parametrize("fault", ["fsize", "enospc"])
def test_full_disk_raises_one_clear_error_and_keeps_earlier_checkpoints(tmp_path, fault):
    d = tmp_path / "checkpoints"
    out, stderr = run_scenario("disk_full", d, fault)
    reason = "File too large" if fault == "fsize" else "No space left on device"
    when, message = out["raised"]
    # tensorstore writes the arrays in the background: the next call says so; grain's
    # iterator position is written within save()
    assert when == ("save4" if fault == "fsize" else "save3"), out
    assert out["close"] is None, out  # once
    assert "step 3" in message and str(d) in message and reason in message, message
    assert "Free disk space" in message and "--workdir" in message, message
    assert out["rerun"] and reason in out["rerun"], out  # a rerun: the same clear error
    assert out["after_first"] == ["1", "2"], out  # no 3.orbax-checkpoint-tmp
    assert out["kept"] and out["entries"] == ["1", "2"], out  # untouched
    assert out["saved_after"] and out["final"] == ["2", "3"], out
    assert "Traceback" not in stderr, stderr


def test_training_on_a_full_disk_stops_at_the_next_save_with_one_error(tmp_path):
    out, stderr = run_scenario("training_disk_full", tmp_path, timeout=180)
    message = out["error"]
    assert message and "step 6" in message and "File too large" in message, out
    assert out["kept"] and out["entries"] == ["3"], out
    assert "Traceback" not in stderr, stderr


# ----------------------------------------------------------------------------------------------
# Unreadable checkpoints


def truncate_array(step_dir):
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    f = max(files, key=lambda p: p.stat().st_size)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def delete_meta(step_dir):
    (step_dir / "meta" / "metadata").unlink()


def garble_meta(step_dir):
    (step_dir / "meta" / "metadata").write_text('{"step": ')


def delete_data(step_dir):
    shutil.rmtree(step_dir / "data")


def empty(step_dir):  # an unfinished copy of a step
    shutil.rmtree(step_dir)
    step_dir.mkdir()


CORRUPTIONS = {"truncated array": (truncate_array, "ValueError: OUT_OF_RANGE"),
               "deleted meta": (delete_meta, "FileNotFoundError"),
               "garbled meta": (garble_meta, "JSONDecodeError"),
               "deleted data item": (delete_data, "KeyError"),
               "empty step directory": (empty, "KeyError")}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_unreadable_latest_checkpoint_falls_back_and_is_set_aside(tmp_path, capsys, kind):
    corrupt, error = CORRUPTIONS[kind]
    write_steps(tmp_path, [3, 6, 9])
    corrupt(tmp_path / "9")
    bad = digest(tmp_path / "9")
    ckpt = Checkpointer(tmp_path, 5)
    assert_restored(ckpt.restore_newest(build), 6)
    lines = [line for line in capsys.readouterr().out.splitlines() if "skipped" in line]
    assert len(lines) == 1 and "step 9" in lines[0] and error in lines[0], lines
    assert "9.corrupt" in lines[0] and "using step 6" in lines[0], lines
    # nothing lost, out of orbax's sight, and step 9 can be saved again
    assert digest(tmp_path / "9.corrupt") == bad
    assert ckpt.manager.all_steps() == [3, 6] and ckpt.latest_step() == 6
    it = data_iterator()
    for _ in range(9):
        next(it)
    ckpt.save(9, tiny_state(9), it, {"step": 9})
    ckpt.close()
    again = Checkpointer(tmp_path, 5)
    assert again.manager.all_steps() == [3, 6, 9]
    assert_restored(again.restore_newest(build), 9)
    again.close()


def test_several_unreadable_checkpoints_are_all_named(tmp_path, capsys):
    write_steps(tmp_path, [3, 6, 9])
    truncate_array(tmp_path / "9")
    delete_meta(tmp_path / "6")
    (tmp_path / "9.corrupt").mkdir()  # set aside before: the name is taken
    ckpt = Checkpointer(tmp_path, 5)
    assert_restored(ckpt.restore_newest(build), 3)
    ckpt.close()
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "skipped" in x]
    assert "step 9: ValueError" in line and "step 6: FileNotFoundError" in line, line
    assert sorted(os.listdir(tmp_path)) == ["3", "6.corrupt", "9.corrupt", "9.corrupt.1"]


def test_no_readable_checkpoint_is_a_clear_error_that_changes_nothing(tmp_path):
    write_steps(tmp_path, [3, 6])
    truncate_array(tmp_path / "6")
    delete_meta(tmp_path / "3")
    before = digest(tmp_path)
    ckpt = Checkpointer(tmp_path, 5)
    with pytest.raises(CheckpointReadError) as e:
        ckpt.restore_newest(build)
    ckpt.close()
    message = str(e.value)
    assert str(tmp_path) in message and "step 6: ValueError" in message, message
    assert "step 3: FileNotFoundError" in message and "--workdir" in message, message
    assert digest(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["3", "6"]


def test_build_errors_propagate_unchanged_and_set_nothing_aside(tmp_path):
    from jaxgan.experiments.runner import WorkdirError

    write_steps(tmp_path, [3, 6])
    delete_meta(tmp_path / "6")

    def refuse(meta):
        raise WorkdirError("holds a checkpoint of another model")

    ckpt = Checkpointer(tmp_path, 5)
    with pytest.raises(WorkdirError, match="another model"):
        ckpt.restore_newest(refuse)
    ckpt.close()
    assert sorted(os.listdir(tmp_path)) == ["3", "6"]


def test_newest_meta_skips_unreadable_metadata_without_moving_it(tmp_path, capsys):
    write_steps(tmp_path, [3, 6])
    delete_meta(tmp_path / "6")
    ckpt = Checkpointer(tmp_path, 5)
    assert ckpt.newest_meta() == (3, {"step": 3})
    ckpt.close()
    assert "step 6: FileNotFoundError" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["3", "6"]


def test_stale_temporary_directory_is_removed_when_opened_for_writing(tmp_path):
    write_steps(tmp_path, [3])
    stale = tmp_path / f"6{TMP}"  # a save killed midway
    shutil.copytree(tmp_path / "3", stale)
    reader = Checkpointer(tmp_path, 5, read_only=True)
    reader.close()
    assert stale.exists()
    ckpt = Checkpointer(tmp_path, 5)
    ckpt.save(6, tiny_state(6), data_iterator(), {"step": 6})
    ckpt.close()
    assert sorted(os.listdir(tmp_path)) == ["3", "6"]


# ----------------------------------------------------------------------------------------------
# Read-only


def test_read_only_creates_nothing(tmp_path):
    missing = tmp_path / "run" / "checkpoints"
    ckpt = Checkpointer(missing, 3, read_only=True)
    assert ckpt.latest_step() is None and ckpt.newest_meta() is None
    assert ckpt.restore_newest(build) is None
    ckpt.close()
    assert not (tmp_path / "run").exists()


def test_read_only_falls_back_without_writing_anything(tmp_path, capsys):
    write_steps(tmp_path, [3, 6])
    truncate_array(tmp_path / "6")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    ckpt = Checkpointer(tmp_path, 3, read_only=True)
    assert_restored(ckpt.restore_newest(build), 3)
    ckpt.close()
    assert "step 6: ValueError" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


# ----------------------------------------------------------------------------------------------
# A real run


def test_training_resumes_from_the_newest_readable_checkpoint(tmp_path, capsys):
    """A truncated array file in the latest checkpoint: the run resumes from the one before,
    ends as an uninterrupted run does, and keeps the bad checkpoint as 6.corrupt."""
    from jaxgan.experiments import dcgan

    c = tiny_dcgan()
    dcgan.train_and_evaluate(c, str(tmp_path / "run"))
    truncate_array(tmp_path / "run" / "checkpoints" / "6")
    capsys.readouterr()
    c.num_steps = 9
    resumed = dcgan.train_and_evaluate(c, str(tmp_path / "run"))
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "skipped" in x]
    assert "step 6: ValueError: OUT_OF_RANGE" in line and "using step 3" in line, line
    assert "at step 3" in out
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["3", "6", "6.corrupt", "9"]
    straight = dcgan.train_and_evaluate(c, str(tmp_path / "straight"))
    for a, b in zip(jax.tree_util.tree_leaves(resumed), jax.tree_util.tree_leaves(straight),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


if __name__ == "__main__":
    name, directory, *rest = sys.argv[1:]
    result = globals()[f"scenario_{name}"](Path(directory), *rest)
    print(json.dumps(result), flush=True)
