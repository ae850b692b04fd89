"""The shared engine: config loading, EMA, probe isolation, sampler resume, gather helper, methods' losses."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from vidssl.config import preset_names
from vidssl.errors import ConfigError
from vidssl.methods import METHODS
from vidssl.distributed import DistributedBatchNorm, convert_sync_batchnorm, gather_with_grad
from vidssl.methods.base import collapse_stats, ema_update
from vidssl.methods.config import PretrainConfig, apply_pretrain_overrides, pretrain_config_from_dict
from vidssl.methods.train import load_pretrain_config

TINY_METHOD = {"backbone": "r3d18_fgkv_tiny", "num_frames": 4, "stride": 2, "canvas": 32, "crop_size": 24,
               "proj_hidden_dim": 32, "proj_dim": 16}


def tiny_config(name: str = "fgkvmem", **method) -> PretrainConfig:
    extra = {"num_slots": 8, "num_concepts": 12, "recon_hidden_dim": 16} if name == "fgkvmem" else {"pred_hidden_dim": 32}
    return pretrain_config_from_dict({"method": {"name": name, **TINY_METHOD, **extra, **method},
                                      "optim": {"name": "sgd", "lr": 0.1}})


def fake_batch(batch: int = 4, rho: int = 2, classes: int = 3) -> dict:
    """A one-stream batch as the DataModule delivers it: ``{stream: {"clips": {view: uint8}, ...}}``."""
    g = torch.Generator().manual_seed(0)
    clips = {f"clip_{k + 1}": torch.randint(0, 256, (batch, 4, 32, 32, 3), dtype=torch.uint8, generator=g)
             for k in range(rho)}
    return {"video": {"clips": clips, "label": torch.arange(batch) % classes, "index": torch.arange(batch)}}


def test_every_preset_loads():
    names = preset_names()
    assert {"fgkvmem_full_r3d18_ucf101", "byol_rho2_r3d18_ucf101", "fgkvmem_kvmem_r3d18_demo_tiny"} <= set(names)
    for name in [n for n in names if n.startswith(("byol_", "fgkvmem_"))]:
        cfg = load_pretrain_config(name)
        assert type(cfg.method) is METHODS[cfg.method.name].Config
        assert name.startswith(cfg.method.name + "_")


def test_seed_recipe_in_ucf101_preset():
    cfg = load_pretrain_config("fgkvmem_full_r3d18_ucf101")
    assert (cfg.method.num_frames, cfg.method.stride, cfg.method.crop_size) == (16, 4, 112)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.warmup_epochs) == ("lars", 1.2, 1e-6, 35)
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.method.num_slots, cfg.method.radius) == (64, 400, 4096, 16)


def test_unknown_keys_are_errors_with_suggestions():
    cfg = load_pretrain_config("fgkvmem_kvmem_r3d18_demo_tiny")
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr' \(did you mean 'optim.lr'\?\)"):
        apply_pretrain_overrides(cfg, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"'method.num_slot' \(did you mean 'method.num_slots'\?\)"):
        apply_pretrain_overrides(cfg, ["method.num_slot=8"])
    with pytest.raises(ConfigError, match="unknown method 'fgkvmen'.*did you mean 'fgkvmem'"):
        pretrain_config_from_dict({"method": {"name": "fgkvmen"}})
    with pytest.raises(ConfigError, match="needs a 'method' section"):
        pretrain_config_from_dict({"optim": {"lr": 1.0}})
    with pytest.raises(ConfigError, match="unknown config key 'method.bogus'"):
        pretrain_config_from_dict({"method": {"name": "byol", "bogus": 1}})
    with pytest.raises(ConfigError, match="unknown preset"):
        load_pretrain_config("fgkvmem_nope")
    short = apply_pretrain_overrides(cfg, ["max_steps=7", "optim.lr=0.5"])
    assert short.trainer.max_steps == 7 and short.optim.lr == 0.5


def test_ema_update_and_schedule_endpoints():
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    t0 = target.weight.detach().clone()
    ema_update(online, target, momentum=0.9)
    assert torch.allclose(target.weight, 0.9 * t0 + 0.1 * online.weight.detach())
    ema_update(online, target, momentum=1.0)  # m = 1 freezes the target
    ema_update(online, target, momentum=0.0)  # m = 0 copies the online weights
    assert torch.allclose(target.weight, online.weight)


def test_method_targets_are_frozen_ema_copies_and_probe_is_isolated():
    method = METHODS["fgkvmem"](tiny_config(), num_classes=3)
    assert not any(p.requires_grad for p in method.target_encoder.parameters())
    for (a, pa), (b, pb) in zip(method.encoder.named_parameters(), method.target_encoder.named_parameters()):
        assert a == b and torch.equal(pa, pb)
    groups = method.param_groups()
    assert {g["name"] for g in groups} == {"online", "online_no_decay"}
    assert all(set(g) >= {"lr_mult", "grad_mult", "weight_decay_mult", "lars"} for g in groups)
    online_ids = {id(p) for g in groups for p in g["params"]}
    assert not online_ids & {id(p) for p in method.probe.parameters()}
    assert not online_ids & {id(p) for p in method.target_encoder.parameters()}
    # the probe's loss reaches only the probe
    views = method.augment(fake_batch())
    out = method.compute_loss(views, fake_batch())
    labels = fake_batch()["video"]["label"]
    probe_loss, acc = method._probe_step(out["embedding"], labels)
    probe_loss.backward()
    assert all(p.grad is None for p in method.encoder.parameters())
    assert method.probe[-1].weight.grad is not None
    logits = method.probe(out["embedding"].detach())
    assert float(acc) == pytest.approx(float((logits.argmax(1) == labels).float().mean()))


@pytest.mark.parametrize("name", ["byol", "fgkvmem"])
def test_compute_loss_terms_and_gradients(name):
    torch.manual_seed(0)
    method = METHODS[name](tiny_config(name), num_classes=3)
    views = method.augment(fake_batch())
    assert set(views) == {"clip_1", "clip_2"} and views["clip_1"].shape == (4, 3, 4, 24, 24)
    out = method.compute_loss(views, fake_batch())
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert out["embedding"].shape == (4, method.embed_dim)
    if name == "fgkvmem":
        assert set(out) >= {"sim", "source_recon", "target_recon", "align"}
        expected = out["sim"] + 0.1 * out["source_recon"] + 0.1 * out["target_recon"] + 0.01 * out["align"]
        assert torch.allclose(out["loss"], expected)
        assert method.center.abs().sum() > 0  # the centre moved
    out["loss"].backward()
    assert method.encoder.stem.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in method.target_encoder.parameters())


def test_kvmem_variant_has_no_concept_heads():
    method = METHODS["fgkvmem"](tiny_config(use_concepts=False), num_classes=0)
    assert method.probe is None and not hasattr(method, "source_code")
    out = method.compute_loss(method.augment(fake_batch()), fake_batch())
    assert torch.allclose(out["loss"], out["sim"])


def test_gather_with_grad_single_process_is_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x


def test_convert_sync_batchnorm_keeps_state():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[1].running_mean.fill_(0.5)
    converted = convert_sync_batchnorm(net, "cpu")
    assert isinstance(converted[1], DistributedBatchNorm)
    assert torch.allclose(converted[1].running_mean, torch.full((4,), 0.5))
    x = torch.randn(6, 3)
    assert torch.allclose(converted(x), net(x), atol=1e-6)  # one process: plain batch norm


def test_default_augmentation_is_the_pyslowfast_view():
    from vidssl.data.transforms import byol_video_augment

    method = METHODS["byol"](tiny_config("byol"), num_classes=0)
    clips = fake_batch()["video"]["clips"]["clip_1"]
    ours = method.augmentation(clips, generator=torch.Generator().manual_seed(5))
    reference = byol_video_augment(24)(clips, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(ours, reference, atol=1e-6)
    no_flip = METHODS["byol"](tiny_config("byol", flip_p=0.0, blur_p=0.0), num_classes=0)
    assert len(no_flip.augmentation.transforms) == len(method.augmentation.transforms) - 2


def test_online_probe_standardises_the_embedding():
    """The probe's BatchNorm has no parameters and makes the logits independent of the embedding's scale."""
    from vidssl.methods.base import online_probe

    torch.manual_seed(0)
    probe = online_probe(6, 3)
    assert [n for n, _ in probe.named_parameters()] == ["1.weight", "1.bias"]
    x = torch.randn(16, 6)
    assert torch.allclose(probe(x), probe(100.0 * x + 5.0), atol=1e-4)


def test_channels_last_covers_2d_and_3d_convs_in_one_model():
    # GDT (3-D video + 2-D audio convs) and BaSSL (2-D shot encoder): module.to(channels_last_3d) raised
    # "required rank 5 tensor" on the first 4-D weight, so such runs died at the start on a GPU.
    from vidssl.methods.base import to_channels_last

    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.BatchNorm3d(4), torch.nn.Conv2d(4, 5, 3),
                                torch.nn.Linear(5, 2))
    with pytest.raises(RuntimeError, match="rank 5"):
        copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    to_channels_last(model)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert model[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert not model[0].weight.is_contiguous() and not model[2].weight.is_contiguous()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # the layout changes, never the values
    video = torch.randn(2, 3, 5, 7, 7).contiguous(memory_format=torch.channels_last_3d)
    assert model[2](model[1](model[0](video))[:, :, 0]).shape == (2, 5, 3, 3)


def test_gradient_clipping_bounds_the_global_norm_after_multipliers():
    """optim.grad_clip is applied by the method itself (Lightning refuses to clip for fused optimisers
    under mixed precision): the global norm ends at the bound, directions unchanged."""
    from vidssl.optim import build_optimizer

    cfg = tiny_config("byol")
    cfg.optim.grad_clip = 0.5
    method = METHODS["byol"](cfg, num_classes=3)
    optimizer = build_optimizer(cfg.optim, method.param_groups(), device_type="cpu")
    method.compute_loss(method.augment(fake_batch()), fake_batch())["loss"].mul(1000).backward()
    before = [p.grad.clone() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    assert torch.linalg.vector_norm(torch.stack([g.norm() for g in before])) > 0.5
    method.on_before_optimizer_step(optimizer)
    after = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    assert float(torch.linalg.vector_norm(torch.stack([g.norm() for g in after]))) == pytest.approx(0.5, rel=1e-4)
    ratio = after[0].flatten() / before[0].flatten()
    assert torch.allclose(ratio[before[0].flatten() != 0], ratio[before[0].flatten() != 0][0], rtol=1e-4)
    cfg.optim.grad_clip = 0.0  # off: gradients untouched
    method.on_before_optimizer_step(optimizer)
    assert torch.equal(after[0], [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None][0])


def _byol_step(checkpointed: bool):
    """One BYOL loss + backward on the fake batch: (method, loss, gradients, buffers)."""
    cfg = tiny_config("byol")
    cfg.trainer.activation_checkpointing = checkpointed
    torch.manual_seed(0)
    method = METHODS["byol"](cfg, num_classes=3).train()
    torch.manual_seed(1)
    loss = method.compute_loss(method.augment(fake_batch()), fake_batch())["loss"]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
    return method, loss.detach(), grads, {n: b.clone() for n, b in method.named_buffers()}


def test_activation_checkpointing_wraps_the_trained_encoder_and_changes_no_number():
    """trainer.activation_checkpointing: the online encoder's blocks are recomputed, the frozen EMA target's are
    not; loss, every gradient and every buffer (BN running statistics included) equal the plain method's."""
    from vidssl.models.activation_checkpointing import is_checkpointed

    plain, loss_a, grads_a, buffers_a = _byol_step(False)
    method, loss_b, grads_b, buffers_b = _byol_step(True)
    assert not any(is_checkpointed(m) for m in plain.modules())
    assert sum(is_checkpointed(m) for m in method.encoder.modules()) == 8  # R3D-18: 4 stages × 2 units
    assert not any(is_checkpointed(m) for m in method.target_encoder.modules())
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys()
    for key in grads_a:
        assert torch.equal(grads_a[key], grads_b[key]), key
    for key in buffers_a:
        assert torch.equal(buffers_a[key], buffers_b[key]), key


