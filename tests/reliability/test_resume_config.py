"""Issue 16 case 3: ``--resume`` reads the run's saved config; overrides given at resume time go on
top and are listed, and are refused when they change the data or the model."""

from __future__ import annotations

import os

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from vidssl.cli import main
from vidssl.errors import ConfigError
from vidssl.methods.resume import changed_keys, resume_config
from vidssl.methods.train import load_pretrain_config, pretrain

SMALL = ["method.backbone_kwargs={width: 4}", "method.num_frames=4", "method.canvas=32", "method.crop_size=24",
         "method.proj_hidden_dim=32", "method.proj_dim=16", "method.pred_hidden_dim=32", "data.batch_size=4",
         "data.num_workers=0", "trainer.log_every=1", "trainer.progress_bar=false", "trainer.checkpoint_every=1"]


class Killed(Exception):
    pass


class Kill(Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step >= self.step:
            raise Killed


@pytest.fixture()
def killed_run(demo_root, tmp_path, monkeypatch):
    """A run on ``demo_root`` (given as a RELATIVE data.root) killed after 2 of 4 steps."""
    monkeypatch.chdir(demo_root.parent)
    cfg = load_pretrain_config("byol_rho2_r3d18_demo_tiny", SMALL + [f"data.root={demo_root.name}", "max_steps=4"])
    out = tmp_path / "run"
    with pytest.raises(Killed):
        pretrain(cfg, out, callbacks=[Kill(2)], log=lambda _: None)
    return out


def test_readme_resume_without_data_root_continues_on_the_same_data(demo_root, killed_run, tmp_path, monkeypatch,
                                                                     capsys):
    # The README's example: no data.root on the resume line, started from another directory. Before
    # the fix this generated a new demo dataset under ./data/demo and trained on it.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code = main(["pretrain", "--preset", "byol_rho2_r3d18_demo_tiny", "--out", str(killed_run), "--resume",
                 "trainer.progress_bar=false"])
    assert code == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "the preset is not re-read" in out
    assert not (elsewhere / "data").exists()  # no dataset was generated
    saved = yaml.safe_load((killed_run / "config.yaml").read_text())
    assert saved["data"]["root"] == str(demo_root) and os.path.isabs(saved["data"]["root"])
    assert saved["method"]["num_frames"] == 4 and saved["trainer"]["max_steps"] == 4  # not the preset's
    assert torch.load(killed_run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_resume_overrides_are_listed_and_data_or_model_changes_refused(killed_run, tmp_path, capsys):
    cfg, changes = resume_config(killed_run, ["max_steps=6", "data.num_workers=1"])
    assert changes == {"data.num_workers": (0, 1), "trainer.max_steps": (4, 6)} and cfg.trainer.max_steps == 6
    for override, key in [("data.root=/elsewhere", "data.root"), ("method.num_frames=8", "method.num_frames"),
                          ("data.fold=2", "data.fold"), ("trainer.seed=3", "trainer.seed")]:
        with pytest.raises(ConfigError, match=f"cannot change the data or the model.*{key}"):
            resume_config(killed_run, [override])
    code = main(["pretrain", "--out", str(killed_run), "--resume", "method.backbone=r2plus1d18"])
    assert code == 2 and "method.backbone ('r3d18_fgkv_tiny' -> 'r2plus1d18')" in capsys.readouterr().err
    code = main(["pretrain", "--out", str(killed_run), "--resume", "--preset", "fgkvmem_kvmem_r3d18_demo_tiny"])
    assert code == 2 and "trains 'byol', not 'fgkvmem'" in capsys.readouterr().err
    code = main(["pretrain", "--out", str(killed_run), "--resume", "max_steps=5", "trainer.progress_bar=false"])
    assert code == 0 and "override trainer.max_steps: 4 -> 5" in capsys.readouterr().out
    assert yaml.safe_load((killed_run / "config.yaml").read_text())["trainer"]["max_steps"] == 5


def test_library_resume_refuses_another_config(killed_run, demo_root):
    cfg = load_pretrain_config("byol_rho2_r3d18_demo_tiny", SMALL + [f"data.root={demo_root}", "max_steps=4",
                                                                     "method.proj_dim=8"])
    with pytest.raises(ConfigError, match=r"method.proj_dim \(16 -> 8\)"):
        pretrain(cfg, killed_run, resume=True, log=lambda _: None)


def test_resume_needs_a_run_directory(tmp_path, capsys):
    assert main(["pretrain", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "config.yaml does not exist" in capsys.readouterr().err


def test_changed_keys_flattens_nested_configs():
    a = {"method": {"name": "byol", "backbone_kwargs": {"width": 4}}, "trainer": {"max_steps": 1}}
    b = {"method": {"name": "byol", "backbone_kwargs": {"width": 8}}, "trainer": {"max_steps": 1}}
    assert changed_keys(a, b) == {"method.backbone_kwargs.width": (4, 8)}
