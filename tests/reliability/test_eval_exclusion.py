"""Issue 16 case 1: evaluation never substitutes another video for one it cannot read.

A test video whose media data turns to garbage half-way (its index intact, so it probes fine) is
excluded from the features, counted and named in meta.json / report.json / report.md; every other
row is the very row a clean copy of the dataset gives; too many failures stop with an error.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mutate import copy_dataset, corrupt_middle
from vidssl.cli import main
from vidssl.data.datasets import VideoDataset, collate
from vidssl.data.index import build_manifest
from vidssl.errors import DataError
from vidssl.eval.exclusion import align_passes, check_exclusions
from vidssl.eval.features import clip_plan, get_protocol

TINY = ["--backbone", "r3d18_fgkv_tiny", "--views", "demo_quick", "--num-workers", "0", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def broken(demo_root, tmp_path_factory):
    """A copy of the tiny demo whose first test video breaks part-way through decoding."""
    root = copy_dataset(demo_root, tmp_path_factory.mktemp("broken") / "demo")
    first = (root / "ucfTrainTestlist" / "testlist01.txt").read_text().split()[0]
    victim = root / first
    corrupt_middle(victim, start=0.5, seed=0)
    return root, victim


def extract(root, out, *args):
    return main(["extract", "--data", str(root), "--set", "test", "--out", str(out), "--cache-dir", str(out) + "_cache",
                 *TINY, *args])


def load(out):
    with np.load(out / "features.npz") as data:
        arrays = {k: data[k] for k in ("features", "labels", "indices")}
    return arrays, json.loads((out / "meta.json").read_text())


def test_exclude_mode_returns_a_marker_and_collate_drops_it(broken):
    root, victim = broken
    manifest = build_manifest(root)
    plan = clip_plan(get_protocol("demo_quick"), augmented=False)
    dataset = VideoDataset(manifest, plan, split="test", fold=1, on_unreadable="exclude")
    bad = next(i for i, r in enumerate(dataset.records) if manifest.resolve(r) == str(victim))
    item = dataset[bad]
    assert set(item) == {"unreadable", "index"} and item["unreadable"][0] == str(victim) and int(item["index"]) == bad
    batch = collate([dataset[bad], dataset[(bad + 1) % len(dataset)]])
    assert batch["clips"]["clip"].shape[0] == 1 and batch["index"].tolist() == [(bad + 1) % len(dataset)]
    assert [entry[:2] for entry in batch["unreadable"]] == [(bad, str(victim))]
    assert "clips" not in collate([dataset[bad]])  # a batch of unreadable videos only has nothing to encode
    # training keeps its behaviour: it tolerates the frames the broken decode repeated (and replaces
    # a file it cannot decode at all: tests/data/test_datasets.py::test_corrupt_file_is_skipped_counted_and_reported)
    training = VideoDataset(manifest, plan, split="test", fold=1)
    tolerated = training[bad]
    assert int(tolerated["index"]) == bad and tolerated["skipped"] == ()


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_extract_excludes_the_broken_video_and_keeps_every_other_row(demo_root, broken, tmp_path, capsys, seed):
    root, victim = broken
    assert extract(demo_root, tmp_path / "clean", "--seed", str(seed)) == 0
    assert extract(root, tmp_path / "broken", "--seed", str(seed), "--max-unreadable", "0.2") == 0
    out = capsys.readouterr().out
    assert f"excluded 1 of 10 videos as unreadable" in out and str(victim) in out
    clean, _ = load(tmp_path / "clean")
    kept, meta = load(tmp_path / "broken")
    assert (meta["videos"], meta["evaluated"]) == (10, 9) and list(meta["excluded"]) == [str(victim)]
    assert len(kept["features"]) == 9 and len(np.unique(kept["indices"])) == 9
    # no row belongs to another video: each is the clean run's row of the same video, label included
    rows = {int(i): r for r, i in enumerate(clean["indices"])}
    assert len(rows) == 10 and set(rows) - set(kept["indices"].tolist()) != set()
    for position, index in enumerate(kept["indices"].tolist()):
        np.testing.assert_array_equal(kept["features"][position], clean["features"][rows[index]])
        assert kept["labels"][position] == clean["labels"][rows[index]]


def test_augmented_passes_exclude_a_video_any_pass_could_not_read(broken, tmp_path):
    root, victim = broken
    manifest = build_manifest(root)
    assert extract(root, tmp_path / "aug", "--seed", "2", "--passes", "2", "--max-unreadable", "0.2") == 0
    kept, meta = load(tmp_path / "aug")
    assert kept["features"].shape[:2] == (9, 2) and list(meta["excluded"]) == [str(victim)]
    records = manifest.subset("test", 1).records
    labels = {manifest.resolve(r): r.label for r in records}
    readable = [r for r in records if r.error is None]
    # every row carries the label of the record it names: nothing was drawn in another video's place
    assert [readable[i].label for i in kept["indices"]] == kept["labels"].tolist()
    assert str(victim) not in {manifest.resolve(readable[i]) for i in kept["indices"]} and str(victim) in labels


def test_too_many_unreadable_videos_stop_with_a_clear_error(broken, tmp_path, capsys):
    root, victim = broken
    assert extract(root, tmp_path / "strict") == 2  # 1 of 10 = 10 % > the default 5 %
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "1 of 10 videos of the test set of split 1 could not be read" in err
    assert str(victim) in err and "--max-unreadable" in err
    assert main(["eval", "knn", "--data", str(root), "--out", str(tmp_path / "knn0"), "--no-cache", *TINY]) == 2


def test_eval_report_counts_and_names_the_excluded_video(broken, tmp_path, capsys):
    root, victim = broken
    out = tmp_path / "knn"
    assert main(["eval", "knn", "--data", str(root), "--out", str(out), "--k", "5", "--no-cache",
                 "--max-unreadable", "0.2", *TINY]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["results"]["test_videos"] == 9 and report["results"]["train_videos"] == 30
    assert report["results"]["excluded_videos"] == 1
    assert [(e["fold"], e["set"], e["path"]) for e in report["excluded"]] == [(1, "test", str(victim))]
    assert "excluded 1 unreadable videos" in printed and str(victim) in printed
    markdown = (out / "report.md").read_text()
    assert "| test_videos | 9 |" in markdown and "## Excluded videos (1" in markdown and str(victim) in markdown


def test_align_passes_keeps_the_videos_every_pass_read():
    a = (np.arange(4, dtype=np.float32).reshape(4, 1, 1), np.array([0, 1, 0, 1]), np.array([0, 1, 2, 3]))
    b = (np.arange(10, 13, dtype=np.float32).reshape(3, 1, 1), np.array([0, 0, 1]), np.array([0, 2, 3]))
    features, labels, indices = align_passes([a, b])
    assert indices.tolist() == [0, 2, 3] and labels.tolist() == [0, 0, 1]
    assert features[:, :, 0].tolist() == [[0, 10], [2, 11], [3, 12]]


def test_check_exclusions_thresholds():
    check_exclusions({"videos": 100, "evaluated": 95, "excluded": {}}, 0.05)
    with pytest.raises(DataError, match="6 of 100 videos"):
        check_exclusions({"videos": 100, "evaluated": 94, "excluded": {"a.mp4": "bad"}}, 0.05)
    with pytest.raises(DataError, match="no video of the test set"):
        check_exclusions({"videos": 3, "evaluated": 0, "split": "test"}, 1.0)


def test_a_batch_of_only_unreadable_items_is_skipped_by_the_extractor(tmp_path):
    from types import SimpleNamespace

    from vidssl.eval.features import EncoderInfo, ViewProtocol, extract_features

    protocol = ViewProtocol("t", num_frames=2, stride=1, canvas=(8, 8), crop_size=6, temporal_clips=1, spatial_crops=1)

    class Half(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def failures(self):
            return {}

        def __getitem__(self, i):
            if i < 2:  # the whole first batch is unreadable
                return {"unreadable": (f"v{i}.mp4", "broken"), "index": torch.tensor(i)}
            return {"clips": {"clip": torch.full((1, 2, 8, 8, 3), i, dtype=torch.uint8)}, "label": i % 2, "index": i}

    class Mean(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3, 4))

    manifest = SimpleNamespace(root="/x", subset=lambda split, fold: SimpleNamespace(records=[]))
    result = extract_features(Mean(), EncoderInfo("m", "h"), manifest, protocol, batch_size=2, progress=False,
                              dataset_factory=lambda *a, **k: Half(), max_unreadable=0.5)
    assert result.indices.tolist() == [2, 3, 4, 5] and result.meta["excluded"] == {"v0.mp4": "broken", "v1.mp4": "broken"}
    with pytest.raises(DataError, match="2 of 6 videos"):
        extract_features(Mean(), EncoderInfo("m", "h"), manifest, protocol, batch_size=2, progress=False,
                         dataset_factory=lambda *a, **k: Half(), max_unreadable=0.2)
