"""GDT's NCE over the 9 hypotheses: the negative set of every term against a hand-written table for a
batch of 2 (on 1 and on 2 gloo processes), known values, masking of pairs whose audio is invalid, and
2 processes = 1 process with the whole batch (loss and gradients)."""

from __future__ import annotations

import math
import socket
from collections import Counter

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from vidssl.errors import ConfigError
from vidssl.methods.gdt_nce import TRANSFORMS, gdt_logit_tables, gdt_nce_loss, hypothesis_name, hypothesis_terms

# Hand-written: every term of every hypothesis seen from sample 0 of a batch of 2, in both directions.
# "v1r.0 -> a1r.0 | a1.1 a1r.1 a1.0" = query video of transform 1r (τ1 reversed) of sample 0, positive
# audio 1r of sample 0, negatives audio 1 and 1r of sample 1 and audio 1 of sample 0 (the hard negative).
# The number before the colon is the weight of the line.
TABLE = {
    "basecase": """
        0.5: v1.0 -> a1.0 | a1.1
        0.5: a1.0 -> v1.0 | v1.1""",
    "v_reversal": """
        0.25: v1.0 -> a1.0 | a1.1 a1r.1 a1r.0
        0.25: a1.0 -> v1.0 | v1.1 v1r.1 v1r.0
        0.25: v1r.0 -> a1r.0 | a1.1 a1r.1 a1.0
        0.25: a1r.0 -> v1r.0 | v1.1 v1r.1 v1.0""",
    "i_reversal": """
        0.125: v1.0 -> a1.0 | a1.1 a1r.1
        0.125: a1.0 -> v1.0 | v1.1 v1r.1
        0.125: v1r.0 -> a1r.0 | a1.1 a1r.1
        0.125: a1r.0 -> v1r.0 | v1.1 v1r.1
        0.125: v1.0 -> a1r.0 | a1.1 a1r.1
        0.125: a1.0 -> v1r.0 | v1.1 v1r.1
        0.125: v1r.0 -> a1.0 | a1.1 a1r.1
        0.125: a1r.0 -> v1.0 | v1.1 v1r.1""",
    "v_shift": """
        0.25: v1.0 -> a1.0 | a1.1 a2.1 a2.0
        0.25: a1.0 -> v1.0 | v1.1 v2.1 v2.0
        0.25: v2.0 -> a2.0 | a1.1 a2.1 a1.0
        0.25: a2.0 -> v2.0 | v1.1 v2.1 v1.0""",
    "i_shift": """
        0.125: v1.0 -> a1.0 | a1.1 a2.1
        0.125: a1.0 -> v1.0 | v1.1 v2.1
        0.125: v2.0 -> a2.0 | a1.1 a2.1
        0.125: a2.0 -> v2.0 | v1.1 v2.1
        0.125: v1.0 -> a2.0 | a1.1 a2.1
        0.125: a1.0 -> v2.0 | v1.1 v2.1
        0.125: v2.0 -> a1.0 | a1.1 a2.1
        0.125: a2.0 -> v1.0 | v1.1 v2.1""",
    "v_reversal_v_shift": """
        0.0625: v1.0 -> a1.0 | a1.1 a1r.1 a1r.0
        0.0625: a1.0 -> v1.0 | v1.1 v1r.1 v1r.0
        0.0625: v1r.0 -> a1r.0 | a1.1 a1r.1 a1.0
        0.0625: a1r.0 -> v1r.0 | v1.1 v1r.1 v1.0
        0.0625: v2.0 -> a2.0 | a2.1 a2r.1 a2r.0
        0.0625: a2.0 -> v2.0 | v2.1 v2r.1 v2r.0
        0.0625: v2r.0 -> a2r.0 | a2.1 a2r.1 a2.0
        0.0625: a2r.0 -> v2r.0 | v2.1 v2r.1 v2.0
        0.0625: v1.0 -> a1.0 | a1.1 a2.1 a2.0
        0.0625: a1.0 -> v1.0 | v1.1 v2.1 v2.0
        0.0625: v2.0 -> a2.0 | a1.1 a2.1 a1.0
        0.0625: a2.0 -> v2.0 | v1.1 v2.1 v1.0
        0.0625: v1r.0 -> a1r.0 | a1r.1 a2r.1 a2r.0
        0.0625: a1r.0 -> v1r.0 | v1r.1 v2r.1 v2r.0
        0.0625: v2r.0 -> a2r.0 | a1r.1 a2r.1 a1r.0
        0.0625: a2r.0 -> v2r.0 | v1r.1 v2r.1 v1r.0""",
    "i_reversal_v_shift": """
        0.05: v1.0 -> a1r.0 | a1.1 a1r.1
        0.05: a1.0 -> v1r.0 | v1.1 v1r.1
        0.05: v1r.0 -> a1.0 | a1.1 a1r.1
        0.05: a1r.0 -> v1.0 | v1.1 v1r.1
        0.05: v2.0 -> a2r.0 | a2.1 a2r.1
        0.05: a2.0 -> v2r.0 | v2.1 v2r.1
        0.05: v2r.0 -> a2.0 | a2.1 a2r.1
        0.05: a2r.0 -> v2.0 | v2.1 v2r.1
        0.05: v1.0 -> a1.0 | a1.1 a2.1 a2.0
        0.05: a1.0 -> v1.0 | v1.1 v2.1 v2.0
        0.05: v2.0 -> a2.0 | a1.1 a2.1 a1.0
        0.05: a2.0 -> v2.0 | v1.1 v2.1 v1.0
        0.05: v1r.0 -> a1r.0 | a1r.1 a2r.1 a2r.0
        0.05: a1r.0 -> v1r.0 | v1r.1 v2r.1 v2r.0
        0.05: v2r.0 -> a2r.0 | a1r.1 a2r.1 a1r.0
        0.05: a2r.0 -> v2r.0 | v1r.1 v2r.1 v1r.0
        0.05: v1.0 -> a1.0 | a1.1 a1r.1
        0.05: a1.0 -> v1.0 | v1.1 v1r.1
        0.05: v1r.0 -> a1r.0 | a1.1 a1r.1
        0.05: a1r.0 -> v1r.0 | v1.1 v1r.1""",
    "v_reversal_i_shift": """
        0.05: v1.0 -> a1.0 | a1.1 a1r.1 a1r.0
        0.05: a1.0 -> v1.0 | v1.1 v1r.1 v1r.0
        0.05: v1r.0 -> a1r.0 | a1.1 a1r.1 a1.0
        0.05: a1r.0 -> v1r.0 | v1.1 v1r.1 v1.0
        0.05: v2.0 -> a2.0 | a2.1 a2r.1 a2r.0
        0.05: a2.0 -> v2.0 | v2.1 v2r.1 v2r.0
        0.05: v2r.0 -> a2r.0 | a2.1 a2r.1 a2.0
        0.05: a2r.0 -> v2r.0 | v2.1 v2r.1 v2.0
        0.05: v1.0 -> a2.0 | a1.1 a2.1
        0.05: a1.0 -> v2.0 | v1.1 v2.1
        0.05: v2.0 -> a1.0 | a1.1 a2.1
        0.05: a2.0 -> v1.0 | v1.1 v2.1
        0.05: v1r.0 -> a2r.0 | a1r.1 a2r.1
        0.05: a1r.0 -> v2r.0 | v1r.1 v2r.1
        0.05: v2r.0 -> a1r.0 | a1r.1 a2r.1
        0.05: a2r.0 -> v1r.0 | v1r.1 v2r.1
        0.05: v1.0 -> a1.0 | a1.1 a2.1
        0.05: a1.0 -> v1.0 | v1.1 v2.1
        0.05: v2.0 -> a2.0 | a1.1 a2.1
        0.05: a2.0 -> v2.0 | v1.1 v2.1""",
    "i_reversal_i_shift": """
        0.041667: v1.0 -> a1r.0 | a1.1 a1r.1
        0.041667: a1.0 -> v1r.0 | v1.1 v1r.1
        0.041667: v1r.0 -> a1.0 | a1.1 a1r.1
        0.041667: a1r.0 -> v1.0 | v1.1 v1r.1
        0.041667: v2.0 -> a2r.0 | a2.1 a2r.1
        0.041667: a2.0 -> v2r.0 | v2.1 v2r.1
        0.041667: v2r.0 -> a2.0 | a2.1 a2r.1
        0.041667: a2r.0 -> v2.0 | v2.1 v2r.1
        0.041667: v1.0 -> a2.0 | a1.1 a2.1
        0.041667: a1.0 -> v2.0 | v1.1 v2.1
        0.041667: v2.0 -> a1.0 | a1.1 a2.1
        0.041667: a2.0 -> v1.0 | v1.1 v2.1
        0.041667: v1r.0 -> a2r.0 | a1r.1 a2r.1
        0.041667: a1r.0 -> v2r.0 | v1r.1 v2r.1
        0.041667: v2r.0 -> a1r.0 | a1r.1 a2r.1
        0.041667: a2r.0 -> v1r.0 | v1r.1 v2r.1
        0.041667: v1.0 -> a1.0 | a1.1 a1r.1
        0.041667: a1.0 -> v1.0 | v1.1 v1r.1
        0.041667: v1r.0 -> a1r.0 | a1.1 a1r.1
        0.041667: a1r.0 -> v1r.0 | v1.1 v1r.1
        0.041667: v1.0 -> a1.0 | a1.1 a2.1
        0.041667: a1.0 -> v1.0 | v1.1 v2.1
        0.041667: v2.0 -> a2.0 | a1.1 a2.1
        0.041667: a2.0 -> v2.0 | v1.1 v2.1""",
}
MODALITY = {"video": "v", "audio": "a"}


