"""Fuzz (fixed seed, runs in CI): random mutations of generated videos through `vidssl data check`,
feature extraction and training. Every bad file is named, no feature row belongs to another video,
and nothing crashes or hangs."""

from __future__ import annotations

import json

import numpy as np

from mutate import MUTATIONS, copy_dataset, replace_audio
from vidssl.cli import main
from vidssl.data.index import build_manifest
from vidssl.methods.train import load_pretrain_config, pretrain

SEED = 16
TINY = ["--backbone", "r3d18_fgkv_tiny", "--views", "demo_quick", "--num-workers", "0", "--quiet", "--device", "cpu",
        "--max-unreadable", "1"]


def _mutate(root, rng):
    """Mutate 3 test and 3 train videos of fold 1 (and drop one more file's audio): ``{path: mutation}``."""
    lists = root / "ucfTrainTestlist"
    test = [root / t for t in (lists / "testlist01.txt").read_text().split()]
    train = [root / t for t in (lists / "trainlist01.txt").read_text().split() if t.endswith(".mp4")]
    chosen = [*rng.choice(test, 3, replace=False), *rng.choice(train, 3, replace=False)]
    done = {}
    for path in chosen:
        mutation = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
        done[str(path)] = mutation(path, rng)
    silent = next(p for p in train if str(p) not in done)
    replace_audio(silent, "garbage", seed=SEED)
    return done


def test_fuzzed_dataset_every_bad_file_named_no_row_of_another_video(demo_root, tmp_path, capsys):
    root = copy_dataset(demo_root, tmp_path / "fuzzed")
    mutated = _mutate(root, np.random.default_rng(SEED))

    # 1. data check names every file it cannot decode, and only mutated ones
    assert main(["data", "check", str(root), "--clips", "2", "--json", str(tmp_path / "check.json")]) == 0
    check = json.loads((tmp_path / "check.json").read_text())
    bad = set(check["unreadable"])
    assert bad <= set(mutated) and bad, (bad, mutated)
    counts = check["counts"]
    assert counts["ok"] + counts["unreadable_at_probe"] + counts["broken"] == counts["indexed"]

    # 2. extraction: a row per readable video, its own; every other video named with its path
    assert main(["extract", "--data", str(demo_root), "--set", "test", "--out", str(tmp_path / "clean"),
                 "--cache-dir", str(tmp_path / "c1"), *TINY]) == 0
    assert main(["extract", "--data", str(root), "--set", "test", "--out", str(tmp_path / "fuzz"),
                 "--cache-dir", str(tmp_path / "c2"), *TINY]) == 0
    capsys.readouterr()
    manifest = build_manifest(root, write=False)
    readable = [r for r in manifest.subset("test", 1).records if r.error is None]
    all_test = {manifest.resolve(r) for r in manifest.subset("test", 1).records}
    with np.load(tmp_path / "fuzz" / "features.npz") as f, np.load(tmp_path / "clean" / "features.npz") as c:
        fuzz = {k: f[k] for k in ("features", "labels", "indices")}
        clean = {k: c[k] for k in ("features", "labels", "indices")}
    meta = json.loads((tmp_path / "fuzz" / "meta.json").read_text())
    kept = {manifest.resolve(readable[i]) for i in fuzz["indices"]}
    assert set(meta["excluded"]) == all_test - kept  # every video without a row is named
    assert set(meta["excluded"]) <= set(mutated)
    assert meta["videos"] == len(all_test) and meta["evaluated"] == len(kept)
    clean_manifest = build_manifest(demo_root, write=False)
    clean_rows = {clean_manifest.resolve(r).replace(str(demo_root), str(root)): row
                  for row, r in zip(clean["features"], [clean_manifest.subset("test", 1).records[i]
                                                        for i in clean["indices"]])}
    for row, label, index in zip(fuzz["features"], fuzz["labels"], fuzz["indices"]):
        path = manifest.resolve(readable[index])
        assert label == readable[index].label  # the row's label is its own video's
        if path not in mutated:  # an untouched video's row is exactly the clean dataset's row
            np.testing.assert_array_equal(row, clean_rows[path])

    # 3. training skips (and names) unreadable videos, marks the undecodable audio, and finishes
    cfg = load_pretrain_config("byol_rho2_r3d18_demo_tiny", [
        f"data.root={root}", "data.split=all", "max_steps=3", "data.batch_size=8", "data.num_workers=2",
        "method.backbone_kwargs={width: 4}", "method.num_frames=4", "method.canvas=32", "method.crop_size=24",
        "method.proj_hidden_dim=32", "method.proj_dim=16", "method.pred_hidden_dim=32", "trainer.progress_bar=false"])
    out = pretrain(cfg, tmp_path / "run", log=lambda _: None)
    skipped = json.loads((out / "skipped_videos.json").read_text())
    probe_rejected = {manifest.resolve(r) for r in manifest.records if r.error is not None}
    assert probe_rejected <= set(skipped) <= set(mutated)
    assert (out / "encoder.safetensors").is_file()
