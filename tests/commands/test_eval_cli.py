"""`vidssl eval …`, `vidssl extract` and `vidssl report` on the tiny embedded dataset.

Numbers are checked by recomputing them from the features `vidssl extract` writes (the same cache
entries), and the views/normalisation an encoder is fed by its input contract through report.json.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidssl.cli import main
from vidssl.eval.features import FeatureSet
from vidssl.eval.knn import evaluate_knn
from vidssl.eval.linear import LinearProbeConfig, evaluate_linear
from vidssl.eval.svm import evaluate_svm
from vidssl.models import build_random_encoder, save_encoder
from vidssl.models.contract import InputContract

# On the CPU, so recomputed numbers match bit for bit (bf16 autocast on a GPU need not).
TINY = ["--backbone", "r3d18_fgkv_tiny", "--views", "demo_quick", "--num-workers", "0", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("feature_cache"))


def run_eval(protocol, demo_root, out, cache_dir, *extra):
    code = main(["eval", protocol, "--data", str(demo_root), "--out", str(out), "--cache-dir", cache_dir, *TINY, *extra])
    assert code == 0
    return json.loads((out / "report.json").read_text())


def extracted(demo_root, tmp_path, cache_dir, subset, *args, source=TINY):
    """Features of ``subset`` via `vidssl extract` (a cache hit after an eval with the same settings)."""
    out = tmp_path / f"features_{subset}_{len(list(tmp_path.iterdir()))}"
    assert main(["extract", "--data", str(demo_root), "--set", subset, "--out", str(out), "--cache-dir", cache_dir,
                 *source, *args]) == 0
    return FeatureSet.load(out)


def test_knn_report_contents(demo_root, tmp_path, cache_dir):
    report = run_eval("knn", demo_root, tmp_path / "knn", cache_dir, "--k", "5")
    assert report["protocol"] == "knn"
    train = extracted(demo_root, tmp_path, cache_dir, "train")  # kNN: the test views of the train videos
    test = extracted(demo_root, tmp_path, cache_dir, "test")
    expected = evaluate_knn(train.features, train.labels, test.features, test.labels, k=5, num_classes=10)
    # the number of videos evaluated stands next to every accuracy
    assert report["results"] == {"top1": expected.top1, "top5": expected.top5, "test_videos": 10, "train_videos": 30, "excluded_videos": 0}
    assert report["excluded"] == []
    assert report["input_contract"] == "none" and report["views_from"] == "--views" and report["notes"] == []
    assert report["checkpoint"]["source"] == "random:r3d18_fgkv_tiny" and report["checkpoint"]["hash"]
    assert report["views"]["name"] == "demo_quick" and report["views"]["temporal_clips"] == 1
    assert report["config"]["k"] == 5 and report["config"]["folds"] == [1]
    assert list(report["per_split"]) == ["1"]
    assert (tmp_path / "knn" / "confusion.png").stat().st_size > 0
    markdown = (tmp_path / "knn" / "report.md").read_text()
    assert "# vidssl eval: knn" in markdown and "| top1 |" in markdown and report["checkpoint"]["hash"] in markdown
    assert "- input contract: none (views from --views)" in markdown


def test_svm_sweep_reports_each_C(demo_root, tmp_path, cache_dir):
    report = run_eval("svm", demo_root, tmp_path / "svm", cache_dir, "--C", "0.001", "1")
    assert set(report["results"]["sweep"]) == {"C=0.001", "C=1"}
    assert report["results"]["C"] == 0.001
    assert report["config"]["train_passes"] == 1
    train = extracted(demo_root, tmp_path, cache_dir, "train", "--passes", "1")
    test = extracted(demo_root, tmp_path, cache_dir, "test")
    results = evaluate_svm(train.features, train.labels, test.features, test.labels, C=[0.001, 1.0], num_classes=10)
    assert report["results"]["sweep"] == {f"C={r.C:g}": {"top1": r.top1, "top5": r.top5} for r in results}
    assert (report["results"]["top1"], report["results"]["top5"]) == (results[0].top1, results[0].top5)


def test_retrieval_and_linear(demo_root, tmp_path, cache_dir):
    retrieval = run_eval("retrieval", demo_root, tmp_path / "r", cache_dir)
    values = [retrieval["results"][f"R@{k}"] for k in (1, 5, 10, 20)]
    assert values == sorted(values) and values[-1] == 1.0  # 30 train videos of 10 classes: top 20 always hits
    linear = run_eval("linear", demo_root, tmp_path / "lin", cache_dir, "--epochs", "3")
    assert linear["config"]["linear"]["epochs"] == 3 and linear["config"]["train_passes"] == 1  # demo_quick's
    train = extracted(demo_root, tmp_path, cache_dir, "train", "--passes", "1")
    test = extracted(demo_root, tmp_path, cache_dir, "test")
    expected = evaluate_linear(train.features, train.labels, test.features, test.labels,
                               LinearProbeConfig(epochs=3, warmup_epochs=3), 10)
    assert linear["results"] == {"top1": expected.top1, "top5": expected.top5, "train_loss": expected.train_loss,
                                 "test_videos": 10, "train_videos": 30, "excluded_videos": 0}


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
    meta = json.loads((tmp_path / "f" / "meta.json").read_text())
    assert meta["input_contract"] == "none" and meta["protocol"]["name"] == "demo_quick"
    assert main(args) == 0
    assert "(hit in cache)" in capsys.readouterr().out


def test_report_compares_runs(demo_root, tmp_path, cache_dir, capsys):
    run_eval("knn", demo_root, tmp_path / "a", cache_dir, "--k", "1")
    run_eval("retrieval", demo_root, tmp_path / "b", cache_dir)
    capsys.readouterr()
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp.md")]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("| run | protocol | checkpoint | top1 | top5 | test_videos | train_videos")
    assert "| R@1 |" in table.splitlines()[0]
    assert "| knn |" in table and "| retrieval |" in table
    assert (tmp_path / "cmp.md").read_text() == table


@pytest.mark.slow
def test_finetune_tiny_on_cpu(demo_root, tmp_path):
    code = main(["eval", "finetune", "--backbone", "r3d18_fgkv_tiny", "--data", str(demo_root), "--out",
                 str(tmp_path / "ft"), "--preset", "tiny", "--num-workers", "0", "--quiet", "epochs=2", "batch_size=8"])
    assert code == 0
    report = json.loads((tmp_path / "ft" / "report.json").read_text())
    top1 = report["results"]["top1"]
    assert report["results"]["top1_per_epoch"] == {"1": top1}  # the last epoch only, and it is the reported one
    assert top1 * 10 == pytest.approx(round(top1 * 10)) and report["results"]["top5"] >= top1  # 10 test videos
    assert "top1_best_epoch_on_test" not in report["results"]
    assert report["config"]["finetune"]["epochs"] == 2
    assert (tmp_path / "ft" / "fold1" / "metrics.csv").is_file()


@pytest.mark.slow
def test_linear_on_augmented_clips_keeps_backbone_frozen(demo_root, tmp_path):
    report = run_eval("linear", demo_root, tmp_path / "clips", "unused", "--mode", "clips", "--epochs", "1",
                      "--train-batch-size", "8")
    assert report["config"]["mode"] == "clips"
    assert report["config"]["finetune"]["freeze_backbone"] is True
    top1 = report["results"]["top1"]
    assert top1 * 10 == pytest.approx(round(top1 * 10)) and report["results"]["top5"] >= top1  # 10 test videos
    assert report["views"]["name"] == "demo_quick" and report["config"]["finetune"]["protocol"] == "demo_quick"


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


# ----------------------------------------------------------------------------- the encoder's input contract
BRAVE = InputContract(mean=(0.0,) * 3, std=(1.0,) * 3, num_frames=4, stride=2, canvas=48, crop_size=40,
                      eval_views="brave")
RHO_BYOL = InputContract(mean=(0.45,) * 3, std=(0.225,) * 3, num_frames=8, stride=4, canvas=128, crop_size=112,
                         eval_views="fgkvmem")


def tiny_encoder(path, contract):
    """A tiny R3D-18 saved with ``contract`` in its metadata, as pretraining writes it."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = build_random_encoder("r3d18_fgkv_tiny")
    return str(save_encoder(module, path, "r3d18_fgkv_tiny", {}, contract=contract))


