"""Every method on the shared core: its loss falls on a fixed batch, the engine's schedule drives its
optimiser groups, its encoder carries its input contract; and a two-stream method trains, is killed
and resumes to the same parameters as an uninterrupted run."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from vidssl.data.synthetic import synthetic_batch
from vidssl.methods import METHODS
from vidssl.methods.base import SSLMethod
from vidssl.methods.config import MethodConfig, pretrain_config_from_dict
from vidssl.methods.train import load_pretrain_config
from vidssl.optim import lr_factor

SMALL_VIDEO = {"backbone": "r3d18_fgkv_tiny", "backbone_kwargs": {"width": 4}, "num_frames": 4, "stride": 2,
               "canvas": 32, "crop_size": 24, "proj_hidden_dim": 32, "proj_dim": 16}
OPTIM = {"name": "adamw", "lr": 3e-3, "weight_decay": 0.0, "warmup_steps": 0, "warmup_start_lr": 0.0}


def method_config(name: str, **method):
    """A tiny config of method ``name`` (CPU, seconds)."""
    if name == "brave":
        cfg = load_pretrain_config("brave_va_tiny", [f"optim.{k}={v}" for k, v in OPTIM.items()])
        for key, value in {"proj_hidden_dim": 32, "proj_dim": 16, **method}.items():
            setattr(cfg.method, key, value)
        return cfg
    extra = {"byol": {"pred_hidden_dim": 32},
             "fgkvmem": {"num_slots": 8, "num_concepts": 12, "recon_hidden_dim": 16}}[name]
    return pretrain_config_from_dict({"method": {"name": name, **SMALL_VIDEO, **extra, **method}, "optim": OPTIM})


METHOD_CASES = {
    "byol": lambda: method_config("byol"),
    "byol_crop_from_frame": lambda: method_config("byol", crop_from_frame=True),
    "fgkvmem": lambda: method_config("fgkvmem"),
    "fgkvmem_kvmem": lambda: method_config("fgkvmem", use_concepts=False),
    "brave_va": lambda: method_config("brave"),
    "brave_vv": lambda: method_config("brave", broad=["video"]),
    "brave_vf": lambda: method_config("brave", broad=["flow"]),
}


def gdt_stica_config(name: str, **method):
    """A tiny GDT / STiCA config (issue 12): the small networks of tests/methods/test_gdt.py."""
    from test_gdt import SMALL_GDT, SMALL_STICA, SMALL_TEXT  # tests/methods is on sys.path (pytest rootdir-less import)

    small = {"gdt": SMALL_GDT, "gdt_text": SMALL_TEXT, "stica": SMALL_STICA}[name]
    return pretrain_config_from_dict({"method": {**small, **method}, "optim": OPTIM})


METHOD_CASES.update({
    # every hypothesis also trains in tests/methods/test_gdt.py::test_every_hypothesis_trains
    "gdt_basecase": lambda: gdt_stica_config("gdt", hypothesis="basecase"),
    "stica": lambda: gdt_stica_config("stica"),
    "gdt_text": lambda: gdt_stica_config("gdt_text", hypothesis="basecase"),
})


def fixed_batch(method, seed: int = 0) -> dict:
    return synthetic_batch(method.data_streams(), batch_size=8, seed=seed)


class Record(Callback):
    """Per step: the method's loss (without the online probe's) and every optimiser group's
    (name, lr, base_lr, scheduled) as the optimiser steps with them."""

    def __init__(self):
        self.losses, self.lrs = [], []

    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.lrs.append([(g.get("name"), g["lr"], g["base_lr"], g.get("scheduled", True))
                         for g in optimizer.param_groups])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


class SameAugmentation(Callback):
    """Reseeds the global RNG before every step, so every step draws the same augmentation: the views
    are then truly fixed and only the parameters change."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        torch.manual_seed(1234)


def fit_on(method, batches, steps: int, callbacks=()) -> None:
    trainer = L.Trainer(max_steps=steps, max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))
    # batch_size=None: the DataLoader hands over each prepared batch as it is
    trainer.fit(method, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None, collate_fn=lambda b: b))