def parse_table(text: str, sample: int) -> Counter:
    """Lines of :data:`TABLE` as a multiset of (weight, query, positive, negatives), for ``sample``
    (sample 1's lines are sample 0's with the two samples swapped)."""
    def swap(token: str) -> str:
        name, index = token.split(".")
        return f"{name}.{int(index) if sample == 0 else 1 - int(index)}"

    out = Counter()
    for line in text.strip().splitlines():
        weight, rest = line.split(":")
        lhs, negatives = rest.split("|")
        query, positive = (t.strip() for t in lhs.split("->"))
        out[(round(float(weight), 4), swap(query), swap(positive), frozenset(swap(n) for n in negatives.split()))] += 1
    return out


def one_hot_features(batch_local: int, rank: int, world: int) -> dict:
    """Every feature is a one-hot of (transform, global sample): a gathered key says who it is."""
    total = batch_local * world
    dim = len(TRANSFORMS) * total
    feats = {}
    for modality in ("video", "audio"):
        feats[modality] = {}
        for k, t in enumerate(TRANSFORMS):
            rows = torch.arange(batch_local) + rank * batch_local
            feats[modality][t] = F.one_hot(k * total + rows, dim).float()
    return feats


def observed_table(hypothesis: str, batch_local: int, rank: int, world: int) -> dict[int, Counter]:
    """The (weight, query, positive, negatives) of every row of this process, by global sample."""
    total = batch_local * world
    tables = gdt_logit_tables(one_hot_features(batch_local, rank, world), {}, hypothesis_terms(hypothesis))
    out: dict[int, Counter] = {}

    def name(modality: str, column_key: torch.Tensor) -> str:
        index = int(column_key.argmax())
        return f"{MODALITY[modality]}{TRANSFORMS[index // total]}.{index % total}"

    for table in tables:
        for row in range(batch_local):
            sample = rank * batch_local + row
            positive = name(table.key_modality, table.keys[table.positive[row]])
            allowed = [name(table.key_modality, table.keys[c]) for c in table.allowed[row].nonzero().flatten()]
            negatives = frozenset(a for a in allowed if a != positive)
            assert len(negatives) == len(allowed) - 1  # no key twice, the positive once
            query = f"{MODALITY[table.query_modality]}{table.term.query}.{sample}"
            out.setdefault(sample, Counter())[(round(table.term.weight, 4), query, positive, negatives)] += 1
    return out


