"""Evaluation reports: accuracy helpers, ``report.json`` / ``report.md``, and plots.

Every ``vidssl eval <protocol> --out DIR`` ends in :func:`write_report`, which writes

- ``DIR/report.json``: ``{"protocol", "results", "per_split", "config", "checkpoint", "views",
  "input_contract", ...}``;
- ``DIR/report.md``: the same numbers as a readable page;
- ``DIR/confusion.png`` (or ``confusion_<name>.png``) when a confusion matrix is given.

:func:`compare_runs` turns several such directories into one Markdown table (``vidssl report``).
Plots use matplotlib's Agg backend so they work without a display.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from vidssl.errors import UserError


# ----------------------------------------------------------------------------- metrics
def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of rows of ``scores`` (N×C) whose true label (N,) is among the ``k`` highest scores.

    Ties are broken by class index (stable argsort), so all-equal scores rank class 0 first.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``num_classes×num_classes`` int matrix; row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


def mean_over_splits(per_split: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of every numeric entry across splits (nested dicts are averaged key by key).

    ``{1: {"top1": .5}, 2: {"top1": .7}}`` -> ``{"top1": .6}``. Keys missing from some split are
    averaged over the splits that have them.
    """
    splits = list(per_split.values())
    if not splits:
        return {}
    keys: list[str] = []
    for numbers in splits:
        keys.extend(k for k in numbers if k not in keys)
    mean: dict[str, Any] = {}
    for key in keys:
        values = [numbers[key] for numbers in splits if key in numbers]
        if all(isinstance(v, Mapping) for v in values):
            mean[key] = mean_over_splits(dict(enumerate(values)))
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            mean[key] = float(np.mean(values))
    return mean


# ----------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save a row-normalised confusion matrix (true class down, predicted across) as a PNG."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    n = len(class_names)
    size = max(4.0, min(16.0, 0.35 * n + 2))
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalised, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(n), labels=list(class_names), rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels=list(class_names), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def read_metrics_csv(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """Read a Lightning ``metrics.csv`` into ``{column: [(step, value), ...]}`` (empty cells skipped)."""
    series: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="") as handle:
        for row_number, row in enumerate(csv.DictReader(handle)):
            step_text = row.get("step") or row.get("epoch") or ""
            try:
                step = float(step_text)
            except ValueError:
                step = float(row_number)
            for column, text in row.items():
                if column in ("step", "epoch") or text in (None, ""):
                    continue
                try:
                    series.setdefault(column, []).append((step, float(text)))
                except ValueError:
                    continue
    return series


def plot_training_curve(metrics_csv: str | Path, path: str | Path, columns: Iterable[str] | None = None) -> Path | None:
    """Plot the pretraining losses of a Lightning ``metrics.csv`` (or ``columns``); None when nothing to plot.

    By default: every ``*loss*`` column except the online probe's, and the online probe's accuracy
    (``probe/acc``) on a second axis when it was logged.
    """
    series = read_metrics_csv(metrics_csv)
    wanted = list(columns) if columns is not None else [c for c in series if "loss" in c and not c.startswith("probe")]
    wanted = [c for c in wanted if series.get(c)]
    if not wanted:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for column in wanted:
        steps, values = zip(*series[column])
        ax.plot(steps, values, label=column)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("pretraining curve")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if columns is None and series.get("probe/acc"):
        twin = ax.twinx()
        steps, values = zip(*series["probe/acc"])
        twin.plot(steps, values, color="tab:gray", alpha=0.6, label="probe/acc (online, train batches)")
        twin.set_ylabel("accuracy")
        twin.set_ylim(0, 1)
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- JSON / Markdown
def _json_safe(value: Any) -> Any:
    """Convert numpy scalars/arrays, Paths and NaN to JSON-friendly values."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``data`` as indented JSON atomically (temp file + rename)."""
    from vidssl.io import atomic_write

    text = json.dumps(_json_safe(data), indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text), len(text), Path(path).name)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _flatten(numbers: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in numbers.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (int, float, str)) or value is None:
            flat[name] = value
    return flat