@pytest.mark.parametrize("case", list(METHOD_CASES))
def test_loss_falls_on_a_fixed_batch(case):
    """A few dozen engine steps (augmentation, loss, optimiser, EMA) on one fixed batch lower the loss."""
    torch.manual_seed(0)
    method = METHODS[METHOD_CASES[case]().method.name](METHOD_CASES[case](), num_classes=3)
    batch = fixed_batch(method)
    record = Record()
    steps = 30
    fit_on(method, [batch] * steps, steps, [record, SameAugmentation()])
    assert len(record.losses) == steps and all(torch.isfinite(torch.tensor(record.losses)))
    first, last = sum(record.losses[:5]) / 5, sum(record.losses[-5:]) / 5
    assert last < 0.9 * first, (case, record.losses)


@pytest.mark.parametrize("case", list(METHOD_CASES))
def test_engine_schedule_drives_every_methods_groups(case):
    """Every scheduled group follows base_lr · lr_factor(step) (with its lr multiplier); the probe keeps its lr."""
    cfg = METHOD_CASES[case]()
    cfg.optim.warmup_steps, cfg.optim.warmup_start_lr = 3, 0.0
    torch.manual_seed(0)
    method = METHODS[cfg.method.name](cfg, num_classes=3)
    record = Record()
    steps = 8
    fit_on(method, [fixed_batch(method)] * steps, steps, [record])
    assert len(record.lrs) == steps
    for step, groups in enumerate(record.lrs):
        for name, lr, base_lr, scheduled in groups:
            if scheduled:
                assert lr == pytest.approx(base_lr * lr_factor(cfg.optim, step, steps, cfg.trainer.max_epochs)), (name, step)
            else:
                assert name == "probe" and lr == pytest.approx(cfg.method.probe_lr)
    bases = {name: base for name, _, base, _ in record.lrs[0]}
    if cfg.method.name == "brave":  # the tiny presets' predictor lr ×10 (AdamW)
        assert bases["predictor_lars"] == pytest.approx(10 * bases["main_lars"])
    assert record.lrs[0][0][1] == 0.0 and record.lrs[3][0][1] == pytest.approx(record.lrs[3][0][2])


@pytest.mark.parametrize("name, mean, views", [("byol", 0.45, "fgkvmem"), ("fgkvmem", 0.45, "fgkvmem"),
                                               ("brave", 0.0, "brave")])
def test_every_method_states_its_input_contract(name, mean, views):
    method = METHODS[name](method_config(name, eval_views=""), num_classes=0)  # "": the method's own views
    contract = method.input_contract()
    assert contract.mean == (mean,) * 3 and contract.eval_views == views and contract.modality == "video"
    assert (contract.num_frames, contract.crop_size) == (method.cfg.method.num_frames, method.cfg.method.crop_size)
    assert method.hparams["encoder"]["contract"] == contract.to_dict()


def test_views_are_named_and_augment_must_return_a_dict():
    method = METHODS["byol"](method_config("byol"), num_classes=0)
    views = method.make_views(fixed_batch(method))
    assert set(views) == {"clip_1", "clip_2"}
    method.augment = lambda batch: [views["clip_1"], views["clip_2"]]
    with pytest.raises(TypeError, match="must return a dict of named views"):
        method.make_views(fixed_batch(method))


def test_grad_mult_scales_the_groups_gradients():
    method = METHODS["byol"](method_config("byol"), num_classes=0)
    groups = method.param_groups()
    groups[0]["grad_mult"] = 0.0
    opt = torch.optim.SGD([{**g, "lr": 0.1} for g in groups])
    for p in method.parameters():
        p.grad = torch.ones_like(p)
    method.on_before_optimizer_step(opt)
    assert all(float(p.grad.abs().sum()) == 0 for p in groups[0]["params"])
    assert all(float(p.grad.abs().min()) == 1 for p in groups[1]["params"])


# ---------------------------------------------------------------- a two-stream method


@dataclass
class TwoStreamConfig(MethodConfig):
    name: str = "two_stream_toy"
    backbone: str = "r3d18_fgkv_tiny"
    image_canvas: int = 24


