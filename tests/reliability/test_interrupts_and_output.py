"""Issue 16 case 9: Ctrl-C exits 130 saying how to resume; Lightning's false or noisy messages are
silenced; logs get a progress line every ~30 s; the encoder file has the mode of the other outputs;
overrides mix with options in any order and --debug works after the subcommand."""

from __future__ import annotations

import signal
import stat

import pytest
import torch
import yaml

from vidssl.cli import main
from vidssl.methods.byol import BYOL
from vidssl.progress import Heartbeat

PRESET = "byol_rho2_r3d18_demo_tiny"
SMALL = ["method.backbone_kwargs={width: 4}", "method.num_frames=4", "method.canvas=32", "method.crop_size=24",
         "method.proj_hidden_dim=32", "method.proj_dim=16", "method.pred_hidden_dim=32", "data.batch_size=4",
         "data.num_workers=0", "trainer.checkpoint_every=1", "trainer.log_every=1"]


def test_ctrl_c_exits_130_saying_how_to_resume_and_the_resume_is_quiet(demo_root, tmp_path, monkeypatch, capsys,
                                                                        caplog, recwarn):
    original = BYOL.compute_loss

    def interrupted(self, views, batch):
        if self.global_step == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main process
        return original(self, views, batch)

    monkeypatch.setattr(BYOL, "compute_loss", interrupted)
    out = tmp_path / "run"
    code = main(["pretrain", "--preset", PRESET, "--out", str(out), f"data.root={demo_root}", "max_steps=4", *SMALL])
    err = capsys.readouterr().err
    assert code == 130
    assert (f"vidssl: interrupted; stopped at step 2; the last checkpoint is step 2: resume with "
            f"`vidssl pretrain --resume --out {out}`") in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards
    monkeypatch.setattr(BYOL, "compute_loss", original)
    caplog.clear()
    # mid-epoch resume: exact (step-positioned samplers), so Lightning's "not resumable" warning is false
    assert main(["pretrain", "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err + caplog.text
    for noise in ("not resumable", "Previous log files", "litlogger", "Total FLOPs", "returned `None`",
                  "Skipping setting a default"):
        assert noise not in text, noise
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)]
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    # the exported encoder is readable like every other output (safetensors alone writes 0600)
    mode = stat.S_IMODE((out / "encoder.safetensors").stat().st_mode)
    assert mode == stat.S_IMODE((out / "config.yaml").stat().st_mode)


def test_overrides_mix_with_options_and_debug_works_after_the_subcommand(capsys):
    code = main(["pretrain", "--preset", PRESET, "max_steps=2", "--print-config", "optim.lr=0.3", "--debug"])
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert code == 0 and cfg["trainer"]["max_steps"] == 2 and cfg["optim"]["lr"] == 0.3
    with pytest.raises(SystemExit):  # anything else unknown is still an error
        main(["pretrain", "--preset", PRESET, "--print-config", "--nonsense"])
    assert "unrecognized arguments: --nonsense" in capsys.readouterr().err
    from vidssl.errors import ConfigError

    with pytest.raises(ConfigError):  # --debug after the subcommand: the traceback, not the one-liner
        main(["pretrain", "--preset", PRESET, "--print-config", "optim.lrr=1", "--debug"])


def test_heartbeat_prints_a_line_every_30_seconds():
    now = [0.0]
    lines = []
    beat = Heartbeat("test features", total=100, write=lines.append, clock=lambda: now[0])
    for step in range(100):
        now[0] += 1.0  # one second per item
        beat.advance()
    assert len(lines) == 3  # at 30, 60 and 90 s
    assert lines[0] == "test features: 30/100 (30 %), ~70 s left, 30 s elapsed"


def test_long_commands_use_the_heartbeat_when_output_is_not_a_terminal(monkeypatch):
    from vidssl import progress
    from vidssl.methods import train

    monkeypatch.setattr(progress, "is_terminal", lambda stream=None: False)
    assert isinstance(progress.progress_bar(10, "x", enabled=True), Heartbeat)
    monkeypatch.setattr(train, "is_terminal", lambda stream=None: False)
    from vidssl.methods.train import _trainer_kwargs, load_pretrain_config

    assert _trainer_kwargs(load_pretrain_config(PRESET))["enable_progress_bar"] is False