@pytest.mark.parametrize("hypothesis", list(TABLE))
def test_negative_sets_match_the_hand_written_table_on_one_process(hypothesis):
    observed = observed_table(hypothesis, batch_local=2, rank=0, world=1)
    for sample in (0, 1):
        assert observed[sample] == parse_table(TABLE[hypothesis], sample), (hypothesis, sample)
    assert sum(w for (w, *_), n in parse_table(TABLE[hypothesis], 0).items() for _ in range(n)) == pytest.approx(1.0, abs=1e-3)


def test_hypotheses_by_number_or_name():
    assert [hypothesis_name(n) for n in range(1, 10)] == list(TABLE)
    assert hypothesis_name("8") == hypothesis_name("v_reversal_i_shift") == "v_reversal_i_shift"
    with pytest.raises(ConfigError, match=r"did you mean 'v_shift'"):
        hypothesis_name("v_shfit")
    with pytest.raises(ConfigError, match="give 1-9"):
        hypothesis_name(10)


def test_nce_known_values():
    """Basecase with 2 samples: each row is -log(e^{s+/τ} / (e^{s+/τ} + e^{s-/τ}))."""
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a = F.normalize(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), dim=1)
    out = gdt_nce_loss({"video": {"1": v}, "audio": {"1": a}}, {}, hypothesis_terms(1), temperature=0.5)
    s = v @ a.T  # s[i, j] = v_i · a_j
    rows_v = [math.log1p(math.exp((s[i, 1 - i] - s[i, i]) / 0.5)) for i in range(2)]
    rows_a = [math.log1p(math.exp((s[1 - i, i] - s[i, i]) / 0.5)) for i in range(2)]
    expected = 0.5 * sum(rows_v) / 2 + 0.5 * sum(rows_a) / 2
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-6)
    # identical unit features: every row's positive has the largest logit
    same = {"video": {"1": torch.eye(3)}, "audio": {"1": torch.eye(3)}}
    assert float(gdt_nce_loss(same, {}, hypothesis_terms(1), 0.07)["nce_acc"]) == 1.0


