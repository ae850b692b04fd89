"""Official folds: ``--split 1|2|3|all``.

UCF101 and HMDB51 ship 3 train/test splits; the seeds report each and their mean. A protocol is a
function ``fold -> numbers``; :func:`run_folds` runs it on every requested fold and returns the
headline numbers (the single fold's, or the mean over folds) plus the per-split table.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from vidssl.errors import UserError
from vidssl.eval.report import mean_over_splits


def parse_split(text: str | int, available: Sequence[int] = (1, 2, 3)) -> list[int]:
    """``"all"`` -> every available fold; ``"2"`` -> ``[2]``; ``"1,3"`` -> ``[1, 3]``.

    A fold the dataset does not have is a :class:`UserError` naming the folds it has.
    """
    available = sorted(int(f) for f in available)
    text = str(text).strip().lower()
    if text == "all":
        if not available:
            raise UserError("the dataset has no train/test split files")
        return available
    try:
        folds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--split must be a fold number, a comma list or 'all', got '{text}'") from None
    missing = [f for f in folds if f not in available]
    if missing or not folds:
        raise UserError(f"split {text} not in this dataset (it has splits {available or 'none'})")
    return folds


def run_folds(folds: Sequence[int], protocol: Callable[[int], Mapping[str, Any]]) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Run ``protocol(fold)`` for each fold; return ``(headline, per_split)``.

    With one fold the headline is that fold's numbers; with several it is their mean (the seeds'
    "average over the 3 splits").
    """
    per_split = {int(fold): dict(protocol(int(fold))) for fold in folds}
    if len(per_split) == 1:
        return dict(next(iter(per_split.values()))), per_split
    return mean_over_splits(per_split), per_split
