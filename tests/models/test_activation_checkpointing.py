"""Activation checkpointing of backbone blocks: the plain run's loss, gradients and BN statistics, less memory."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from torch import nn

from vidssl.config import preset_names
from vidssl.errors import ConfigError
from vidssl.methods.train import load_pretrain_config
from vidssl.models import activation_checkpointing as ac
from vidssl.models.backbones import build_backbone
from vidssl.models.backbones.resnet3d import R3DTransform, ResUnit

CLIP = (2, 3, 4, 32, 32)


def one_step(name: str, checkpointed: bool, steps: int = 1, **kwargs):
    """``steps`` forward/backward passes of a freshly built backbone in train mode on fixed clips: the last
    loss, every parameter gradient (summed over steps), every buffer, and the next random number."""
    torch.manual_seed(0)
    model = build_backbone(name, **kwargs).train()
    if checkpointed:
        assert ac.checkpoint_blocks(model) > 0
    torch.manual_seed(1)  # drop path draws from here on
    for step in range(steps):
        x = torch.randn(*CLIP, generator=torch.Generator().manual_seed(step))
        loss = model(x).square().mean()
        loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    return model, loss.detach(), grads, buffers, torch.rand(3)


@pytest.mark.parametrize("name", ["r3d18_fgkv_tiny", "r2plus1d18_tv_tiny", "tsm_resnet_tiny", "swin_bevt_tiny"])
def test_checkpointed_backbone_equals_the_plain_one(name):
    """Loss, gradients, BN running statistics (two steps) and the RNG stream are bit for bit the plain run's;
    swin_bevt_tiny keeps its drop path (0.1): the recomputation draws the same units."""
    plain, loss_a, grads_a, buffers_a, rng_a = one_step(name, False, steps=2)
    wrapped, loss_b, grads_b, buffers_b, rng_b = one_step(name, True, steps=2)
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 0
    for key in grads_a:
        assert torch.equal(grads_a[key], grads_b[key]), key
    for key in buffers_a:
        assert torch.equal(buffers_a[key], buffers_b[key]), key  # running_mean/var and num_batches_tracked
    assert torch.equal(rng_a, rng_b)
    # nothing renamed: checkpoints, optimiser groups and converters see the same module tree
    assert list(plain.state_dict()) == list(wrapped.state_dict())
    assert any(ac.is_checkpointed(m) for m in wrapped.modules())


def test_plain_torch_checkpoint_would_update_batchnorm_statistics_twice(monkeypatch):
    """What vidssl guards against (pytorch/pytorch#96136): without putting the statistics back, the
    recomputation in backward folds the batch into the running statistics a second time."""
    monkeypatch.setattr(ac, "_running_statistics_kept", lambda block: contextlib.nullcontext())
    _, _, _, plain, _ = one_step("r3d18_fgkv_tiny", False)
    _, _, _, twice, _ = one_step("r3d18_fgkv_tiny", True)
    key = "res2.0.branch2.a_bn"
    assert int(plain[f"{key}.num_batches_tracked"]) == 1 and int(twice[f"{key}.num_batches_tracked"]) == 2
    assert not torch.equal(plain[f"{key}.running_mean"], twice[f"{key}.running_mean"])


def saved_for_backward(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the activations autograd keeps for the backward pass (parameters excluded), counted once per storage."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).square().mean()
    loss.backward()
    return sum(kept.values())


def test_checkpointed_blocks_keep_less_for_backward():
    """r3d18_fgkv_tiny on 2×3×8×64²: the blocks keep their inputs only (measured: 42 % of the plain run's bytes;
    the stem is not a block and keeps its activations)."""
    x = torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = build_backbone("r3d18_fgkv_tiny").train()
    plain = saved_for_backward(model, x)
    ac.checkpoint_blocks(model)
    assert saved_for_backward(model, x) < 0.5 * plain


def test_no_grad_and_eval_forward_run_the_block_as_it_is():
    torch.manual_seed(0)
    model = build_backbone("r3d18_fgkv_tiny")
    reference = copy.deepcopy(model)
    ac.checkpoint_blocks(model)
    x = torch.randn(*CLIP)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference.eval()(x))
        model.train(), reference.train()
        assert torch.equal(model(x), reference(x))  # BN statistics updated once, as without the option
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_deepcopy_keeps_the_wrapping_on_the_copy():
    model = build_backbone("r3d18_fgkv_tiny")
    ac.checkpoint_blocks(model)
    twin = copy.deepcopy(model)  # EMA targets and evaluation protocols copy encoders
    block, twin_block = model.res3[0], twin.res3[0]
    assert ac.is_checkpointed(twin_block) and twin_block.forward.__self__ is twin_block
    assert block.forward.__self__ is block
    assert ac.checkpoint_blocks(model) == ac.checkpoint_blocks(twin)  # wrapping again changes nothing


def test_frozen_blocks_are_left_alone_and_a_backbone_without_blocks_is_refused():
    model = build_backbone("r3d18_fgkv_tiny")
    for p in model.res5.parameters():
        p.requires_grad_(False)
    assert ac.checkpoint_blocks(model) == 6 and not ac.is_checkpointed(model.res5[0])
    plain = nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4), nn.ReLU())
    with pytest.raises(ConfigError, match=r"trainer\.activation_checkpointing=true: backbone 'toy' \(Sequential\) "
                                          r".*set trainer\.activation_checkpointing=false"):
        ac.enable_activation_checkpointing(plain, "'toy'", "trainer.activation_checkpointing")


class _GraphBreakingUnit(ResUnit):
    """A ResUnit whose forward the compiler cannot trace in one piece (it runs the checkpoint eagerly)."""

    def forward(self, x):
        residual = self.branch2(x)
        torch._dynamo.graph_break()
        return self.relu(x + residual)


@pytest.mark.parametrize("unit", [ResUnit, _GraphBreakingUnit])
def test_compiled_checkpointed_blocks_update_batchnorm_statistics_once(unit):
    """Under torch.compile (aot_eager: dynamo + AOTAutograd's partitioner, no C++ build) the statistics and
    gradients are the eager plain run's, also when a graph break makes dynamo run the checkpoint eagerly."""
    def run(checkpointed: bool, compiled: bool):
        torch.manual_seed(0)
        model = nn.Sequential(unit(R3DTransform(4, 4, 1)), unit(R3DTransform(4, 4, 1))).train()
        if checkpointed:
            ac.checkpoint_blocks(model)
        if compiled:
            model.compile(backend="aot_eager")
        for step in range(2):
            x = torch.randn(2, 4, 2, 6, 6, generator=torch.Generator().manual_seed(step))
            model(x).square().mean().backward()
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        return buffers, {n: p.grad.clone() for n, p in model.named_parameters()}

    torch._dynamo.reset()
    buffers_a, grads_a = run(False, False)
    buffers_b, grads_b = run(True, True)
    for key in buffers_a:
        assert torch.equal(buffers_a[key], buffers_b[key]), key
    for key in grads_a:
        torch.testing.assert_close(grads_a[key], grads_b[key], rtol=1e-5, atol=1e-7)


def _backbones(method: dict) -> list[tuple[str, dict]]:
    """(name, kwargs) of every backbone a preset's method section names (``backbone``, ``audio_backbone`` …)."""
    out = []
    for key, value in method.items():
        if key.endswith("backbone") and isinstance(value, str) and value:
            out.append((value, dict(method.get(f"{key}_kwargs") or {})))
    return out


def test_every_preset_backbone_has_blocks_to_recompute():
    """The option is part of every preset: each preset's backbones (built on the meta device: no memory)
    have blocks to recompute, so trainer.activation_checkpointing=true never fails or silently does nothing."""
    from vidssl.config import to_dict

    names = preset_names()
    assert len(names) > 40
    seen = set()
    for preset in names:
        cfg = load_pretrain_config(preset, ["trainer.activation_checkpointing=true"])
        assert cfg.trainer.activation_checkpointing is True
        for name, kwargs in _backbones(to_dict(cfg.method)):
            if (name, repr(kwargs)) in seen:
                continue
            seen.add((name, repr(kwargs)))
            with torch.device("meta"):
                backbone = build_backbone(name, **kwargs)
            assert ac.enable_activation_checkpointing(backbone, name, "trainer.activation_checkpointing") > 0, preset
    built = {n for n, _ in seen}
    assert {"swin_bevt_b", "tsm_resnet50", "image_resnet50", "r2plus1d18_stica", "audio_resnet9"} <= built