@pytest.mark.parametrize("hypothesis", ["basecase", "v_reversal", "i_reversal_i_shift"])
def test_pairs_with_invalid_audio_are_masked_out(hypothesis):
    """Sample 1's audio is missing: its audio features get no gradient and change nothing, its video
    rows whose positive is its audio are not counted, and the loss equals that of a batch where the
    sample's audio is replaced by anything else."""
    g = torch.Generator().manual_seed(0)
    terms = hypothesis_terms(hypothesis)
    feats = {m: {t: F.normalize(torch.randn(3, 8, generator=g), dim=1).requires_grad_() for t in TRANSFORMS}
             for m in ("video", "audio")}
    valid = {"audio": {t: torch.tensor([True, False, True]) for t in TRANSFORMS}}
    loss = gdt_nce_loss(feats, valid, terms)["loss"]
    loss.backward()
    used = {t for term in terms for t in (term.query, term.positive)}
    for t in used:
        grad = feats["audio"][t].grad
        assert float(grad[1].abs().sum()) == 0.0 and float(grad[0].abs().sum()) > 0
    other = {m: {t: f.detach().clone() for t, f in d.items()} for m, d in feats.items()}
    for t in TRANSFORMS:
        other["audio"][t][1] = F.normalize(torch.randn(8, generator=g), dim=0)
    assert float(gdt_nce_loss(other, valid, terms)["loss"]) == pytest.approx(float(loss), rel=1e-6)
    # no row of the masked sample's audio is counted: with every audio invalid the loss is 0
    none = {"audio": {t: torch.zeros(3, dtype=torch.bool) for t in TRANSFORMS}}
    assert float(gdt_nce_loss(other, none, terms)["loss"]) == 0.0
    tables = gdt_logit_tables(feats, valid, terms)
    for table in tables:
        key_is_audio = table.key_modality == "audio"
        for k, t in enumerate(table.order):
            column = k * 3 + 1
            others = [r for r in range(3) if r != 1]
            if key_is_audio:
                assert not table.allowed[others, column].any()  # never a negative
        assert bool(table.row_valid[1]) is False


# ---------------------------------------------------------------- two gloo processes


