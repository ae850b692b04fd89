"""BaSSL's released checkpoints load without executing pickled code: a synthetic Lightning checkpoint with the
official key names converts into vidssl's shot encoder and CRN with identical outputs."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from vidssl.errors import UserError
from vidssl.models import load_encoder
from vidssl.models.convert_bassl import (
    convert_bassl_checkpoint,
    crn_state_from_official,
    official_crn_state,
    read_bassl_checkpoint,
)
from vidssl.models.crn import ContextualRelationNetwork


def official_checkpoint(path, with_crn: bool = True, extra: dict | None = None):
    """A PL-1.3-style checkpoint with BaSSL's key names (a small CRN; a real ResNet-50 layout)."""
    from vidssl.models import build_random_encoder

    torch.manual_seed(0)
    encoder = build_random_encoder("image_resnet50")
    state = {f"shot_encoder.{k}": v for k, v in encoder.state_dict().items()}
    crn = ContextualRelationNetwork(2048, hidden_dim=32, num_layers=2, num_heads=8, intermediate_dim=64, num_shots=17)
    if with_crn:
        state.update(official_crn_state(crn.state_dict()))
        state["crn.attention_mask"] = torch.zeros(1, 1, 1, 18)
        state["crn.shot_embedding.pos_ids"] = torch.arange(18)
    state.update({"loss.head_nce.model.0.weight": torch.zeros(2048, 2048), "loss.head_pp.weight": torch.zeros(2, 32)})
    torch.save({"epoch": 9, "global_step": 100, "pytorch-lightning_version": "1.3.8", "state_dict": state,
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.3, "params": [0, 1]}]}],
                "lr_schedulers": [{"last_epoch": 100, "lr_lambdas": [None]}],
                "hyper_parameters": argparse.Namespace(EXPR_NAME="bassl"), **(extra or {})}, path)
    return encoder.eval(), crn.eval()


def test_official_checkpoint_converts_to_the_same_networks(tmp_path):
    encoder, crn = official_checkpoint(tmp_path / "model-v1.ckpt")
    written = convert_bassl_checkpoint(tmp_path / "model-v1.ckpt", tmp_path / "out")
    assert set(written) == {"encoder", "crn"}
    loaded = load_encoder(tmp_path / "out")
    assert loaded.input_contract.modality == "image" and loaded.input_contract.crop_size == 224
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(loaded(x), encoder(x), atol=1e-5)
    from safetensors.torch import load_file

    from vidssl.eval.scenes import crn_of_run

    state, kwargs = crn_of_run(tmp_path / "out")
    converted = ContextualRelationNetwork(2048, **kwargs).eval()
    converted.load_state_dict(state)
    shots, mask = torch.randn(3, 17, 2048), torch.zeros(3, 17, dtype=torch.bool)
    mask[:, 4] = True
    assert torch.allclose(converted(shots, mask)[0], crn(shots, mask)[0], atol=1e-5)
    assert kwargs["num_shots"] == 17 and kwargs["hidden_dim"] == 32 and kwargs["num_layers"] == 2
    assert set(load_file(str(tmp_path / "out" / "crn.safetensors"))) == set(crn.state_dict())


def test_mask_embedding_is_row_one_of_the_official_table():
    table = torch.randn(2, 8)
    state = {"crn.shot_embedding.mask_embedding.weight": table,
             "crn.shot_embedding.shot_embedding.weight": torch.zeros(4, 8),
             "crn.shot_embedding.position_embedding.weight": torch.zeros(18, 4),
             "crn.encoder.layer.0.intermediate.dense.weight": torch.zeros(16, 4)}
    out, kwargs = crn_state_from_official(state)
    assert torch.equal(out["mask_embedding"], table[1]) and kwargs["num_shots"] == 17


def test_shot_level_baseline_checkpoint_has_no_crn(tmp_path):
    official_checkpoint(tmp_path / "simclr.ckpt", with_crn=False)
    assert set(convert_bassl_checkpoint(tmp_path / "simclr.ckpt", tmp_path / "out")) == {"encoder"}


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/vidssl_bassl_pwned",))


def test_pickled_code_is_refused_not_run(tmp_path):
    official_checkpoint(tmp_path / "evil.ckpt", extra={"callbacks": Payload()})
    with pytest.raises(UserError, match="safely"):
        read_bassl_checkpoint(tmp_path / "evil.ckpt")
    assert not os.path.exists("/tmp/vidssl_bassl_pwned")


def test_wrong_files_are_named(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_bassl_checkpoint(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(UserError, match="no shot encoder"):
        read_bassl_checkpoint(tmp_path / "other.ckpt")
    torch.save([1, 2], tmp_path / "list.ckpt")
    with pytest.raises(UserError, match="not a BaSSL checkpoint"):
        read_bassl_checkpoint(tmp_path / "list.ckpt")
