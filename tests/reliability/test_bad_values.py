"""Issue 16 case 5: a value the user can fix gives one line and exit 2, never a traceback, and values
that would be silently wrong are refused (or, for kNN's k, reported as actually used)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from vidssl.cli import main
from vidssl.config import checked, from_dict
from vidssl.errors import ConfigError
from vidssl.eval.knn import evaluate_knn
from vidssl.methods.train import load_pretrain_config

PRESET = "byol_rho2_r3d18_demo_tiny"


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=1", "data.batch_size must be >= 2"),
    ("data.batch_size=0", "data.batch_size must be >= 2"),
    ("data.num_workers=-2", "data.num_workers must be >= 0 or -1"),
    ("method.num_frames=0", "method.num_frames must be >= 1"),
    ("optim.lr=-0.1", "optim.lr must be >= 0"),
    ("trainer.precision=bf17", "trainer.precision: 'bf17' is not one of"),
    ("trainer.devices=abc", "trainer.devices: 'abc' is not valid ('auto', a number of devices"),
    ("trainer.log_every=0", "trainer.log_every must be >= 1"),
    ("max_steps=0", "trainer.max_steps must be >= 1 or -1, got 0 (-1: no limit)"),
    ("trainer.max_epochs=0", "trainer.max_epochs must be >= 1"),
    ("method.crop_size=200", "method.crop_size=200 is larger than method.canvas=40"),
    ("data.decoder=ffmpeg", "data.decoder: 'ffmpeg' is not one of ['pyav', 'torchcodec']"),
])
def test_bad_pretrain_values_are_one_line_errors(override, message, capsys):
    code = main(["pretrain", "--preset", PRESET, "--print-config", override])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_good_values_still_pass():
    cfg = load_pretrain_config(PRESET, ["trainer.devices=2", "trainer.devices=0,1", "max_steps=-1",
                                        "trainer.precision=bf16-mixed", "data.batch_size=2"])
    assert cfg.trainer.devices == "0,1" and cfg.trainer.max_steps == -1


def test_checked_declares_the_rule_next_to_the_field():
    from dataclasses import dataclass

    @dataclass
    class Knobs:
        rate: float = checked(0.5, gt=0, le=1)
        mode: str = checked("a", choices=("a", "b"))

    assert from_dict(Knobs, {"rate": 1}).rate == 1
    with pytest.raises(ConfigError, match="rate must be > 0, got 0"):
        from_dict(Knobs, {"rate": 0})
    with pytest.raises(ConfigError, match=r"mode: 'c' is not one of \['a', 'b'\]"):
        from_dict(Knobs, {"mode": "c"})


@pytest.mark.parametrize("argv, message", [
    (["eval", "knn", "--k", "-1"], "--k must be >= 1, got -1"),
    (["eval", "knn", "--k", "0"], "--k must be >= 1, got 0"),
    (["eval", "svm", "--C", "-1"], "--C values must be > 0"),
    (["eval", "svm", "--clips", "0"], "--clips must be >= 1, got 0"),
    (["eval", "linear", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["extract", "--clips", "0"], "--clips must be >= 1, got 0"),
])
def test_bad_eval_flags_are_one_line_errors(argv, message, demo_root, tmp_path, capsys):
    code = main([*argv, "--backbone", "r3d18_fgkv_tiny", "--data", str(demo_root), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("argv", [
    ["eval", "knn", "--backbone", "r3d18_fgkv_tiny"],
    ["extract", "--backbone", "r3d18_fgkv_tiny"],
    ["pretrain", "--preset", PRESET],
])
def test_out_pointing_at_a_file_is_refused(argv, demo_root, tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("x")
    extra = [] if argv[0] == "pretrain" else ["--data", str(demo_root)]
    code = main([*argv, *extra, "--out", str(target), *( [f"data.root={demo_root}"] if argv[0] == "pretrain" else [])])
    err = capsys.readouterr().err
    assert code == 2 and "is a file, not a directory" in err and err.count("\n") == 1, err
    assert target.read_text() == "x"


def test_knn_with_k_above_the_train_set_reports_the_k_it_used():
    rng = np.random.default_rng(0)
    result = evaluate_knn(rng.normal(size=(6, 4)), np.arange(6) % 2, rng.normal(size=(3, 4)), np.array([0, 1, 0]), k=20)
    assert result.k == 6
    from vidssl.eval.features import FeatureSet
    from vidssl.eval.protocols import KNNSpec

    train = FeatureSet(rng.normal(size=(6, 1, 4)).astype(np.float32), np.arange(6) % 2, np.arange(6))
    test = FeatureSet(rng.normal(size=(3, 1, 4)).astype(np.float32), np.array([0, 1, 0]), np.arange(3))
    assert KNNSpec(k=20).score(train, test, 2).numbers["k_used"] == 6
    assert "k_used" not in KNNSpec(k=3).score(train, test, 2).numbers


def test_a_corrupt_feature_cache_entry_is_discarded_and_recomputed(demo_root, tmp_path, capsys):
    args = ["extract", "--backbone", "r3d18_fgkv_tiny", "--views", "demo_quick", "--data", str(demo_root),
            "--num-workers", "0", "--quiet", "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    (entry,) = (tmp_path / "cache").iterdir()
    (entry / "features.npz").write_bytes(b"PK\x03\x04 not really a zip")
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert "(miss in cache)" in capsys.readouterr().out
    with np.load(tmp_path / "a" / "features.npz") as a, np.load(tmp_path / "b" / "features.npz") as b:
        np.testing.assert_array_equal(a["features"], b["features"])


class _Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_a_poisoned_last_ckpt_on_resume_is_refused_without_running_it(demo_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    cfg = load_pretrain_config(PRESET, [f"data.root={demo_root}"])
    from vidssl.config import save_yaml, to_dict

    save_yaml(to_dict(cfg), out / "config.yaml")
    (out / "checkpoints" / "last.ckpt").write_bytes(pickle.dumps({"global_step": 1, "x": _Evil()}))
    code = main(["pretrain", "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot be read safely as a vidssl checkpoint" in err and err.count("\n") == 1
    assert not (tmp_path / "PWNED").exists()
