"""End-to-end pretraining on the embedded dataset (CPU): smoke runs, the run directory, exact resume."""

from __future__ import annotations

import csv

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from vidssl.errors import ConfigError, DataError
from vidssl.methods.train import load_pretrain_config, pretrain

SMALL = ["method.backbone_kwargs={width: 4}", "method.num_frames=4", "method.stride=2", "method.canvas=32",
         "method.crop_size=24", "method.proj_hidden_dim=32", "method.proj_dim=16", "data.batch_size=4",
         "data.num_workers=0", "trainer.checkpoint_every=1", "trainer.log_every=1", "trainer.progress_bar=false"]
HEADS = {"byol": ["method.pred_hidden_dim=32"],
         "fgkvmem": ["method.num_slots=16", "method.num_concepts=16", "method.recon_hidden_dim=16"]}
PRESETS = {"byol": "byol_rho2_r3d18_demo_tiny", "fgkvmem": "fgkvmem_full_r3d18_demo_tiny"}


def small_config(name, demo_root, steps):
    return load_pretrain_config(PRESETS[name], SMALL + HEADS[name] + [f"data.root={demo_root}", f"max_steps={steps}"])


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", ["byol", "fgkvmem"])
def test_smoke_train_writes_run_directory(name, demo_root, tmp_path):
    out = pretrain(small_config(name, demo_root, 3), tmp_path / name, log=lambda _: None)
    assert {"config.yaml", "metrics.csv", "encoder.safetensors", "checkpoints"} <= {p.name for p in out.iterdir()}
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "checkpoints" / "best.ckpt").is_file()
    rows = [r for r in _rows(out / "metrics.csv") if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == [0, 1, 2]
    # the online probe's accuracy on a batch of 4 labelled clips is a multiple of 1/4
    assert all(r["probe/acc"] != "" and (4 * float(r["probe/acc"])).is_integer() for r in rows)
    # the collapse monitor is logged (every trainer.monitor_every steps; step 0 included)
    monitored = [r for r in _rows(out / "metrics.csv") if r.get("monitor/embedding_std")]
    assert monitored and all(0.0 < float(r["monitor/embedding_std"]) for r in monitored)
    assert all(1.0 <= float(r["monitor/effective_rank"]) <= 4.0 for r in monitored)  # at most min(B, D) = 4
    # best.ckpt is chosen on the epoch-mean probe accuracy, not on one batch
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
    monitors = [state["monitor"] for key, state in best["callbacks"].items() if "ModelCheckpoint" in key]
    assert "probe/acc_epoch" in monitors
    # the encoder carries its input contract
    from vidssl.models import load_encoder as _load

    contract = _load(out).input_contract
    assert contract is not None and contract.mean == (0.45,) * 3 and contract.eval_views == "demo"
    assert (contract.num_frames, contract.stride, contract.canvas, contract.crop_size) == (4, 2, 32, 24)
    assert contract.input_transform == ""  # SMALL replaces the preset's residual frames by {width: 4}
    assert all(torch.isfinite(torch.tensor(float(r["train/loss"]))) for r in rows)
    # the checkpoint loads without pickled code and names the encoder
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["hyper_parameters"]["encoder"]["name"] == "r3d18_fgkv_tiny"
    assert any(k.startswith("encoder.") for k in ckpt["state_dict"])
    from vidssl.models import load_encoder

    for source in (out, out / "checkpoints" / "last.ckpt"):
        encoder = load_encoder(source)
        assert torch.equal(encoder.state_dict()["stem.conv.weight"], ckpt["state_dict"]["encoder.stem.conv.weight"])


class Killed(Exception):
    pass


class _Kill(Callback):
    """Simulates a killed process: raises once ``step`` optimiser steps are done and checkpointed
    (at the start of the next batch: Lightning runs checkpoint callbacks last in a hook)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step >= self.step:
            raise Killed


def test_killed_run_resumes_to_the_same_parameters(demo_root, tmp_path):
    steps, kill_at = 6, 3
    cfg = small_config("fgkvmem", demo_root, steps)
    whole = pretrain(cfg, tmp_path / "whole", log=lambda _: None)
    with pytest.raises(Killed):
        pretrain(cfg, tmp_path / "killed", callbacks=[_Kill(kill_at)], log=lambda _: None)
    killed = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert killed["global_step"] == kill_at
    with pytest.raises(ConfigError, match="already holds a run"):
        pretrain(cfg, tmp_path / "killed", log=lambda _: None)
    pretrain(cfg, tmp_path / "killed", resume=True, log=lambda _: None)

    a = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    b = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert a["global_step"] == b["global_step"] == steps
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-5), key
    losses = {r["step"]: r["train/loss"] for r in _rows(whole / "metrics.csv") if r.get("train/loss")}
    resumed = {r["step"]: r["train/loss"] for r in _rows(tmp_path / "killed" / "metrics.csv") if r.get("train/loss")}
    assert sorted(map(int, resumed)) == list(range(steps))  # rows before the kill kept, none twice
    for step, value in resumed.items():
        assert float(value) == pytest.approx(float(losses[step]), abs=1e-5)


def test_resume_without_checkpoint_is_an_error(demo_root, tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint"):
        pretrain(small_config("byol", demo_root, 1), tmp_path / "none", resume=True, log=lambda _: None)


def test_missing_data_root_is_an_error(tmp_path):
    cfg = load_pretrain_config("byol_rho2_r3d18_ucf101", [f"data.root={tmp_path / 'nowhere'}"])
    with pytest.raises(DataError, match="does not exist"):
        pretrain(cfg, tmp_path / "run", log=lambda _: None)


def test_demo_preset_generates_a_missing_dataset(tmp_path):
    root = tmp_path / "demo"
    cfg = load_pretrain_config(PRESETS["byol"], SMALL + HEADS["byol"] + [f"data.root={root}", "max_steps=1",
                                                                         "data.demo_size=tiny"])
    messages = []
    pretrain(cfg, tmp_path / "run", log=messages.append)
    assert any("generating the embedded demo dataset" in m for m in messages)
    assert (root / "classInd.txt").is_file() or any(root.rglob("classInd.txt"))
    assert (tmp_path / "run" / "encoder.safetensors").is_file()


def test_unreadable_training_videos_are_listed_in_the_run_directory(demo_root, tmp_path):
    """A corrupt video is skipped in training, and the run says which one (skipped_videos.json)."""
    import json
    import shutil

    root = tmp_path / "data"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns("vidssl_manifest.json", ".vidssl_*"))
    victim = sorted(root.rglob("*.mp4"))[0]
    victim.write_bytes(b"not a video at all" * 100)
    cfg = load_pretrain_config(PRESETS["byol"], SMALL + HEADS["byol"] + [f"data.root={root}", "max_steps=2",
                                                                         "data.split=all"])
    out = pretrain(cfg, tmp_path / "run", log=lambda _: None)
    skipped = json.loads((out / "skipped_videos.json").read_text())
    assert list(skipped) == [str(victim)] and skipped[str(victim)]


def test_repeated_augmentation_decodes_once_and_doubles_the_rows(demo_root, tmp_path):
    """``data.repeats=2``: each video is decoded once and gives two samples (VideoMAE/AVION's repeated
    augmentation); the method sees batch_size × repeats rows, labels repeated per video."""

    class Rows(Callback):
        def __init__(self):
            self.rows, self.labels = [], []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.rows.append(int(batch["video"]["clips"]["clip_1"].shape[0]))
            self.labels.append(batch["video"]["label"].tolist())

    rows = Rows()
    cfg = small_config("byol", demo_root, 2)
    cfg.data.repeats = 2
    pretrain(cfg, tmp_path / "run", callbacks=[rows], log=lambda _: None)
    assert rows.rows == [8, 8]
    for labels in rows.labels:
        assert labels[0::2] == labels[1::2]  # the two samples of one video sit side by side


def test_gradient_accumulation_counts_optimiser_steps_and_resumes_exactly(demo_root, tmp_path):
    """trainer.accumulate_grad_batches=2: each optimiser step consumes two loader batches; a run killed
    after 2 steps resumes at batch 4 of its data and ends with the same weights as an unbroken run."""
    from vidssl.methods.resume import check_resume_changes

    steps, kill_at = 4, 2
    cfg = small_config("byol", demo_root, steps)
    cfg.trainer.accumulate_grad_batches = 2
    whole = pretrain(cfg, tmp_path / "whole", log=lambda _: None)
    a = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert a["global_step"] == steps
    (data_state,) = [v for k, v in a.items() if k.endswith("StreamDataModule")]
    assert data_state["position"] == 2 * steps  # batches delivered, not optimiser steps
    with pytest.raises(Killed):
        pretrain(cfg, tmp_path / "killed", callbacks=[_Kill(kill_at)], log=lambda _: None)
    pretrain(cfg, tmp_path / "killed", resume=True, log=lambda _: None)
    b = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert b["global_step"] == steps
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-5), key
    other = small_config("byol", demo_root, steps)
    with pytest.raises(ConfigError, match="trainer.accumulate_grad_batches"):
        check_resume_changes(cfg, other, tmp_path / "killed")


def test_activation_checkpointing_trains_to_the_same_weights(demo_root, tmp_path):
    """trainer.activation_checkpointing=true given as an override reaches the encoder of a real run; two
    steps end with exactly the plain run's weights, EMA target and BatchNorm running statistics."""
    from vidssl.models.activation_checkpointing import is_checkpointed

    class Seen(Callback):
        blocks = 0

        def on_train_start(self, trainer, pl_module):
            Seen.blocks = sum(is_checkpointed(m) for m in pl_module.encoder.modules())

    runs = {}
    for option in ("false", "true"):
        cfg = load_pretrain_config(PRESETS["byol"], SMALL + HEADS["byol"] + [
            f"data.root={demo_root}", "max_steps=2", f"trainer.activation_checkpointing={option}"])
        out = pretrain(cfg, tmp_path / option, callbacks=[Seen()], log=lambda _: None)
        runs[option] = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
        assert Seen.blocks == (8 if option == "true" else 0)
    plain, checkpointed = runs["false"]["state_dict"], runs["true"]["state_dict"]
    assert plain.keys() == checkpointed.keys()
    for key, value in plain.items():
        assert torch.equal(value, checkpointed[key]), key
    assert any("running_mean" in key for key in plain)
