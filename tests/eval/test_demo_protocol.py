"""The demo feeds both encoders as the pretrained encoder's input contract says, and reuses only a
pretraining run made with the very config it would run now."""

from pathlib import Path

import pytest
from torch import nn

from vidssl.config import save_yaml, to_dict
from vidssl.errors import UserError
from vidssl.eval.demo import DEMO_SETTINGS, check_previous_run, config_differences, demo_protocol, pretrain_config
from vidssl.models.contract import InputContract


def with_contract(contract):
    module = nn.Identity()
    module.input_contract = contract
    return module


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (0.45, 0.225)])  # BraVe, the BYOL family
def test_demo_protocol_follows_the_contract(mean, std):
    contract = InputContract(mean=(mean,) * 3, std=(std,) * 3, num_frames=6, stride=3, canvas=40, crop_size=32,
                             eval_views="demo")
    choice = demo_protocol(DEMO_SETTINGS["full"], with_contract(contract))
    p = choice.protocol
    assert (p.name, p.num_frames, p.stride, p.canvas, p.crop_size) == ("demo", 6, 3, (40, 40), 32)
    assert p.mean == (mean,) * 3 and p.std == (std,) * 3
    assert choice.record()["input_contract"] == contract.to_dict()
    quick = demo_protocol(DEMO_SETTINGS["quick"], with_contract(contract)).protocol
    assert (quick.name, quick.temporal_clips, quick.num_frames, quick.crop_size) == ("demo_quick", 1, 6, 32)


def test_demo_protocol_refuses_an_encoder_without_a_contract():
    with pytest.raises(UserError, match="carries no input contract .* delete runs/old or choose another --out"):
        demo_protocol(DEMO_SETTINGS["full"], nn.Identity(), "runs/old")


# ----------------------------------------------------------------------------- reuse only the same config
CONFIG = {"method": {"name": "byol", "crop_scale": [0.4, 1.0], "backbone_kwargs": {"width": 8}},
          "data": {"root": "data/demo", "demo_seed": 0}, "optim": {"lr": 1e-3, "betas": [0.9, 0.999]},
          "trainer": {"seed": 0, "max_steps": 1000, "progress_bar": True}, "streams": {}}


def test_config_differences_names_the_keys():
    changed = {**CONFIG, "trainer": {**CONFIG["trainer"], "seed": 1, "progress_bar": False},
               "method": {**CONFIG["method"], "backbone_kwargs": {"width": 16}}}
    assert config_differences(CONFIG, changed) == ["method.backbone_kwargs.width", "trainer.seed"]
    assert config_differences(CONFIG, {**CONFIG, "data": {"root": "data/demo"}}) == ["data.demo_seed"]  # key missing
    assert config_differences(CONFIG, {**CONFIG, "optim": {"lr": 1e-3, "betas": (0.9, 0.999)}}) == []  # tuple = list


def test_check_previous_run(tmp_path):
    run_dir = tmp_path / "pretrain"
    assert check_previous_run(CONFIG, run_dir) is False  # nothing there
    run_dir.mkdir()
    assert check_previous_run(CONFIG, run_dir) is False  # empty
    (run_dir / "metrics.csv").write_text("step\n")
    with pytest.raises(UserError, match="holds no config.yaml.*choose another --out or delete"):
        check_previous_run(CONFIG, run_dir)
    save_yaml(CONFIG, run_dir / "config.yaml")
    assert check_previous_run(CONFIG, run_dir) is True
    quiet = {**CONFIG, "trainer": {**CONFIG["trainer"], "progress_bar": False}}
    assert check_previous_run(quiet, run_dir) is True  # progress bars change nothing the run computes
    other = {**CONFIG, "trainer": {**CONFIG["trainer"], "max_steps": 5}}
    with pytest.raises(UserError, match=r"another config \(differing keys: trainer.max_steps\); choose another --out "
                                        r"or delete .*pretrain"):
        check_previous_run(other, run_dir)


def test_real_pretraining_config_round_trips_through_config_yaml(tmp_path):
    """What `pretrain` saves (save_yaml of the resolved config) must compare equal when read back,
    or a finished run would never be reused."""
    cfg = pretrain_config(DEMO_SETTINGS["quick"], Path(tmp_path / "data"), "cpu", seed=1, progress=False, data_seed=3)
    assert (cfg.trainer.seed, cfg.data.demo_seed, cfg.data.demo_size) == (1, 3, "tiny")
    save_yaml(to_dict(cfg), tmp_path / "run" / "config.yaml")
    assert check_previous_run(cfg, tmp_path / "run") is True
    other_seed = pretrain_config(DEMO_SETTINGS["quick"], Path(tmp_path / "data"), "cpu", seed=2, progress=False,
                                 data_seed=3)
    with pytest.raises(UserError, match=r"\(differing keys: trainer.seed\);"):
        check_previous_run(other_seed, tmp_path / "run")