def fake_extraction(monkeypatch):
    """Replace feature extraction (not the protocol choice) with separable features; record every call."""
    calls = []

    def fake(encoder, info, manifest, protocol, split, fold, *, passes=0, **kwargs):
        labels = np.array([r.label for r in manifest.subset(split=split, fold=fold).records])
        views = passes or protocol.views_per_video
        rng = np.random.default_rng(len(calls))
        features = np.eye(10, 16)[labels][:, None, :] * 5 + 0.01 * rng.normal(size=(len(labels), views, 16))
        calls.append({"protocol": protocol, "split": split, "passes": passes, "contract": info.contract})
        return FeatureSet(features.astype(np.float32), labels, np.arange(len(labels)), {})

    monkeypatch.setattr("vidssl.eval.protocols.extract_features", fake)
    return calls


def test_linear_on_a_brave_encoder_normalises_with_mean_0_std_1(demo_root, tmp_path, cache_dir):
    """BraVe feeds [0, 1] pixels: `--views demo_quick` picks the clip geometry, never the normalisation."""
    checkpoint = tiny_encoder(tmp_path / "brave.safetensors", BRAVE)
    source = ["--checkpoint", checkpoint, "--views", "demo_quick", "--num-workers", "0", "--quiet", "--device", "cpu"]
    code = main(["eval", "linear", "--data", str(demo_root), "--out", str(tmp_path / "lin"), "--cache-dir", cache_dir,
                 "--epochs", "2", *source])
    assert code == 0
    report = json.loads((tmp_path / "lin" / "report.json").read_text())
    views = report["views"]
    assert views["mean"] == [0.0, 0.0, 0.0] and views["std"] == [1.0, 1.0, 1.0]
    # demo protocols take the contract's clip geometry too
    assert (views["name"], views["num_frames"], views["stride"], views["canvas"], views["crop_size"]) == (
        "demo_quick", 4, 2, [48, 48], 40)
    assert InputContract.from_dict(report["input_contract"]) == BRAVE
    assert report["checkpoint"]["contract"] == report["input_contract"] and report["views_from"] == "--views"
    (note,) = report["notes"]
    assert "--views demo_quick normalises with mean 0.45 / std 0.225" in note and "contract wins" in note
    assert note in (tmp_path / "lin" / "report.md").read_text()
    # The numbers come from features normalised that way: recompute them from `vidssl extract`'s.
    train = extracted(demo_root, tmp_path, cache_dir, "train", "--passes", "1", source=source)
    test = extracted(demo_root, tmp_path, cache_dir, "test", source=source)
    assert train.meta["protocol"]["mean"] == [0.0, 0.0, 0.0] and train.meta["protocol"]["num_frames"] == 4
    expected = evaluate_linear(train.features, train.labels, test.features, test.labels,
                               LinearProbeConfig(epochs=2, warmup_epochs=2), 10)
    assert report["results"]["top1"] == expected.top1 and report["results"]["train_loss"] == expected.train_loss


