"""GDT's noise-contrastive loss over the 9 learning hypotheses (reference: brave-gdt-stica.md B6).

A GDT step embeds up to four video–audio (or video–text) pairs per video: the clip at time τ1
(transform ``"1"``), its time reversal (``"1r"``), the clip at τ2 (``"2"``) and its reversal
(``"2r"``). A hypothesis is a weighted list of :class:`NCETerm`: one query transform, one positive
transform and which keys are negatives. Every term is computed in both directions (video query
against audio keys, audio query against video keys), each direction with the term's weight.

The term structure and weights are the original code's (``main_gdt.py``: each pair set is one
``get_losses`` of 4 terms averaged, combined with 0.5 / 0.25 / 0.2 / 1/6). Pairwise building blocks
over two transforms X, Y:

- **variant** (distinctive to the X↔Y change): query X → positive X, negatives = other samples under
  X and Y + the own sample under Y (the hard negative); the same for Y.
- **invariant**: query X → positive Y (and Y → X); negatives = other samples under X and Y.
- **base**: query X → positive X (and Y → Y); negatives = other samples under X and Y.
- **basecase** (hypothesis 1): query 1 → positive 1; negatives = other samples under 1.

"Other samples" are those of the *global* batch: keys are gathered from every process and the
local batch is part of it, so N processes give exactly the loss of one process with the whole batch
(and one process works; the original needs ≥ 2 and crashes on ``torch.cat([])`` with one).

Departures from the released code (docs/faithfulness.md, GDT):

- The original takes local negatives from the ``N×N`` matrix of the *positive* key set and remote
  negatives from other processes' lists, which ``list.extend`` on shared lists makes grow from term to
  term (remote negatives duplicated, ×2 in the denominator). Local and remote negatives therefore
  differ, and an N-process run is not the same loss as one process. vidssl uses the intended sets
  above on the global batch, without duplicates. No published number can be tied to the aliasing
  (the README does not say which hypothesis the released weights used; the K400 script's default,
  hypothesis 1, is unaffected), so there is no faithful switch.
- Keys are detached (as in the original); gradients flow through the queries only.
- A pair whose audio is missing or cut short (``valid = False``) is left out: its query rows are not
  counted and its key columns are never a positive or a negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vidssl.distributed import dist_ready, gather_with_grad, world_size
from vidssl.errors import ConfigError
from vidssl.losses import masked_nce_rows

__all__ = ["NCETerm", "HYPOTHESES", "HYPOTHESIS_NAMES", "hypothesis_name", "hypothesis_terms",
           "transforms_of", "gdt_logit_tables", "gdt_nce_loss", "TRANSFORMS"]

#: The four pairs of one video: clip at τ1, its reversal, clip at τ2, its reversal.
TRANSFORMS = ("1", "1r", "2", "2r")


@dataclass(frozen=True)
class NCETerm:
    """One NCE term (applied in both directions, each with ``weight``).

    ``query``/``positive``: transforms of the query and of its positive key (same sample);
    ``others``: transforms whose *other-sample* keys are negatives; ``hard``: transforms whose
    *own-sample* key is a negative.
    """

    query: str
    positive: str
    others: tuple[str, ...]
    hard: tuple[str, ...]
    weight: float

    @property
    def transforms(self) -> tuple[str, ...]:
        """Every transform whose keys the term reads, in :data:`TRANSFORMS` order."""
        used = {self.positive, *self.others, *self.hard}
        return tuple(t for t in TRANSFORMS if t in used)


def _basecase(weight: float) -> list[NCETerm]:
    return [NCETerm("1", "1", ("1",), (), weight)]


def _pair(kind: str, x: str, y: str, weight: float) -> list[NCETerm]:
    """One pair set of the original (4 terms averaged: 2 queries × 2 directions), times ``weight``."""
    w = weight / 4
    if kind == "variant":
        return [NCETerm(x, x, (x, y), (y,), w), NCETerm(y, y, (x, y), (x,), w)]
    if kind == "invariant":
        return [NCETerm(x, y, (x, y), (), w), NCETerm(y, x, (x, y), (), w)]
    if kind == "base":
        return [NCETerm(x, x, (x, y), (), w), NCETerm(y, y, (x, y), (), w)]
    raise ValueError(kind)


def _combined(reversal: str, shift: str) -> list[NCETerm]:
    """Hypotheses 6–9 (``main_gdt.py``): reversal on τ1 and τ2, shift on forward and reversed clips,
    plus a base pair set for each invariant factor; all pair sets weighted equally."""
    sets = [(reversal, "1", "1r"), (reversal, "2", "2r"), (shift, "1", "2"), (shift, "1r", "2r")]
    if reversal == "invariant":
        sets.append(("base", "1", "1r"))
    if shift == "invariant":
        sets.append(("base", "1", "2"))
    return [term for kind, x, y in sets for term in _pair(kind, x, y, 1.0 / len(sets))]


#: Hypothesis number → (name, terms). Names as the GDT README lists them.
HYPOTHESES: dict[int, tuple[str, list[NCETerm]]] = {
    1: ("basecase", _basecase(0.5)),
    2: ("v_reversal", _pair("variant", "1", "1r", 1.0)),
    3: ("i_reversal", _pair("base", "1", "1r", 0.5) + _pair("invariant", "1", "1r", 0.5)),
    4: ("v_shift", _pair("variant", "1", "2", 1.0)),
    5: ("i_shift", _pair("base", "1", "2", 0.5) + _pair("invariant", "1", "2", 0.5)),
    6: ("v_reversal_v_shift", _combined("variant", "variant")),
    7: ("i_reversal_v_shift", _combined("invariant", "variant")),
    8: ("v_reversal_i_shift", _combined("variant", "invariant")),
    9: ("i_reversal_i_shift", _combined("invariant", "invariant")),
}
HYPOTHESIS_NAMES: dict[str, int] = {name: number for number, (name, _) in HYPOTHESES.items()}


def hypothesis_name(value: str | int) -> str:
    """The canonical name of hypothesis ``value`` (a number 1–9, as int or string, or a name)."""
    text = str(value).strip()
    if text.isdigit() and int(text) in HYPOTHESES:
        return HYPOTHESES[int(text)][0]
    if text in HYPOTHESIS_NAMES:
        return text
    from vidssl.config import _suggest

    raise ConfigError(f"method.hypothesis: unknown GDT hypothesis {value!r}{_suggest(text, HYPOTHESIS_NAMES)}; "
                      f"give 1-9 or one of {', '.join(HYPOTHESIS_NAMES)}")


def hypothesis_terms(value: str | int) -> list[NCETerm]:
    return HYPOTHESES[HYPOTHESIS_NAMES[hypothesis_name(value)]][1]


def transforms_of(terms: list[NCETerm]) -> tuple[str, ...]:
    """Transforms a hypothesis needs (its views), in :data:`TRANSFORMS` order."""
    used = {t for term in terms for t in (term.query, *term.transforms)}
    return tuple(t for t in TRANSFORMS if t in used)


# ---------------------------------------------------------------------------------------------
# the loss


def _rank() -> int:
    return torch.distributed.get_rank() if dist_ready() else 0


def _all_reduce_sum(x: Tensor) -> Tensor:
    if world_size() > 1:
        x = x.clone()
        torch.distributed.all_reduce(x)
    return x


@dataclass
class LogitTable:
    """One term in one direction: everything the loss of its rows needs (and the tests inspect).

    ``logits`` ``B×M`` (query · key / τ) over ``keys`` ``M×D`` (the gathered keys of every
    transform in ``order``, global batch each); ``allowed`` ``B×M``: the positive and the negatives
    of each row; ``positive`` ``B``: the column of each row's positive; ``row_valid`` ``B``.
    """

    term: NCETerm
    query_modality: str
    key_modality: str
    order: tuple[str, ...]
    keys: Tensor
    logits: Tensor
    allowed: Tensor
    positive: Tensor
    row_valid: Tensor


def gdt_logit_tables(features: dict[str, dict[str, Tensor]], valid: dict[str, dict[str, Tensor]],
                     terms: list[NCETerm], temperature: float = 0.07, symmetric: bool = True) -> list[LogitTable]:
    """The logit tables of every term in both directions, or only with the first modality as the query
    when ``symmetric`` is False (see :func:`gdt_nce_loss` for the arguments)."""
    modalities = list(features)
    if len(modalities) != 2:
        raise ValueError(f"GDT contrasts two modalities, got {modalities}")
    some = next(iter(features[modalities[0]].values()))
    batch, device = some.shape[0], some.device
    world, rank = world_size(), _rank()
    total = batch * world
    own = torch.arange(batch, device=device) + rank * batch  # global index of each local row
    gathered: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}

    def keys_of(modality: str, transform: str) -> tuple[Tensor, Tensor]:
        if (modality, transform) not in gathered:
            x = features[modality][transform].detach()
            ok = valid.get(modality, {}).get(transform)
            ok = torch.ones(batch, dtype=torch.bool, device=device) if ok is None else ok.to(device).bool()
            gathered[(modality, transform)] = (gather_with_grad(x), gather_with_grad(ok.to(torch.uint8)).bool())
        return gathered[(modality, transform)]

    tables = []
    for term in terms:
        directions = [(modalities[0], modalities[1]), (modalities[1], modalities[0])]
        for q_mod, k_mod in directions if symmetric else directions[:1]:
            order = term.transforms
            keys, key_ok = zip(*(keys_of(k_mod, t) for t in order))
            keys_all = torch.cat(keys)  # M×D, M = len(order)·total
            ok_all = torch.cat(key_ok)
            same = torch.arange(total, device=device)[None, :] == own[:, None]  # B×total
            blocks = []
            for t in order:
                block = torch.zeros_like(same)
                if t in term.others:
                    block |= ~same
                if t == term.positive or t in term.hard:
                    block |= same
                blocks.append(block)
            positive = order.index(term.positive) * total + own
            allowed = torch.cat(blocks, dim=1) & ok_all[None, :]
            # the positive column stays in (finite logsumexp); a row whose positive is invalid is not counted
            # (elementwise: an indexed assignment of a host scalar would sync the GPU)
            allowed |= torch.arange(allowed.shape[1], device=device)[None, :] == positive[:, None]
            q = features[q_mod][term.query]
            q_ok = valid.get(q_mod, {}).get(term.query)
            row_valid = ok_all[positive] if q_ok is None else ok_all[positive] & q_ok.to(device).bool()
            logits = q @ keys_all.to(q.dtype).T / temperature
            tables.append(LogitTable(term, q_mod, k_mod, order, keys_all, logits, allowed, positive, row_valid))
    return tables


def gdt_nce_loss(features: dict[str, dict[str, Tensor]], valid: dict[str, dict[str, Tensor]],
                 terms: list[NCETerm], temperature: float = 0.07, symmetric: bool = True) -> dict[str, Tensor]:
    """GDT's loss of one hypothesis on this process's share of the batch.

    Args:
        features: ``{modality: {transform: B×D}}`` for exactly two modalities (e.g. ``"video"`` and
            ``"audio"``), L2-normalised, the same local batch on every process.
        valid: ``{modality: {transform: B bool}}``; a missing entry means all valid. A sample whose
            audio is invalid is no query, no positive and no negative.
        terms: the hypothesis (:func:`hypothesis_terms`).
        symmetric: both directions (GDT); False: only the first modality's features are queries
            (STiCA's small-to-large crop terms).

    Returns ``{"loss": Σ_terms weight · mean over valid rows of the global batch, "nce_acc": fraction of
    valid rows whose positive has the largest logit}``. Each process returns its rows' share scaled so
    that the mean over processes (what DDP's gradient averaging does) is the global-batch loss.
    """
    world = world_size()
    loss = None
    hits = count = 0.0
    for table in gdt_logit_tables(features, valid, terms, temperature, symmetric):
        rows = masked_nce_rows(table.logits, table.positive, table.allowed)
        weights = table.row_valid.to(rows.dtype)
        n_global = _all_reduce_sum(weights.sum().detach()).clamp_min(1.0)
        term_loss = (rows * weights).sum() * world / n_global
        loss = table.term.weight * term_loss if loss is None else loss + table.term.weight * term_loss
        with torch.no_grad():
            masked = table.logits.masked_fill(~table.allowed, float("-inf"))
            best = masked.argmax(dim=1) == table.positive
            hits = hits + (best & table.row_valid).sum()
            count = count + table.row_valid.sum()
    acc = torch.as_tensor(hits, dtype=torch.float32) / torch.as_tensor(count, dtype=torch.float32).clamp_min(1.0)
    return {"loss": loss, "nce_acc": acc.detach()}
