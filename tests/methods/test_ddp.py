"""Two gloo processes on CPU give the same losses and gradients as one process with the whole batch:
gathered negatives (``gather_with_grad``), synchronised batch norm and the synced DINO centre."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from vidssl.losses import info_nce_loss, update_center
from vidssl.distributed import convert_sync_batchnorm, gather_with_grad
from vidssl.models.heads import MLPHead

pytestmark = [pytest.mark.ddp, pytest.mark.slow]

BATCH, DIM = 8, 6


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, DIM, generator=g), torch.randn(BATCH, DIM, generator=g)


def _models():
    torch.manual_seed(1)
    return nn.Linear(DIM, 5), MLPHead(5, 7, 4)


def _losses(encoder, head, x, x2, rank, world):
    """Contrastive loss with negatives from every process, BN over the global batch, centre update."""
    q = head(encoder(x))
    k = gather_with_grad(head(encoder(x2)))
    local = x.shape[0]
    positives = torch.arange(local) + rank * local
    loss = info_nce_loss(q, k, positives, temperature=0.5)
    center = update_center(torch.zeros(1, 4), q.detach(), momentum=0.9, sync=True)
    return loss, center


def _reference():
    encoder, head = _models()
    x, x2 = _data()
    loss, center = _losses(encoder, head, x, x2, 0, 1)
    loss.backward()
    grads = [p.grad.clone() for p in list(encoder.parameters()) + list(head.parameters())]
    return loss.detach(), grads, center


def _worker(rank, world, port, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        encoder, head = _models()
        head = convert_sync_batchnorm(head, "cpu")
        x, x2 = _data()
        part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        loss, center = _losses(encoder, head, x[part], x2[part], rank, world)
        loss.backward()
        grads = []
        for p in list(encoder.parameters()) + list(head.parameters()):
            g = p.grad.clone()
            dist.all_reduce(g)  # what DDP does: average the gradients over processes
            grads.append(g / world)
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        results[rank] = (mean_loss / world, grads, center)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_with_the_whole_batch():
    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    results = manager.dict()
    mp.start_processes(_worker, args=(2, _free_port(), results), nprocs=2, join=True, start_method="spawn")
    ref_loss, ref_grads, ref_center = _reference()
    for rank in range(2):
        loss, grads, center = results[rank]
        assert torch.allclose(loss, ref_loss, atol=1e-5), (loss, ref_loss)
        for g, r in zip(grads, ref_grads):
            assert torch.allclose(g, r, atol=1e-5)
        assert torch.allclose(center, ref_center, atol=1e-6)


def test_the_pretrain_command_releases_the_process_group(monkeypatch):
    """`vidssl pretrain` destroys the process group before returning, also when the run fails: left to
    interpreter exit, gloo's teardown aborted a finished rank (SIGABRT) and torchrun reported failure."""
    import argparse

    import vidssl.commands.pretrain as command
    from vidssl import distributed

    released = []
    monkeypatch.setattr(distributed, "release_process_group", lambda: released.append(True))
    monkeypatch.setattr(command, "_run", lambda args: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        command.run(argparse.Namespace(list_presets=False))
    assert released == [True]
