"""Issue 16 case 2: a non-finite loss stops the run (or skips up to N steps when allowed), the last good
checkpoint is kept, the command exits non-zero naming the step and what to change, and an encoder
with non-finite weights is neither exported nor evaluated."""

from __future__ import annotations

import csv

import pytest
import torch
from safetensors.torch import save_file

from vidssl.cli import main
from vidssl.errors import TrainingDiverged, UserError
from vidssl.methods.byol import BYOL
from vidssl.methods.train import load_pretrain_config, pretrain
from vidssl.models import build_random_encoder, save_encoder

SMALL = ["method.backbone_kwargs={width: 4}", "method.num_frames=4", "method.canvas=32", "method.crop_size=24",
         "method.proj_hidden_dim=32", "method.proj_dim=16", "method.pred_hidden_dim=32", "data.batch_size=4",
         "data.num_workers=0", "trainer.log_every=1", "trainer.progress_bar=false"]


def test_lr_1e6_stops_with_a_clear_error_and_writes_no_nan_files(demo_root, tmp_path, capsys):
    """The issue's reproduction through the CLI: optim.lr=1e6 -> NaN at step 2."""
    out = tmp_path / "run"
    code = main(["pretrain", "--preset", "byol_rho2_r3d18_demo_tiny", "--out", str(out), f"data.root={demo_root}",
                 "max_steps=6", "optim.lr=1e6", "trainer.checkpoint_every=1", *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "training diverged" in err and "step 2" in err and "optim.lr (now 1e+06)" in err
    assert "trainer.max_nonfinite_steps" in err and "(step 1), is kept" in err
    assert not (out / "encoder.safetensors").exists() and not (out / "checkpoints" / "best.ckpt").exists()
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["global_step"] == 1 and all(torch.isfinite(v).all() for v in last["state_dict"].values()
                                            if v.is_floating_point())


def _poison_at(monkeypatch, steps):
    """Make BYOL's loss NaN at the given optimiser steps (the rest of the step is the real one)."""
    original = BYOL.compute_loss

    def poisoned(self, views, batch):
        out = original(self, views, batch)
        if self.global_step in steps:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(BYOL, "compute_loss", poisoned)


def test_a_nan_step_stops_the_run_and_keeps_the_last_good_checkpoint(demo_root, tmp_path, monkeypatch):
    _poison_at(monkeypatch, {2})
    cfg = load_pretrain_config("byol_rho2_r3d18_demo_tiny", SMALL + [f"data.root={demo_root}", "max_steps=5",
                                                                     "trainer.checkpoint_every=1"])
    with pytest.raises(TrainingDiverged, match=r"training diverged at step 2: loss is nan") as info:
        pretrain(cfg, tmp_path / "run", log=lambda _: None)
    assert "\n" not in str(info.value)
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


def test_allowed_nan_steps_are_skipped_without_touching_weights_or_statistics(demo_root, tmp_path, monkeypatch):
    _poison_at(monkeypatch, {1, 3})
    cfg = load_pretrain_config("byol_rho2_r3d18_demo_tiny", SMALL + [f"data.root={demo_root}", "max_steps=5",
                                                                     "trainer.max_nonfinite_steps=2"])
    seen = {}

    from lightning.pytorch.callbacks import Callback

    class Record(Callback):  # the state before and after the poisoned step 1
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step in (1, 2):
                seen[trainer.global_step] = {k: v.detach().clone() for k, v in module.state_dict().items()}

    messages = []
    out = pretrain(cfg, tmp_path / "run", callbacks=[Record()], log=messages.append)
    for key, before in seen[1].items():  # parameters, EMA target and BN statistics unchanged by the skipped step
        assert torch.equal(before, seen[2][key]), key
    with open(out / "metrics.csv") as f:
        skipped = [float(r["train/nonfinite_steps"]) for r in csv.DictReader(f) if r.get("train/nonfinite_steps")]
    assert sorted(set(skipped)) == [1.0, 2.0]  # the running count of skipped steps
    assert any("skipped 2 steps whose loss was not finite" in m for m in messages)
    assert (out / "encoder.safetensors").is_file()
    _poison_at(monkeypatch, {1, 2, 3})  # one more than allowed
    with pytest.raises(TrainingDiverged, match="at step 3.*after 2 skipped non-finite steps"):
        pretrain(cfg, tmp_path / "run2", log=lambda _: None)


def test_non_finite_encoders_are_neither_exported_nor_evaluated(demo_root, tmp_path, capsys):
    encoder = build_random_encoder("r3d18_fgkv_tiny")
    with torch.no_grad():
        next(encoder.parameters())[0].fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="is not finite"):
        save_encoder(encoder, tmp_path / "encoder.safetensors", name="r3d18_fgkv_tiny")
    assert not (tmp_path / "encoder.safetensors").exists()
    # a NaN file written by something else is refused by every evaluation
    tensors = {k: v.contiguous() for k, v in encoder.state_dict().items()}
    save_file(tensors, str(tmp_path / "encoder.safetensors"), metadata={"backbone": "r3d18_fgkv_tiny", "kwargs": "{}"})
    code = main(["eval", "knn", "--checkpoint", str(tmp_path), "--data", str(demo_root), "--out", str(tmp_path / "knn"),
                 "--views", "demo_quick", "--no-cache", "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "non-finite weights" in err and "diverged" in err
    assert not (tmp_path / "knn" / "report.json").exists()
    from vidssl.eval.features import load_eval_encoder

    with pytest.raises(UserError, match="non-finite weights"):
        load_eval_encoder(tmp_path / "encoder.safetensors")


@pytest.mark.parametrize("checkpoint_every", [1, 10**6])
def test_deferred_check_on_gpu_stops_at_the_next_read_back_naming_the_first_bad_step(
        demo_root, tmp_path, monkeypatch, checkpoint_every):
    """On a GPU (skipping off) the finiteness check is recorded on the device and read back every
    trainer.log_every steps and before each checkpoint, so no step waits for the GPU. Forced on here
    on CPU: the run still stops with the first bad step, and no NaN checkpoint is written."""
    from vidssl.methods import guards

    monkeypatch.setattr(guards, "_defers", lambda method, loss: int(method.cfg.trainer.max_nonfinite_steps) == 0)
    _poison_at(monkeypatch, {2})
    overrides = [o for o in SMALL if not o.startswith("trainer.log_every")]
    cfg = load_pretrain_config("byol_rho2_r3d18_demo_tiny", overrides + [
        f"data.root={demo_root}", "max_steps=8", "trainer.log_every=4", f"trainer.checkpoint_every={checkpoint_every}"])
    with pytest.raises(TrainingDiverged, match=r"training diverged at step 2: the loss was not finite") as info:
        pretrain(cfg, tmp_path / "run", log=lambda _: None)
    found = 3 if checkpoint_every == 1 else 4  # the next checkpoint, or the next read-back step
    assert f"found at step {found}" in str(info.value) and "\n" not in str(info.value)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    if checkpoint_every == 1:
        state = torch.load(last, weights_only=True)
        assert state["global_step"] == 2 and all(torch.isfinite(v).all() for v in state["state_dict"].values()
                                                 if v.is_floating_point())
    assert not (tmp_path / "run" / "encoder.safetensors").exists()