def test_linear_defaults_to_the_contracts_views(demo_root, tmp_path, monkeypatch):
    calls = fake_extraction(monkeypatch)
    checkpoint = tiny_encoder(tmp_path / "brave.safetensors", BRAVE)
    assert main(["eval", "linear", "--checkpoint", checkpoint, "--data", str(demo_root), "--out", str(tmp_path / "o"),
                 "--no-cache", "--quiet", "--epochs", "20"]) == 0
    assert {c["protocol"].name for c in calls} == {"brave"}  # not linear's fgkvmem default
    assert all(c["protocol"].mean == (0.0,) * 3 and c["protocol"].crop_layout == "diagonal" for c in calls)
    assert [(c["split"], c["passes"]) for c in calls] == [("train", 10), ("test", 0)]  # BraVe's 10 passes
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["views"]["name"] == "brave" and report["views_from"] == "contract"
    assert report["results"]["top1"] == 1.0  # separable fake features: the labels travel with them


def test_svm_on_a_rho_byol_encoder_uses_fgkvmem_views_and_its_normalisation(demo_root, tmp_path, monkeypatch):
    """Without a contract `eval svm` takes BraVe's /255-only views; a ρBYOL encoder needs 0.45 / 0.225."""
    calls = fake_extraction(monkeypatch)
    checkpoint = tiny_encoder(tmp_path / "rho.safetensors", RHO_BYOL)
    assert main(["eval", "svm", "--checkpoint", checkpoint, "--data", str(demo_root), "--out", str(tmp_path / "svm"),
                 "--no-cache", "--quiet", "--C", "1"]) == 0
    assert [(c["split"], c["passes"]) for c in calls] == [("train", 1), ("test", 0)]
    for call in calls:
        protocol = call["protocol"]
        assert protocol.name == "fgkvmem" and protocol.crop_layout == "long_side"
        assert protocol.mean == (0.45,) * 3 and protocol.std == (0.225,) * 3
        assert (protocol.num_frames, protocol.stride, protocol.crop_size) == (16, 4, 112)
        assert InputContract.from_dict(call["contract"]) == RHO_BYOL
    report = json.loads((tmp_path / "svm" / "report.json").read_text())
    assert report["views"]["name"] == "fgkvmem" and report["views"]["mean"] == [0.45] * 3
    assert report["views_from"] == "contract" and report["notes"] == [] and report["config"]["train_passes"] == 1
    assert report["results"]["top1"] == 1.0


def test_extract_follows_the_contract_and_records_it(demo_root, tmp_path, cache_dir):
    demo = InputContract(mean=(0.45,) * 3, std=(0.225,) * 3, num_frames=4, stride=3, canvas=40, crop_size=32,
                         eval_views="demo_quick")
    checkpoint = tiny_encoder(tmp_path / "demo.safetensors", demo)
    features = extracted(demo_root, tmp_path, cache_dir, "test", source=["--checkpoint", checkpoint, "--quiet",
                                                                          "--num-workers", "0"])
    assert features.features.shape[:2] == (10, 1)
    meta = features.meta
    assert (meta["protocol"]["name"], meta["protocol"]["num_frames"], meta["protocol"]["crop_size"]) == ("demo_quick", 4, 32)
    assert InputContract.from_dict(meta["input_contract"]) == demo and meta["views_from"] == "contract"


def test_a_contract_for_another_modality_is_a_user_error(demo_root, tmp_path, capsys):
    checkpoint = tiny_encoder(tmp_path / "audio.safetensors", InputContract(modality="audio", eval_views="fgkvmem"))
    code = main(["eval", "knn", "--checkpoint", checkpoint, "--data", str(demo_root), "--out", str(tmp_path / "x"),
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "input contract is for 'audio' input" in err