def _random_features(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {m: {t: F.normalize(torch.randn(batch, 16, generator=g), dim=1) for t in TRANSFORMS}
            for m in ("video", "audio")}


EQUAL_VALID = torch.tensor([True, True, False, True])  # sample 2 (on rank 1) has no audio


def _loss_and_grads(feats, valid, hypothesis):
    feats = {m: {t: f.clone().requires_grad_() for t, f in d.items()} for m, d in feats.items()}
    loss = gdt_nce_loss(feats, valid, hypothesis_terms(hypothesis))["loss"]
    loss.backward()
    return loss.detach(), {(m, t): f.grad for m, d in feats.items() for t, f in d.items()}


def _method_loss(part: slice, distributed: bool) -> float:
    """The GDT method's loss (hypothesis 8, synchronised BN, no dropout) on fixed views of 4 clips."""
    from vidssl.distributed import convert_sync_batchnorm
    from vidssl.methods import METHODS
    from vidssl.methods.config import pretrain_config_from_dict

    small = {"backbone": "r2plus1d18_tv_tiny", "backbone_kwargs": {"width": 4}, "num_frames": 4, "target_fps": None,
             "stride": 2, "canvas": 32, "crop_size": 24, "short_side": [24, 30], "audio_backbone": "audio_resnet9_tiny",
             "audio_backbone_kwargs": {"width": 4}, "audio_rate": 8000, "audio_seconds": 0.5, "proj_hidden_dim": 16,
             "proj_dim": 8, "dropout": 0.0}
    cfg = pretrain_config_from_dict({"method": {"name": "gdt", "hypothesis": 8, **small}})
    torch.manual_seed(3)
    method = METHODS["gdt"](cfg, num_classes=0)
    if distributed:
        for name, child in list(method.named_children()):
            setattr(method, name, convert_sync_batchnorm(child, "cpu"))
    g = torch.Generator().manual_seed(4)
    views = {f"video_{t}": torch.randn(4, 3, 4, 24, 24, generator=g) for t in TRANSFORMS}
    views.update({f"audio_{t}": torch.randn(4, 1, 49, 40, generator=g) for t in TRANSFORMS})
    batch = {"video": {"valid": {"audio_1": EQUAL_VALID[part], "audio_2": EQUAL_VALID[part]}}}
    return float(method.compute_loss({k: v[part] for k, v in views.items()}, batch)["loss"].detach())


def _worker(rank, world, port, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        out = {"tables": {h: observed_table(h, batch_local=1, rank=rank, world=world) for h in TABLE}}
        feats = _random_features(4)
        part = slice(2 * rank, 2 * rank + 2)
        local = {m: {t: f[part] for t, f in d.items()} for m, d in feats.items()}
        valid = {"audio": {t: EQUAL_VALID[part] for t in TRANSFORMS}}
        out["losses"] = {h: _loss_and_grads(local, valid, h) for h in TABLE}
        out["method"] = _method_loss(slice(2 * rank, 2 * rank + 2), distributed=True)
        results[rank] = out
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
def test_two_processes_see_the_table_and_give_the_one_process_loss():
    """Batch of 2 split over 2 gloo processes: the same negative sets (the local sample and the other
    process's); and with 4 samples (one without audio) the mean of the processes' losses and their
    gradients equal one process with the whole batch, for every hypothesis; and so does the whole GDT
    method's loss (encoders with synchronised batch norm, heads, NCE)."""
    ctx = mp.get_context("spawn")
    results = ctx.Manager().dict()
    mp.start_processes(_worker, args=(2, _free_port(), results), nprocs=2, join=True, start_method="spawn")
    whole = _method_loss(slice(0, 4), distributed=False)
    assert (results[0]["method"] + results[1]["method"]) / 2 == pytest.approx(whole, rel=1e-5)
    feats = _random_features(4)
    valid = {"audio": {t: EQUAL_VALID for t in TRANSFORMS}}
    for hypothesis in TABLE:
        for rank in (0, 1):
            assert results[rank]["tables"][hypothesis][rank] == parse_table(TABLE[hypothesis], rank), (hypothesis, rank)
        ref_loss, ref_grads = _loss_and_grads(feats, valid, hypothesis)
        losses = [results[r]["losses"][hypothesis][0] for r in (0, 1)]
        assert float(sum(losses) / 2) == pytest.approx(float(ref_loss), rel=1e-5), hypothesis
        for key, ref in ref_grads.items():
            if ref is None:  # a transform the hypothesis does not use
                assert all(results[r]["losses"][hypothesis][1][key] is None for r in (0, 1))
                continue
            got = torch.cat([results[r]["losses"][hypothesis][1][key] for r in (0, 1)]) / 2  # DDP averages
            torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-4)
