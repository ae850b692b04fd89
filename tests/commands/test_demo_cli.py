"""`vidssl demo --quick`: every step of the main command, end to end on the tiny dataset."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from vidssl.cli import main
from vidssl.config import load_yaml, save_yaml, to_dict
from vidssl.data.index import MANIFEST_NAME
from vidssl.eval.demo import DEMO_SETTINGS, pretrain_config
from vidssl.eval.features import extract_features, load_eval_encoder, open_dataset, pick_device, protocol_for
from vidssl.eval.knn import evaluate_knn
from vidssl.eval.linear import evaluate_linear
from vidssl.eval.svm import evaluate_svm
from vidssl.models import build_random_encoder, save_encoder
from vidssl.models.contract import InputContract


@pytest.mark.slow
def test_demo_quick_writes_the_contract(demo_root, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--data", str(demo_root), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    # The contract scripts depend on: results.{pretrained,random}.{linear,svm,knn} in [0, 1], seconds.
    assert set(report["results"]) == {"pretrained", "random"}
    for encoder in ("pretrained", "random"):
        assert set(report["results"][encoder]) == {"linear", "svm", "knn"}
        # top-1 over the 10 test videos of the tiny dataset
        assert all(v * 10 == pytest.approx(round(v * 10)) for v in report["results"][encoder].values())
    for protocol in ("linear", "svm", "knn"):
        assert report["margin"][protocol] == pytest.approx(
            report["results"]["pretrained"][protocol] - report["results"]["random"][protocol])
    assert report["seconds"] > 0
    # Both encoders were fed as pretraining fed the encoder (its input contract, from the run's config).
    method = load_yaml(out / "pretrain" / "config.yaml")["method"]
    assert report["input_contract"] != "none" and report["input_contract"]["num_frames"] == method["num_frames"]
    views = report["views"]
    assert (views["num_frames"], views["stride"], views["canvas"], views["crop_size"]) == (
        method["num_frames"], method["stride"], [method["canvas"]] * 2, method["crop_size"])
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


# ----------------------------------------------------------------------------- reuse and seeds
def file_stamps(root):
    """``{relative path: mtime_ns}`` of every file under ``root`` but the manifest cache ``vidssl data index`` keeps."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST_NAME}


class StopDemo(Exception):
    pass


def test_training_seed_does_not_regenerate_the_dataset(demo_root, tmp_path, monkeypatch):
    """`vidssl demo --seed 1 --data X` trains with seed 1 on X as it is (X was generated with data seed 0)."""
    data = tmp_path / "data"
    shutil.copytree(demo_root, data)  # copy2: modification times kept
    before = file_stamps(data)
    seen = []

    def stop_before_pretraining(cfg, run_dir, log=print):
        seen.append(cfg)
        raise StopDemo("stopped after the data step")

    monkeypatch.setattr("vidssl.eval.demo._pretrain", stop_before_pretraining)
    with pytest.raises(StopDemo, match="after the data step"):
        main(["demo", "--quick", "--seed", "1", "--out", str(tmp_path / "o"), "--data", str(data), "--quiet"])
    assert file_stamps(data) == before and len(before) > 40
    (cfg,) = seen
    assert (cfg.trainer.seed, cfg.data.demo_seed, cfg.data.demo_size) == (1, 0, "tiny")


def test_data_seed_goes_to_the_generator_and_the_config(tmp_path, monkeypatch):
    calls = []

    def fake_generate(root, size="default", seed=0, workers=None):
        calls.append((str(root), size, seed))
        raise StopDemo("generator called")

    from vidssl.data import demo

    monkeypatch.setitem(demo.EMBEDDED_GENERATORS, "clips", fake_generate)
    with pytest.raises(StopDemo, match="generator called"):
        main(["demo", "--quick", "--seed", "4", "--data-seed", "2", "--out", str(tmp_path / "o"),
              "--data", str(tmp_path / "d"), "--quiet"])
    assert calls == [(str(tmp_path / "d"), "tiny", 2)]
    # --dataset shapes reaches the shapes generator with the same seeds
    calls.clear()
    monkeypatch.setitem(demo.EMBEDDED_GENERATORS, "shapes", fake_generate)
    with pytest.raises(StopDemo, match="generator called"):
        main(["demo", "--quick", "--dataset", "shapes", "--data-seed", "3", "--out", str(tmp_path / "o2"),
              "--data", str(tmp_path / "s"), "--quiet"])
    assert calls == [(str(tmp_path / "s"), "tiny", 3)]


