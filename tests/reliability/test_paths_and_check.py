"""Issue 16 cases 7 and 8: list files cannot reach outside the dataset root unnoticed, and
`vidssl data check` tells the truth (whole-file decode, counts that add up, still images refused,
no claim of a manifest it could not write)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from mutate import copy_dataset, corrupt_middle, still_image
from vidssl.cli import main
from vidssl.data.index import build_manifest, load_manifest
from vidssl.errors import DataError


@pytest.fixture()
def escaping_csv(demo_root, tmp_path):
    """A csv-layout dataset whose train list names one video inside ROOT and one via ../.. outside it."""
    root = tmp_path / "data" / "set"
    (root / "videos").mkdir(parents=True)
    inside = sorted(demo_root.rglob("*.mp4"))[0]
    shutil.copy(inside, root / "videos" / "a.mp4")
    secret = tmp_path / "private.mp4"
    shutil.copy(inside, secret)
    (root / "train.csv").write_text("videos/a.mp4 0\n../../private.mp4 1\n")
    return root, secret


def test_paths_outside_the_root_are_refused_unless_allowed(escaping_csv, capsys):
    root, secret = escaping_csv
    with pytest.raises(DataError, match=r"1 video path\(s\) listed in its split files lie outside the dataset root"):
        build_manifest(root, format="csv")
    assert main(["data", "index", str(root), "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert "../../private.mp4" in err and "--allow-outside-root" in err and err.count("\n") == 1
    assert main(["data", "index", str(root), "--format", "csv", "--allow-outside-root"]) == 0
    manifest = load_manifest(root)  # the user's choice is kept with the manifest
    assert manifest.allow_outside_root and manifest.outside_root() == ["../../private.mp4"]
    data = json.loads((root / "vidssl_manifest.json").read_text())
    data["allow_outside_root"] = False  # a manifest without that consent is refused when read
    (root / "vidssl_manifest.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="lie outside the dataset root"):
        load_manifest(root)


def test_data_check_reports_paths_outside_the_root(escaping_csv, tmp_path, capsys):
    root, _ = escaping_csv
    report = tmp_path / "check.json"
    assert main(["data", "check", str(root), "--format", "csv", "--clips", "0", "--json", str(report)]) == 0
    assert "outside     1 listed paths lie outside ROOT" in capsys.readouterr().out
    assert json.loads(report.read_text())["outside_root"] == ["../../private.mp4"]
    assert not (root / "vidssl_manifest.json").exists()  # an inspection writes no manifest


def test_a_png_named_mp4_is_not_a_video(tmp_path):
    path = tmp_path / "v.mp4"
    still_image(path, np.random.default_rng(0))
    from vidssl.data.decode import probe
    from vidssl.errors import VideoDecodeError

    with pytest.raises(VideoDecodeError, match=r"a still image \(png\) named like a video"):
        probe(path)


def test_data_check_decodes_whole_files_and_its_counts_add_up(demo_root, tmp_path, capsys):
    root = copy_dataset(demo_root, tmp_path / "demo")
    test_list = (root / "ucfTrainTestlist" / "testlist01.txt").read_text().split()
    broken = root / test_list[0]
    corrupt_middle(broken, start=0.9)  # probes fine, breaks near its end: a clip at the start decodes
    png = root / test_list[1]
    still_image(png, np.random.default_rng(0))
    report = tmp_path / "check.json"
    assert main(["data", "check", str(root), "--clips", "0", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    counts = data["counts"]
    assert counts["indexed"] == 40 and counts["ok"] + counts["unreadable_at_probe"] + counts["broken"] == 40
    assert counts == {"indexed": 40, "ok": 38, "unreadable_at_probe": 1, "broken": 1, "missing_on_disk": 0}
    assert "40 indexed = 38 OK + 2 unreadable (1 at probe, 1 break while decoding)" in out
    assert "stream error after" in data["broken"][str(broken)] and "still image" in data["unreadable"][str(png)]
    # --fast decodes the first second only: the break near the end goes unseen (so it is not the default)
    assert main(["data", "check", str(root), "--clips", "0", "--fast", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["counts"]["broken"] == 0
    capsys.readouterr()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_index_on_a_read_only_root_does_not_claim_a_manifest(demo_root, tmp_path, capsys):
    root = copy_dataset(demo_root, tmp_path / "ro")
    os.chmod(root, 0o555)
    try:
        assert main(["data", "index", str(root)]) == 0
        out = capsys.readouterr().out
        assert "NOT written" in out and "--out FILE" in out and "-> " not in out
    finally:
        os.chmod(root, 0o755)


def test_index_does_not_claim_a_manifest_it_could_not_write(demo_root, tmp_path, capsys, monkeypatch):
    """The same through a failed write (the development machine runs as root, for which chmod is no barrier)."""
    from vidssl.data.index import Manifest

    root = copy_dataset(demo_root, tmp_path / "ro2")

    def refuse(self, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Manifest, "save", refuse)
    assert main(["data", "index", str(root)]) == 0
    out = capsys.readouterr().out
    assert "NOT written" in out and "-> " not in out