def test_activation_checkpointing_is_a_preset_option_and_refuses_a_backbone_without_blocks(monkeypatch):
    from vidssl.models import backbones
    from vidssl.models.activation_checkpointing import is_checkpointed

    cfg = load_pretrain_config("byol_rho2_r3d18_demo_tiny", ["trainer.activation_checkpointing=true"])
    assert cfg.trainer.activation_checkpointing is True
    method = METHODS[cfg.method.name](cfg, num_classes=0)
    assert any(is_checkpointed(m) for m in method.encoder.modules())

    class Plain(nn.Module):  # no residual or transformer block
        embed_dim = 4

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(3, 4, 3)

        def forward(self, x, return_features=False):
            fmap = self.conv(x)
            return (fmap.mean((2, 3, 4)), fmap) if return_features else fmap.mean((2, 3, 4))

    monkeypatch.setitem(backbones.BACKBONES, "plain_conv", lambda **kwargs: Plain())
    with pytest.raises(ConfigError, match=r"trainer\.activation_checkpointing=true: backbone 'plain_conv' \(Plain\) "
                                          r"has no trainable block"):
        METHODS["byol"](apply_pretrain_overrides(tiny_config("byol", backbone="plain_conv"),
                                                 ["trainer.activation_checkpointing=true"]), num_classes=0)
    METHODS["byol"](tiny_config("byol", backbone="plain_conv"), num_classes=0)  # without the option: fine