def demo_config(demo_root):
    """The resolved config `vidssl demo --quick --quiet --device cpu --data DEMO_ROOT` runs (seed 0, data seed 0)."""
    return pretrain_config(DEMO_SETTINGS["quick"], demo_root, str(pick_device("cpu")), 0, False, 0)


def test_demo_refuses_a_run_made_with_another_config(demo_root, tmp_path, monkeypatch, capsys):
    saved = to_dict(demo_config(demo_root))
    saved["trainer"]["max_steps"] = 5
    saved["method"]["crop_size"] = 24
    run_dir = tmp_path / "demo" / "pretrain"
    save_yaml(saved, run_dir / "config.yaml")
    (run_dir / "encoder.safetensors").write_bytes(b"an encoder trained another way")
    monkeypatch.setattr("vidssl.data.demo.generate_demo", lambda *a, **k: pytest.fail("must stop before any work"))
    code = main(["demo", "--quick", "--out", str(tmp_path / "demo"), "--data", str(demo_root), "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "differing keys: method.crop_size, trainer.max_steps" in err
    assert f"choose another --out or delete {run_dir}" in err


def test_demo_reuses_a_run_with_the_same_config_and_scores_like_the_protocols(demo_root, tmp_path, monkeypatch):
    """A finished run of the same config is reused (no pretraining); both encoders are fed as its contract
    says; the numbers are those of extract_features + the protocol functions."""
    settings = DEMO_SETTINGS["quick"]
    cfg = demo_config(demo_root)
    m = cfg.method
    run_dir = tmp_path / "demo" / "pretrain"
    save_yaml(to_dict(cfg), run_dir / "config.yaml")
    contract = InputContract(mean=(0.45,) * 3, std=(0.225,) * 3, num_frames=m.num_frames, stride=m.stride,
                             canvas=m.canvas, crop_size=m.crop_size, eval_views="demo")
    with torch.random.fork_rng():
        torch.manual_seed(5)
        module = build_random_encoder(m.backbone, **m.backbone_kwargs)
    save_encoder(module, run_dir / "encoder.safetensors", m.backbone, dict(m.backbone_kwargs), contract=contract)
    monkeypatch.setattr("vidssl.methods.train.pretrain", lambda *a, **k: pytest.fail("the finished run must be reused"))
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo"), "--data", str(demo_root), "--quiet",
                 "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    protocol = protocol_for(contract, settings.views).protocol
    views = report["views"]
    assert (views["name"], views["num_frames"], views["stride"], views["canvas"], views["crop_size"]) == (
        "demo_quick", m.num_frames, m.stride, [m.canvas] * 2, m.crop_size)
    assert InputContract.from_dict(report["input_contract"]) == contract and report["dataset"]["seed"] == 0
    manifest = open_dataset(demo_root)
    encoders = {"pretrained": load_eval_encoder(run_dir),
                "random": load_eval_encoder(backbone=m.backbone, backbone_kwargs=dict(m.backbone_kwargs), seed=0)}
    for name, (encoder, info) in encoders.items():
        common = dict(batch_size=settings.batch_size, progress=False, device="cpu", seed=0)
        views_train = extract_features(encoder, info, manifest, protocol, "train", 1, **common)
        passes_train = extract_features(encoder, info, manifest, protocol, "train", 1, passes=1, **common)
        test = extract_features(encoder, info, manifest, protocol, "test", 1, **common)
        knn = evaluate_knn(views_train.features, views_train.labels, test.features, test.labels, k=settings.knn_k,
                           num_classes=10)
        linear = evaluate_linear(passes_train.features, passes_train.labels, test.features, test.labels,
                                 settings.linear, 10)
        (svm,) = evaluate_svm(passes_train.features, passes_train.labels, test.features, test.labels,
                              C=settings.svm_C, num_classes=10)
        assert report["results"][name] == {"linear": linear.top1, "svm": svm.top1, "knn": knn.top1}, name
        assert report["top5"][name] == {"linear": linear.top5, "svm": svm.top5, "knn": knn.top5}, name
