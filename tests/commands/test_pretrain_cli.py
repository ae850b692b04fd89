"""``vidssl pretrain`` on the command line: listing presets, config errors, a short run."""

from __future__ import annotations

import csv

import yaml

from vidssl.cli import main
from vidssl.config import preset_names


def test_list_presets_prints_one_name_per_line(capsys):
    assert main(["pretrain", "--list-presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == preset_names()
    assert "fgkvmem_kvmem_r3d18_demo_tiny" in lines and "byol_rho2_r3d18_ucf101" in lines
    mine = [n for n in lines if n.startswith(("byol_", "fgkvmem_"))]
    assert all(n.count("_") >= 3 for n in mine)  # <method>_<variant>_<backbone>_<data>


def test_unknown_key_exits_2_naming_it(capsys):
    code = main(["pretrain", "--preset", "fgkvmem_full_r3d18_ucf101", "--out", "unused", "optim.weight_decy=0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown config key 'optim.weight_decy'" in err and "did you mean 'optim.weight_decay'" in err


def test_unknown_preset_and_missing_arguments(capsys):
    assert main(["pretrain", "--preset", "fgkvmem_full_r3d18_ucf10", "--out", "x"]) == 2
    assert "did you mean 'fgkvmem_full_r3d18_ucf101'" in capsys.readouterr().err
    assert main(["pretrain", "--out", "x"]) == 2
    assert "--preset is required" in capsys.readouterr().err
    assert main(["pretrain", "--preset", "byol_rho2_r3d18_demo_tiny"]) == 2
    assert "--out DIR is required" in capsys.readouterr().err


def test_print_config_applies_overrides(capsys):
    assert main(["pretrain", "--preset", "byol_rho2_r3d18_ucf101", "--print-config", "max_steps=5", "optim.lr=0.3"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["trainer"]["max_steps"] == 5 and cfg["optim"]["lr"] == 0.3 and cfg["method"]["name"] == "byol"


def test_pretrain_run_from_the_command_line(demo_root, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["pretrain", "--preset", "byol_rho2_r3d18_demo_tiny", "--out", str(out), f"data.root={demo_root}",
                 "max_steps=2", "data.batch_size=4", "data.num_workers=0", "method.backbone_kwargs={width: 4}",
                 "method.num_frames=4", "method.canvas=32", "method.crop_size=24", "method.proj_hidden_dim=32",
                 "method.proj_dim=16", "method.pred_hidden_dim=32", "trainer.log_every=1", "trainer.progress_bar=false"])
    assert code == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["trainer"]["max_steps"] == 2
    with open(out / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(rows) == 2 and "probe/acc" in rows[0]
    assert (out / "encoder.safetensors").is_file()
    assert "pretraining done" in capsys.readouterr().out
