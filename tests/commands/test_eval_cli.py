"""`vidssl eval …`, `vidssl extract` and `vidssl report` on the tiny embedded dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vidssl.cli import main

TINY = ["--backbone", "r3d18_fgkv_tiny", "--views", "demo_quick", "--num-workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("feature_cache"))


def run_eval(protocol, demo_root, out, cache_dir, *extra):
    code = main(["eval", protocol, "--data", str(demo_root), "--out", str(out), "--cache-dir", cache_dir, *TINY, *extra])
    assert code == 0
    return json.loads((out / "report.json").read_text())


def test_knn_report_contents(demo_root, tmp_path, cache_dir):
    report = run_eval("knn", demo_root, tmp_path / "knn", cache_dir, "--k", "5")
    assert report["protocol"] == "knn"
    assert 0.0 <= report["results"]["top1"] <= report["results"]["top5"] <= 1.0
    assert report["checkpoint"]["source"] == "random:r3d18_fgkv_tiny" and report["checkpoint"]["hash"]
    assert report["views"]["name"] == "demo_quick" and report["views"]["temporal_clips"] == 1
    assert report["config"]["k"] == 5 and report["config"]["folds"] == [1]
    assert list(report["per_split"]) == ["1"]
    assert (tmp_path / "knn" / "confusion.png").stat().st_size > 0
    markdown = (tmp_path / "knn" / "report.md").read_text()
    assert "# vidssl eval: knn" in markdown and "| top1 |" in markdown and report["checkpoint"]["hash"] in markdown


def test_svm_sweep_reports_each_C(demo_root, tmp_path, cache_dir):
    report = run_eval("svm", demo_root, tmp_path / "svm", cache_dir, "--C", "0.001", "1")
    assert set(report["results"]["sweep"]) == {"C=0.001", "C=1"}
    assert report["results"]["C"] == 0.001
    assert report["config"]["train_passes"] == 1


def test_retrieval_and_linear(demo_root, tmp_path, cache_dir):
    retrieval = run_eval("retrieval", demo_root, tmp_path / "r", cache_dir)
    values = [retrieval["results"][f"R@{k}"] for k in (1, 5, 10, 20)]
    assert values == sorted(values) and values[-1] == 1.0  # 30 train videos of 10 classes: top 20 always hits
    linear = run_eval("linear", demo_root, tmp_path / "lin", cache_dir, "--epochs", "3")
    assert 0.0 <= linear["results"]["top1"] <= 1.0
    assert linear["config"]["linear"]["epochs"] == 3


@pytest.mark.slow
def test_split_all_reports_each_split_and_mean(demo_root, tmp_path, cache_dir):
    report = run_eval("knn", demo_root, tmp_path / "all", cache_dir, "--split", "all", "--k", "3")
    assert sorted(report["per_split"]) == ["1", "2", "3"]
    mean = np.mean([report["per_split"][s]["top1"] for s in ("1", "2", "3")])
    assert report["results"]["top1"] == pytest.approx(mean)
    assert {f"confusion_split{s}.png" for s in (1, 2, 3)} <= set(report["images"])
    assert "## Per split" in (tmp_path / "all" / "report.md").read_text()


def test_extract_writes_features_and_hits_cache(demo_root, tmp_path, cache_dir, capsys):
    args = ["extract", "--data", str(demo_root), "--set", "test", "--out", str(tmp_path / "f"), "--cache-dir", cache_dir, *TINY]
    assert main(args) == 0
    with np.load(tmp_path / "f" / "features.npz") as data:
        assert data["features"].shape[:2] == (10, 1) and data["labels"].shape == (10,)
    assert main(args) == 0
    assert "(hit in cache)" in capsys.readouterr().out


def test_report_compares_runs(demo_root, tmp_path, cache_dir, capsys):
    run_eval("knn", demo_root, tmp_path / "a", cache_dir, "--k", "1")
    run_eval("retrieval", demo_root, tmp_path / "b", cache_dir)
    capsys.readouterr()
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp.md")]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("| run | protocol | checkpoint | top1 | top5 | R@1")
    assert "| knn |" in table and "| retrieval |" in table
    assert (tmp_path / "cmp.md").read_text() == table


@pytest.mark.slow
def test_finetune_tiny_on_cpu(demo_root, tmp_path):
    code = main(["eval", "finetune", "--backbone", "r3d18_fgkv_tiny", "--data", str(demo_root), "--out",
                 str(tmp_path / "ft"), "--preset", "tiny", "--num-workers", "0", "--quiet", "epochs=2", "batch_size=8"])
    assert code == 0
    report = json.loads((tmp_path / "ft" / "report.json").read_text())
    assert 0.0 <= report["results"]["top1"] <= 1.0
    assert list(report["results"]["top1_per_epoch"]) == ["1"]  # the last epoch only
    assert "top1_best_epoch_on_test" not in report["results"]
    assert report["config"]["finetune"]["epochs"] == 2
    assert (tmp_path / "ft" / "fold1" / "metrics.csv").is_file()


@pytest.mark.slow
def test_linear_on_augmented_clips_keeps_backbone_frozen(demo_root, tmp_path):
    report = run_eval("linear", demo_root, tmp_path / "clips", "unused", "--mode", "clips", "--epochs", "1",
                      "--train-batch-size", "8")
    assert report["config"]["mode"] == "clips"
    assert report["config"]["finetune"]["freeze_backbone"] is True
    assert 0.0 <= report["results"]["top1"] <= 1.0


# ----------------------------------------------------------------------------- bad inputs: one line, exit 2
@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint", "/nonexistent/run"], "checkpoint '/nonexistent/run' does not exist"),
        (["--backbone", "r3d18_nope"], "unknown backbone 'r3d18_nope'"),
        (["--backbone", "r3d18_fgkv_tiny", "--views", "demoo"], "did you mean 'demo'"),
        (["--backbone", "r3d18_fgkv_tiny", "--split", "4"], "split 4 not in this dataset"),
        ([], "give exactly one of --checkpoint PATH or --backbone NAME"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(demo_root, tmp_path, capsys, args, message):
    code = main(["eval", "knn", "--data", str(demo_root), "--out", str(tmp_path / "x"), "--quiet", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


def test_data_root_without_split_files(tmp_path, capsys):
    (tmp_path / "videos" / "ClassA").mkdir(parents=True)
    code = main(["eval", "knn", "--backbone", "r3d18_fgkv_tiny", "--data", str(tmp_path / "videos"),
                 "--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err


def test_missing_data_root(tmp_path, capsys):
    code = main(["eval", "svm", "--backbone", "r3d18_fgkv_tiny", "--data", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "x"), "--quiet"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_report_of_a_directory_without_report(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no report.json" in capsys.readouterr().err