def render_markdown(report: Mapping[str, Any]) -> str:
    """A readable page for one report: headline numbers, per-split table, views, config."""
    lines = [f"# vidssl eval: {report.get('protocol', '?')}", ""]
    per_split_keys = list(report.get("per_split") or {})
    checkpoint = report.get("checkpoint") or {}
    if checkpoint:
        lines += [f"- encoder: `{checkpoint.get('source', '?')}`", f"- checkpoint hash: `{checkpoint.get('hash', '?')}`"]
    if report.get("dataset"):
        lines.append(f"- dataset: `{report['dataset']}`")
    if report.get("views"):
        lines.append(f"- views: {json.dumps(_json_safe(report['views']))}")
    if "input_contract" in report:
        contract = report["input_contract"]
        lines.append(f"- input contract: {contract if isinstance(contract, str) else json.dumps(_json_safe(contract))}"
                     + (f" (views from {report['views_from']})" if report.get("views_from") else ""))
    if report.get("seconds") is not None:
        lines.append(f"- wall time: {report['seconds']:.1f} s")
    heading = f"## Results (mean over splits {', '.join(per_split_keys)})" if len(per_split_keys) > 1 else "## Results"
    lines += ["", heading, "", "| metric | value |", "|---|---|"]
    for key, value in _flatten(report.get("results", {})).items():
        lines.append(f"| {key} | {_fmt(value)} |")
    per_split = report.get("per_split") or {}
    if len(per_split) > 1:  # headline = mean over splits; show each
        flat = {split: _flatten(numbers) for split, numbers in per_split.items()}
        metrics = []
        for numbers in flat.values():
            metrics.extend(m for m in numbers if m not in metrics)
        lines += ["", "## Per split", "", "| split | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for split, numbers in flat.items():
            lines.append(f"| {split} | " + " | ".join(_fmt(numbers.get(m, "")) for m in metrics) + " |")
    excluded = report.get("excluded") or []
    if excluded:
        lines += ["", f"## Excluded videos ({len(excluded)}, unreadable; not replaced)", "",
                  "| split | set | path | reason |", "|---|---|---|---|"]
        lines += [f"| {e.get('fold')} | {e.get('set')} | `{e.get('path')}` | {e.get('reason')} |" for e in excluded]
    for note in report.get("notes", []) or []:
        lines += ["", f"> {note}"]
    for image in report.get("images", []) or []:
        lines += ["", f"![{Path(image).stem}]({image})"]
    if report.get("config"):
        import yaml

        lines += ["", "## Resolved config", "", "```yaml", yaml.safe_dump(_json_safe(report["config"]), sort_keys=False).rstrip(), "```"]
    return "\n".join(lines) + "\n"


def write_report(
    out_dir: str | Path,
    protocol: str,
    results: Mapping[str, Any],
    *,
    per_split: Mapping[Any, Mapping[str, Any]] | None = None,
    config: Mapping[str, Any] | None = None,
    checkpoint: Mapping[str, Any] | None = None,
    views: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    confusions: Mapping[str, np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``report.json``, ``report.md`` and one confusion-matrix PNG per entry of ``confusions``.

    ``results`` are the headline numbers (fractions in [0, 1]); ``per_split`` maps split -> numbers;
    ``checkpoint`` is ``{"source", "hash"}``. Returns the report dict as written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for name, matrix in (confusions or {}).items():
        filename = "confusion.png" if name == "" else f"confusion_{name}.png"
        names = class_names if class_names is not None else [str(i) for i in range(len(matrix))]
        plot_confusion(matrix, names, out_dir / filename, title=f"{protocol} {name}".strip())
        images.append(filename)
    report: dict[str, Any] = {
        "protocol": protocol,
        "results": dict(results),
        "per_split": {str(k): v for k, v in (per_split or {}).items()},
        "config": dict(config or {}),
        "checkpoint": dict(checkpoint or {}),
        "views": dict(views or {}),
        "dataset": dataset,
        "images": images,
    }
    if extra:
        report.update(extra)
    report = _json_safe(report)
    write_json(report, out_dir / "report.json")
    (out_dir / "report.md").write_text(render_markdown(report))
    return report


def load_report(run_dir: str | Path) -> dict[str, Any]:
    """Read ``run_dir/report.json`` (or a report.json path); a missing/invalid file is a UserError."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise UserError(f"no report.json in '{run_dir}' (run `vidssl eval ... --out {run_dir}` first)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"'{path}' is not valid JSON: {exc}") from None


def compare_runs(run_dirs: Sequence[str | Path]) -> str:
    """Markdown table comparing the headline numbers of several report directories (one row per run)."""
    rows = []
    for run_dir in run_dirs:
        report = load_report(run_dir)
        rows.append((str(run_dir), report.get("protocol", "?"), _flatten(report.get("results", {})), report))
    metrics: list[str] = []
    for _, _, numbers, _ in rows:
        metrics.extend(m for m in numbers if m not in metrics)
    header = "| run | protocol | checkpoint | " + " | ".join(metrics) + " |"
    lines = [header, "|---" * (len(metrics) + 3) + "|"]
    for run_dir, protocol, numbers, report in rows:
        digest = str((report.get("checkpoint") or {}).get("hash", ""))[:12]
        cells = [_fmt(numbers[m]) if m in numbers and numbers[m] is not None else "–" for m in metrics]
        lines.append(f"| {run_dir} | {protocol} | {digest} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
