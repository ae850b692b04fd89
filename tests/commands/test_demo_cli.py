"""`vidssl demo --quick`: every step of the main command, end to end on the tiny dataset."""

from __future__ import annotations

import json

import pytest

from vidssl.cli import main


@pytest.mark.slow
def test_demo_quick_writes_the_contract(demo_root, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--data", str(demo_root), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    # The contract scripts depend on: results.{pretrained,random}.{linear,svm,knn} in [0, 1], seconds.
    assert set(report["results"]) == {"pretrained", "random"}
    for encoder in ("pretrained", "random"):
        assert set(report["results"][encoder]) == {"linear", "svm", "knn"}
        assert all(0.0 <= v <= 1.0 for v in report["results"][encoder].values())
    assert report["seconds"] > 0
    assert report["encoders"]["pretrained"]["hash"] != report["encoders"]["random"]["hash"]
    assert report["encoders"]["random"]["source"].startswith("random:")
    markdown = (out / "report.md").read_text()
    assert "| linear |" in markdown and "| svm |" in markdown and "| knn |" in markdown
    for image in report["images"]:
        assert (out / image).read_bytes()[:4] == b"\x89PNG"
    assert "confusion_pretrained_linear.png" in report["images"]
    printed = capsys.readouterr().out
    assert "pretrained" in printed and "random init" in printed


def test_demo_rejects_a_data_dir_that_is_a_file(tmp_path, capsys):
    bogus = tmp_path / "file.txt"
    bogus.write_text("not a dataset")
    assert main(["demo", "--quick", "--out", str(tmp_path / "o"), "--data", str(bogus), "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_demo_rejects_an_unknown_preset_or_override(tmp_path, demo_root, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "o"), "--data", str(demo_root), "--quiet",
                 "--preset", "fgkvmem_nope"]) == 2
    assert "unknown preset 'fgkvmem_nope'" in capsys.readouterr().err
    assert main(["demo", "--quick", "--out", str(tmp_path / "o"), "--data", str(demo_root), "--quiet",
                 "trainer.max_stepz=3"]) == 2
    assert "unknown config key 'trainer.max_stepz'" in capsys.readouterr().err