class TwoStreamToy(SSLMethod):
    """A video clip from the primary stream and a still image from a second stream, every step
    (BEVT's shape): the video encoder's embedding is pulled towards a projection of the image."""

    Config = TwoStreamConfig

    def build(self):
        self.image_head = nn.Linear(3, self.embed_dim)

    def data_streams(self):
        from vidssl.data.module import DataStream
        from vidssl.data.sampling import RandomClipPlan, ViewSpec

        m = self.cfg.method
        video = RandomClipPlan(ViewSpec("clip", num_frames=m.num_frames, stride=m.stride, canvas=(m.canvas, m.canvas)))
        image = RandomClipPlan(ViewSpec("still", kind="image", canvas=(m.image_canvas, m.image_canvas)))
        return {"video": DataStream(video, self.cfg.data), "image": DataStream(image, self.cfg.stream_data("image"))}

    def augment(self, batch):
        from vidssl.data.transforms import ToFloatClip

        clip = ToFloatClip()(batch["video"]["clips"]["clip"])
        still = batch["image"]["clips"]["still"].float() / 255  # B×H×W×C
        return {"clip": clip * torch.rand(clip.shape[0], 1, 1, 1, 1), "still": still}

    def compute_loss(self, views, batch):
        emb = self.encoder(views["clip"])
        target = self.image_head(views["still"].mean(dim=(1, 2))).mean(dim=0, keepdim=True)  # the streams' batches differ
        return {"loss": (emb - target).pow(2).mean(), "embedding": emb}


def _folder_dataset(source, dest, count: int):
    """A second dataset (ROOT/train/CLASS/*.mp4 layout) from ``count`` videos of ``source``."""
    videos = sorted(source.rglob("*.mp4"))[:count]
    for i, video in enumerate(videos):
        target = dest / "train" / f"class{i % 2}" / video.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(video, target)
    return dest


class Killed(Exception):
    pass


class KillAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step >= self.step:
            raise Killed


class SeenBatches(Callback):
    def __init__(self):
        self.seen = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen[trainer.global_step] = {name: b["index"].tolist() for name, b in batch.items()}


def test_two_stream_method_resumes_to_the_same_parameters(demo_root, tmp_path, monkeypatch):
    """Two manifests, two loaders combined per step; the secondary stream (7 items, batches of 2) cycles
    through its own passes; kill at step 5 and resume = the uninterrupted run, batch for batch."""
    from vidssl.methods.train import pretrain

    monkeypatch.setitem(METHODS, "two_stream_toy", TwoStreamToy)
    images = _folder_dataset(demo_root, tmp_path / "images", 7)
    cfg = pretrain_config_from_dict({
        "method": {"name": "two_stream_toy", "backbone_kwargs": {"width": 4}, "num_frames": 4, "stride": 2,
                   "canvas": 32, "crop_size": 24},
        "data": {"root": str(demo_root), "batch_size": 4, "num_workers": 0},
        "streams": {"image": {"root": str(images), "batch_size": 2, "num_workers": 0, "split": "all"}},
        "optim": {"name": "sgd", "lr": 0.05, "warmup_steps": 0},
        "trainer": {"max_steps": 9, "checkpoint_every": 1, "log_every": 1, "progress_bar": False},
    })
    whole_seen = SeenBatches()
    whole = pretrain(cfg, tmp_path / "whole", callbacks=[whole_seen], log=lambda _: None)
    with pytest.raises(Killed):
        pretrain(cfg, tmp_path / "killed", callbacks=[KillAt(5)], log=lambda _: None)
    resumed_seen = SeenBatches()
    pretrain(cfg, tmp_path / "killed", resume=True, callbacks=[resumed_seen], log=lambda _: None)

    assert set(resumed_seen.seen) == set(range(5, 9))
    for step, seen in resumed_seen.seen.items():
        assert seen == whole_seen.seen[step], step
    # the secondary stream cycled across its passes (3 batches of 2 per pass) within one primary epoch
    image_batches = [tuple(whole_seen.seen[s]["image"]) for s in range(9)]
    assert len(set(image_batches[:3])) == 3 and image_batches[3] != image_batches[0]
    a = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    b = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert a["global_step"] == b["global_step"] == 9
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value.float(), b["state_dict"][key].float(), atol=1e-6, rtol=0), key


def test_a_missing_second_stream_says_what_to_set(demo_root, tmp_path, monkeypatch):
    from vidssl.errors import ConfigError
    from vidssl.methods.train import pretrain

    monkeypatch.setitem(METHODS, "two_stream_toy", TwoStreamToy)
    cfg = pretrain_config_from_dict({"method": {"name": "two_stream_toy"}, "data": {"root": str(demo_root)}})
    with pytest.raises(ConfigError, match=r"stream 'image': set streams.image.root=PATH"):
        pretrain(cfg, tmp_path / "run", log=lambda _: None)
