"""KeyValueMemory (FGKVMemPred's memory predictor): readout shape and addressing weights."""

import torch

from vidssl.models.heads import KeyValueMemory


def test_readout_shape_and_weights_sum_to_one():
    memory = KeyValueMemory(dim=16, num_slots=32, num_heads=2)
    z = torch.randn(6, 16)
    assert memory(z).shape == (6, 32)
    weights = memory.addressing(z)
    assert weights.shape == (6, 2, 16)
    torch.testing.assert_close(weights.sum(-1), torch.ones(6, 2))
