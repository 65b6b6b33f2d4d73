"""Mistakes a user makes at the command line get a clear error, or the fix they can type,
before any work is done: --help, config files, evaluation and translate arguments."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxgan import evaluate
from jaxgan.configs import dcgan as dcgan_cfg
from jaxgan.configs import pix2pix as pix2pix_cfg
from jaxgan.experiments import _shared, cli, runner, translate


def entry_point(family, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", f"jaxgan.experiments.{family}", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_help_lists_the_entry_points_flags_and_show_config_prints_the_fields():
    out = entry_point("pix2pix", "--help")
    assert out.returncode == 0, out.stderr
    for flag in ("--config:", "--workdir:", "--mode:", "--show_config", "--input:", "--output:",
                 "--config.<field>=<value>"):
        assert flag in out.stdout, flag
    shown = entry_point("dcgan", "--show_config", "--config.num_steps=7")
    assert shown.returncode == 0, shown.stderr
    assert "num_steps: 7" in shown.stdout and "skip_corrupt: false" in shown.stdout


def test_another_familys_config_file_is_named_without_a_traceback():
    out = entry_point("dcgan", f"--config={cli.config_file('pix2pix')}")
    assert out.returncode == 2
    assert "is not a dcgan config" in out.stderr
    assert "python -m jaxgan.experiments.pix2pix --config=" in out.stderr
    assert "Traceback" not in out.stderr


def test_config_files_that_do_not_load_name_the_problem(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config(:\n")
    with pytest.raises(ValueError, match=r"broken.py has a syntax error at line 1"):
        cli.load_config_file(str(broken))
    bare = tmp_path / "bare.py"
    bare.write_text("x = 1\n")
    with pytest.raises(TypeError, match=r"bare.py has no get_config\(\)"):
        cli.load_config_file(str(bare))
    failing = tmp_path / "failing.py"
    failing.write_text("import no_such_module_here\n")
    with pytest.raises(ValueError, match=r"failing.py failed to run: ModuleNotFoundError"):
        cli.load_config_file(str(failing))


def test_named_configs_are_of_their_family():
    from pathlib import Path

    for f in sorted((Path(__file__).parents[1] / "experiments" / "configs").glob("*.py")):
        family = next(name for name in cli.FAMILIES if f.name.startswith(name))
        cli.check_family(cli.load_config_file(str(f)), family, str(f))


def test_naming_a_generator_drops_the_config_files_depth_for_it():
    c = pix2pix_cfg.get_config()
    assert c.model.num_downs == 6  # the CPU default's U-Net for 64x64 crops
    notes = cli.reset_generator_depth(c, ["--config.model.generator=unet_256"])
    assert c.model.num_downs is None and "num_downs=6" in notes[0]
    from jaxgan.train import pix2pix

    with c.unlocked():
        c.model.generator = "unet_256"
    assert pix2pix.build_models(c)[0].num_downs == 8
    c = pix2pix_cfg.get_config()
    assert cli.reset_generator_depth(
        c, ["--config.model.generator=unet_256", "--config.model.num_downs=7"]) == []
    assert c.model.num_downs == 6  # the override itself is applied by absl afterwards


def test_skip_corrupt_is_a_config_field_the_cli_accepts(tmp_path):
    c = dcgan_cfg.get_config()
    cli.check_overrides(c, ["--config.data.skip_corrupt=True", "--config.data.download=True"])
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 50 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "bad.png").write_bytes(b"not an image")
    c.data.source, c.image_size, c.channels = f"folder:{folder}", 16, 3
    c.data.skip_corrupt = True
    batch = next(iter(_shared.make_loader(c, split="train", training=False, batch_size=3,
                                          image_size=16, channels=3)))
    assert batch["image"].shape == (3, 16, 16, 3)


def test_evaluate_refuses_too_few_images_and_creates_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--workdir", str(tmp_path), "--num_images", "0"])
    assert e.value.code == 2 and "--num_images must be at least 2" in capsys.readouterr().err
    missing = tmp_path / "no_such_run"
    assert evaluate.main(["--workdir", str(missing)]) == 2
    assert "no such workdir" in capsys.readouterr().err
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert evaluate.main(["--workdir", str(empty)]) == 2
    assert list(empty.iterdir()) == []


def test_fid_without_weights_names_the_flags():
    c = dcgan_cfg.get_config()
    with pytest.raises(ValueError, match=r"--inception=weights.npz.*--config.eval_inception"):
        _shared.run_evaluation(c, lambda key, n: None, None, 0, metrics="fid", num_images=4)
    c.eval_every, c.eval_metrics = 10, "swd,fid"
    with pytest.raises(ValueError, match=r"--config.eval_inception=path/to/weights.npz"):
        runner.check_loop_config(c)
    c.eval_metrics = "swd,fdi"
    with pytest.raises(ValueError, match=r"unknown eval_metrics \['fdi'\]"):
        runner.check_loop_config(c)


def test_translate_output_that_is_a_file_and_corrupt_inputs(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8)).save(src / f"x{i}.png")
    (src / "x9.png").write_bytes(b"\x89PNG truncated")
    taken = tmp_path / "taken.png"
    taken.write_text("x")

    def apply(x, key):
        return x

    with pytest.raises(FileExistsError, match=r"is a file, not a folder"):
        translate.translate_folder(apply, str(src), str(taken), image_size=16, channels=3)
    from jaxgan.data import CorruptImageError

    with pytest.raises(CorruptImageError, match=r"x9.png.*--config.data.skip_corrupt=True"):
        translate.translate_folder(apply, str(src), str(tmp_path / "out"), image_size=16,
                                   channels=3)
    n = translate.translate_folder(apply, str(src), str(tmp_path / "out2"), image_size=16,
                                   channels=3, skip_corrupt=True)
    assert n == 2 and "skipped 1 unreadable" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["x0.png", "x1.png"]


def test_translate_torch_flags_without_a_checkpoint_and_a_missing_file(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "x.png")
    args = ["--mode=translate", f"--input={src}", f"--output={tmp_path / 'out'}",
            f"--workdir={tmp_path / 'wd'}"]
    out = entry_point("pix2pix", *args, "--netG=unet_128")
    assert out.returncode == 1 and "describe a --torch_checkpoint" in out.stderr
    out = entry_point("cyclegan", *args, f"--torch_checkpoint={tmp_path / 'nope.pth'}")
    assert out.returncode == 1 and "no such PyTorch checkpoint" in out.stderr
    assert "Traceback" not in out.stderr