def test_compiled_encoder_trains_to_the_same_numbers_and_the_measured_preset_compiles():
    """trainer.compile routes the encoder through torch.compile with trainer.compile_backend (aot_eager here:
    the same graph capture as inductor, without generating kernels); loss and gradients match eager. The
    ρBYOL K400 preset compiles by default: it was measured to pay on a GPU (BENCHMARKS.md)."""

    def step(compiled: bool):
        cfg = tiny_config("byol")
        cfg.trainer.compile, cfg.trainer.compile_backend = compiled, "aot_eager"
        torch.manual_seed(0)
        method = METHODS["byol"](cfg, num_classes=3).train()
        method.configure_model()
        torch.manual_seed(1)
        loss = method.compute_loss(method.augment(fake_batch()), fake_batch())["loss"]
        loss.backward()
        return method, loss.detach(), {n: p.grad for n, p in method.named_parameters() if p.grad is not None}

    eager, loss_e, grads_e = step(False)
    compiled, loss_c, grads_c = step(True)
    assert not hasattr(eager.encoder, "_compiled_call_impl") or eager.encoder._compiled_call_impl is None
    assert compiled.encoder._compiled_call_impl is not None
    assert torch.allclose(loss_e, loss_c, atol=1e-5)
    assert grads_e.keys() == grads_c.keys()
    for key in grads_e:
        assert torch.allclose(grads_e[key], grads_c[key], atol=1e-5, rtol=1e-4), key
    assert load_pretrain_config("byol_rho2_r3d18_k400").trainer.compile is True
    assert load_pretrain_config("byol_rho2_r3d18_demo_tiny").trainer.compile is False
