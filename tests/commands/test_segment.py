"""Smoke path on CPU: BaSSL pretraining on the embedded movies → `vidssl eval scenes` (fine-tune, val-selected,
five metrics) → `vidssl segment` on a generated movie with known cuts (timeline JSON/CSV, EDL, chapters,
contact sheet, clips cut without re-encoding); and the timeline rules."""

from __future__ import annotations

import csv
import json

import av
import numpy as np
import pytest

from vidssl.cli import main
from vidssl.eval.timeline import Scene, scenes_from_boundaries, timecode, write_chapters, write_edl

TINY_BASSL = ["method.backbone=image_resnet_tiny", "method.backbone_kwargs={width: 4}", "method.canvas=32",
              "method.crop_size=28", "method.shots_per_side=2", "method.crn_hidden_dim=16", "method.crn_layers=1",
              "method.crn_heads=2", "method.crn_intermediate_dim=32", "method.head_hidden_dim=16", "method.head_dim=8",
              "data.batch_size=4", "data.num_workers=0", "max_steps=2", "checkpoint_every=1"]
LENGTHS = [30, 26, 40, 33]


def write_movie(path, lengths=LENGTHS, fps=25):
    """A movie without audio whose shots differ in colour and texture (cuts at known frames)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": "10", "crf": "18"}
        for shot, length in enumerate(lengths):
            rng = np.random.default_rng(shot + 7)
            base = rng.integers(0, 256, 3)
            texture = rng.integers(-40, 40, (6, 8, 1)).repeat(8, 0).repeat(8, 1)
            for t in range(length):
                frame = np.clip(base + texture, 0, 255).astype(np.uint8)
                frame[:, (2 * t) % 58 : (2 * t) % 58 + 6] = 255 - base
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_pretrain_finetune_and_segment_a_movie(movie_root, tmp_path):
    run = tmp_path / "run"
    assert main(["pretrain", "--preset", "bassl_tiny", "--out", str(run), f"data.root={movie_root}", *TINY_BASSL]) == 0
    scenes = tmp_path / "scenes"
    assert main(["eval", "scenes", "--checkpoint", str(run), "--data", str(movie_root), "--preset", "tiny",
                 "--out", str(scenes), "--no-cache", "--quiet", "epochs=2", "batch_size=16"]) == 0
    report = json.loads((scenes / "report.json").read_text())
    assert report["pretrained_crn"] and report["config"]["shots_per_side"] == 2
    assert report["history"]["selected_on"] == "val AP"
    for key in ("ap", "miou", "f1", "recall", "recall_at_3s"):
        assert 0 <= report["test"][key] <= 100, key
    movie = tmp_path / "film.mp4"
    write_movie(movie)
    out = tmp_path / "film"
    assert main(["segment", str(movie), "--checkpoint", str(scenes / "scene_model"), "--out", str(out),
                 "--min-shot-frames", "8", "--export-clips", "--quiet"]) == 0
    timeline = json.loads((out / "film.scenes.json").read_text())
    starts = [s["start"] for s in timeline["shots"]]
    true = list(np.cumsum([0] + LENGTHS[:-1]))
    hits = sum(any(abs(a - b) <= 1 for a in starts) for b in true)
    assert hits == len(true) == len(starts)  # shot F1 = 1
    scenes_out = timeline["scenes"]
    assert scenes_out[0]["start_frame"] == 0 and scenes_out[-1]["end_frame"] == sum(LENGTHS)
    assert all(a["end_frame"] == b["start_frame"] for a, b in zip(scenes_out, scenes_out[1:]))
    rows = list(csv.DictReader(open(out / "film.scenes.csv")))
    assert len(rows) == len(scenes_out)
    assert (out / "film.contact.png").stat().st_size > 0 and "FCM: NON-DROP FRAME" in (out / "film.edl").read_text()
    clips = sorted((out / "film_scenes").glob("scene_*.mp4"))
    assert len(clips) == len(scenes_out)
    with av.open(str(clips[0])) as clip:
        assert clip.streams.video[0].codec_context.name == "h264"  # copied, not re-encoded to another codec


def test_scene_model_and_encoder_errors_say_what_to_do(tmp_path, capsys):
    write_movie(tmp_path / "m.mp4", [20, 20])
    assert main(["segment", str(tmp_path / "m.mp4"), "--checkpoint", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a scene model" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "none.mp4"), "--checkpoint", str(tmp_path), "--out", "o"]) == 2
    assert main(["eval", "scenes", "--backbone", "r3d18_fgkv_tiny", "--data", str(tmp_path), "--out",
                 str(tmp_path / "e")]) == 2


def test_scenes_cover_the_movie_and_end_at_boundaries():
    shots = [{"start": 10 * i, "end": 10 * i + 10, "start_time": i * 0.4, "end_time": i * 0.4 + 0.4} for i in range(5)]
    scenes = scenes_from_boundaries(np.array([False, True, False, False, False]), shots)
    assert [(s.first_shot, s.last_shot, s.start_frame, s.end_frame) for s in scenes] == [(0, 1, 0, 20), (2, 4, 20, 50)]
    assert len(scenes_from_boundaries(np.zeros(5, bool), shots)) == 1  # no boundary: one scene, nothing dropped


def test_edl_and_chapters(tmp_path):
    scenes = [Scene(0, 0, 2, 0, 60, 0.0, 2.4), Scene(1, 3, 5, 60, 3000, 2.4, 120.0)]
    write_edl(tmp_path / "x.edl", "x.mp4", 25.0, scenes)
    text = (tmp_path / "x.edl").read_text()
    assert "002  AX       V     C        00:00:02:10 00:02:00:00 00:00:02:10 00:02:00:00" in text
    write_chapters(tmp_path / "c.txt", scenes)
    assert "START=2400\nEND=120000\ntitle=Scene 2" in (tmp_path / "c.txt").read_text()
    # non-drop-frame timecode of 23.976 fps media counts 24 frames a second (as editors do): 87788 frames
    assert timecode(3661.5, 23.976) == "01:00:57:20"


def test_scene_repeats_report_every_seed_and_keep_the_best_on_val(movie_root, tmp_path):
    """``repeats=N``: N fine-tunings (seeds seed..seed+N-1), mean ± std of each metric, and the kept scene
    model is the run with the best val AP: its numbers are the report's headline val/test."""
    out = tmp_path / "scenes"
    assert main(["eval", "scenes", "--backbone", "image_resnet_tiny", "--backbone-kwargs", '{"width": 4}',
                 "--canvas", "32", "--crop-size", "28", "--data", str(movie_root), "--preset", "tiny",
                 "--out", str(out), "--no-cache", "--quiet", "epochs=2", "batch_size=16", "shots_per_side=2",
                 "crn_hidden_dim=16", "crn_intermediate_dim=32", "crn_heads=2", "seed=3", "repeats=3"]) == 0
    report = json.loads((out / "report.json").read_text())
    runs = report["repeats"]["runs"]
    assert [r["seed"] for r in runs] == [3, 4, 5]
    val_aps = [r["val"]["ap"] for r in runs]
    kept = runs[int(np.argmax(val_aps))]
    assert report["repeats"]["kept_seed"] == kept["seed"]
    assert report["test"]["ap"] == pytest.approx(kept["test"]["ap"]) and report["val"]["ap"] == pytest.approx(max(val_aps))
    for split in ("val", "test"):
        for key in ("ap", "miou", "f1", "recall", "recall_at_3s"):
            values = [r[split][key] for r in runs]
            assert report["repeats"]["mean"][split][key] == pytest.approx(np.mean(values))
            assert report["repeats"]["std"][split][key] == pytest.approx(np.std(values))
    assert "Over 3 fine-tuning seeds" in (out / "report.md").read_text()


def test_scene_repeats_must_be_positive(movie_root, tmp_path, capsys):
    assert main(["eval", "scenes", "--backbone", "image_resnet_tiny", "--data", str(movie_root), "--out",
                 str(tmp_path / "x"), "--preset", "tiny", "repeats=0"]) == 2
    assert "repeats must be >= 1, got 0" in capsys.readouterr().err
