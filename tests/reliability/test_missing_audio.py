"""Issue 16 case 4: missing audio is never silence. `vidssl data check` decodes the audio and says
"audio track present but undecodable"; a BraVe V/A run counts the clips whose audio it masked out,
logs the count and names the videos at the end."""

from __future__ import annotations

import csv
import json

import pytest

from mutate import copy_dataset, replace_audio
from vidssl.cli import main
from vidssl.data.module import StreamDataModule
from vidssl.methods.train import load_pretrain_config, pretrain


@pytest.fixture(scope="module")
def odd_audio(demo_root, tmp_path_factory):
    """A copy of the tiny demo: the training videos of two classes lose their audio track, one more
    keeps a track whose packets decode to nothing."""
    root = copy_dataset(demo_root, tmp_path_factory.mktemp("audio") / "demo")
    train = (root / "ucfTrainTestlist" / "trainlist01.txt").read_text().split()
    train = [t for t in train if t.endswith(".mp4")]
    silent = [root / t for t in train if t.split("/")[0] in ("MoveUp", "MoveDown")]
    for path in silent:
        replace_audio(path, "dropped")
    garbage = next(root / t for t in train if t.split("/")[0] == "ZoomIn")
    replace_audio(garbage, "garbage")
    return root, silent, garbage


def test_data_check_reports_an_undecodable_audio_track(odd_audio, tmp_path, capsys):
    root, silent, garbage = odd_audio
    report = tmp_path / "check.json"
    assert main(["data", "check", str(root), "--clips", "1", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert f"  {garbage}: audio track present but undecodable" in out
    assert f"1 audio track present but undecodable" in out and f"{len(silent)} without" in out
    data = json.loads(report.read_text())
    assert data["audio_undecodable"] == [str(garbage)] and sorted(data["without_audio"]) == sorted(map(str, silent))
    assert data["counts"]["ok"] == data["counts"]["indexed"] == 40  # audio problems do not make a video unreadable


def test_brave_run_counts_and_names_the_clips_without_audio(odd_audio, tmp_path):
    root, silent, garbage = odd_audio
    cfg = load_pretrain_config("brave_va_tiny", [f"data.root={root}", "max_steps=3", "data.batch_size=10",
                                                 "data.num_workers=0", "trainer.log_every=1", "data.split=train"])
    messages = []
    out = pretrain(cfg, tmp_path / "run", log=messages.append)
    invalid = json.loads((out / "invalid_views.json").read_text())
    assert list(invalid) == ["broad_audio"]
    entry = invalid["broad_audio"]
    assert entry["clips"] == 30 and entry["invalid"] == len(entry["videos"]) >= 1  # one pass over the 30 videos
    assert set(entry["videos"]) <= {str(p) for p in [*silent, garbage]}
    assert set(entry["videos"]) == {str(p) for p in [*silent, garbage]}  # every one of them was read once
    summary = [m for m in messages if m.startswith("view 'broad_audio'")]
    assert summary and f"{entry['invalid']} of 30 clips" in summary[0] and "masked out, not fed as silence" in summary[0]
    with open(out / "metrics.csv") as f:
        logged = [float(r["data/invalid/broad_audio"]) for r in csv.DictReader(f) if r.get("data/invalid/broad_audio")]
    assert logged and max(logged) == entry["invalid"]  # the running count, logged per step
    with open(out / "metrics.csv") as f:
        kept = [float(r["train/audio_valid"]) for r in csv.DictReader(f) if r.get("train/audio_valid")]
    assert min(kept) < 1.0  # and BraVe's loss kept only the clips with real audio


def test_validity_counter_reads_the_batch_on_the_cpu():
    import torch

    data = StreamDataModule.__new__(StreamDataModule)
    data._validity, data.datasets = {}, {}
    batch = {"video": {"valid": {"a": torch.tensor([True, False, False]), "v": torch.tensor([True] * 3)},
                       "index": torch.tensor([4, 5, 6])}}
    data.note_validity(batch)
    assert data.validity_counts() == {"a": (2, 3), "v": (0, 3)}
    assert data._validity["a"]["records"] == {5, 6}
