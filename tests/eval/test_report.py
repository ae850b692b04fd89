"""report.json / report.md contents, plots, and the run comparison table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vidssl.errors import UserError
from vidssl.eval.report import compare_runs, load_report, plot_training_curve, read_metrics_csv, write_report


def test_write_report_json_md_png(tmp_path):
    confusion = np.array([[3, 1], [0, 4]])
    report = write_report(
        tmp_path, "svm", {"top1": 0.875, "top5": 1.0},
        per_split={1: {"top1": 0.875, "top5": 1.0}}, config={"C": [1e-4]},
        checkpoint={"source": "runs/x", "hash": "deadbeef"}, views={"temporal_clips": 10, "spatial_crops": 3},
        dataset="data/demo", confusions={"": confusion}, class_names=["a", "b"], extra={"seconds": 1.5},
    )
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == report
    assert on_disk["results"] == {"top1": 0.875, "top5": 1.0}
    assert on_disk["per_split"] == {"1": {"top1": 0.875, "top5": 1.0}}
    assert on_disk["checkpoint"]["hash"] == "deadbeef" and on_disk["views"]["spatial_crops"] == 3
    assert on_disk["images"] == ["confusion.png"]
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "report.md").read_text()
    for text in ("# vidssl eval: svm", "| top1 | 0.8750 |", "deadbeef", "## Resolved config", "![confusion](confusion.png)"):
        assert text in markdown


def test_nan_and_numpy_values_are_json_safe(tmp_path):
    write_report(tmp_path, "knn", {"top1": np.float32(0.5), "top5": float("nan")})
    assert json.loads((tmp_path / "report.json").read_text())["results"] == {"top1": 0.5, "top5": None}


def test_compare_runs_table(tmp_path):
    write_report(tmp_path / "a", "linear", {"top1": 0.5}, checkpoint={"hash": "aaaaaaaaaaaaaaaa"})
    write_report(tmp_path / "b", "retrieval", {"R@1": 0.25})
    table = compare_runs([tmp_path / "a", tmp_path / "b"]).splitlines()
    assert table[0] == "| run | protocol | checkpoint | top1 | R@1 |"
    assert table[2].endswith("| linear | aaaaaaaaaaaa | 0.5000 | – |")
    assert table[3].endswith("| retrieval |  | – | 0.2500 |")


def test_load_report_errors(tmp_path):
    with pytest.raises(UserError, match="no report.json"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{broken")
    with pytest.raises(UserError, match="not valid JSON"):
        load_report(tmp_path)


def test_training_curve_from_lightning_metrics_csv(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,step,train/loss,probe/acc\n0,4,2.5,\n0,9,2.0,0.3\n1,14,,0.4\n")
    series = read_metrics_csv(csv)
    assert series["train/loss"] == [(4.0, 2.5), (9.0, 2.0)]
    assert series["probe/acc"] == [(9.0, 0.3), (14.0, 0.4)]
    assert plot_training_curve(csv, tmp_path / "curve.png").stat().st_size > 0
    empty = tmp_path / "empty.csv"
    empty.write_text("epoch,step\n")
    assert plot_training_curve(empty, tmp_path / "none.png") is None
