"""VideoDataset: item layout, decode-once slicing, determinism, workers, corrupt files."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from video_factory import frame_level
from vidssl.data.datasets import VideoDataset, collate, fit_canvas
from vidssl.data.index import build_manifest
from vidssl.data.sampling import AlignedViewsPlan, MultiClipPlan, RandomClipPlan, UniformClipsPlan, ViewSpec
from vidssl.errors import DataError, UserError

TWO_VIEWS = AlignedViewsPlan([
    ViewSpec("narrow", 8, stride=1, canvas=(32, 32)),
    ViewSpec("broad", 8, stride=4, canvas=(16, 16), audio_seconds=1.0),
])


@pytest.fixture()
def dataset_root(tmp_path, videos):
    """ROOT/train/CLASS/*.mp4: 3 videos per class, one class without audio."""
    sources = {"with_audio": ["av", "long", "h264"], "silent": ["noaudio", "fewkeys", "noaudio"]}
    for cls, names in sources.items():
        for i, name in enumerate(names):
            target = tmp_path / "train" / cls / f"{name}_{i}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(videos[name], target)
    return tmp_path


def levels(frames: torch.Tensor) -> np.ndarray:
    return frames[..., frames.shape[-3] * 3 // 5, frames.shape[-2] * 3 // 5, 0].numpy().astype(int)


def test_item_layout_and_shapes(dataset_root):
    manifest = build_manifest(dataset_root)
    dataset = VideoDataset(manifest, TWO_VIEWS, split="train", seed=0)
    assert len(dataset) == 6 and dataset.class_names == ["silent", "with_audio"]
    item = dataset[3]  # with_audio/av_0.mp4
    assert item["video"]["narrow"].shape == (8, 32, 32, 3) and item["video"]["narrow"].dtype == torch.uint8
    assert item["video"]["broad"].shape == (8, 16, 16, 3)
    assert set(item["audio"]) == {"broad"} and item["audio"]["broad"].shape == (16000,)
    assert item["audio"]["broad"].dtype == torch.float32 and item["audio"]["broad"].abs().max() > 0.05
    assert item["has_audio"] and item["label"].dtype == torch.int64 and item["label"] == 1 and item["index"] == 3
    silent = dataset[0]
    assert not silent["has_audio"] and silent["audio"]["broad"].abs().max() == 0  # zeros + flag


def test_views_are_sliced_from_the_right_frames(dataset_root):
    manifest = build_manifest(dataset_root)
    views = [ViewSpec("a", 6, stride=2, canvas=None), ViewSpec("b", 6, stride=1, offset_frames=5, canvas=None, reverse=True)]
    dataset = VideoDataset(manifest, AlignedViewsPlan(views), split="train")
    index = next(i for i, r in enumerate(dataset.records) if r.path.endswith("long_1.mp4"))  # 100 frames
    item = dataset[index]
    start = int(np.argmin([abs(levels(item["video"]["a"])[0] - frame_level(k)) for k in range(25)]))
    expected_a = [frame_level(start + 2 * k) for k in range(6)]
    expected_b = [frame_level(start + 5 + k) for k in range(6)][::-1]
    assert np.abs(levels(item["video"]["a"]) - expected_a).max() <= 8
    assert np.abs(levels(item["video"]["b"]) - expected_b).max() <= 8


def test_short_video_loops(dataset_root):
    manifest = build_manifest(dataset_root)
    plan = RandomClipPlan(ViewSpec("clip", 20, stride=2, canvas=None, audio_seconds=2.0))
    dataset = VideoDataset(manifest, plan, audio_rate=8000)
    index = next(i for i, r in enumerate(dataset.records) if r.path.endswith("noaudio_0.mp4"))  # 30 frames
    item = dataset[index]
    expected = [frame_level((2 * k) % 30) for k in range(20)]
    assert np.abs(levels(item["video"]["clip"]) - expected).max() <= 8
    looped_audio = dataset[next(i for i, r in enumerate(dataset.records) if r.path.endswith("av_0.mp4"))]
    assert looped_audio["audio"]["clip"].shape == (16000,)


def test_multi_clip_and_uniform_plans_stack_clips(dataset_root):
    manifest = build_manifest(dataset_root)
    rho = VideoDataset(manifest, MultiClipPlan(ViewSpec("clip", 4, stride=2, canvas=(24, 24), audio_seconds=0.5), rho=2),
                       audio_rate=8000)[3]
    assert rho["video"]["clip"].shape == (2, 4, 24, 24, 3) and rho["audio"]["clip"].shape == (2, 4000)
    uniform = VideoDataset(manifest, UniformClipsPlan(ViewSpec("clip", 4, canvas=(24, 24)), num_clips=3))[3]
    assert uniform["video"]["clip"].shape == (3, 4, 24, 24, 3)


def test_determinism_under_seed_and_epoch(dataset_root):
    manifest = build_manifest(dataset_root)
    plan = RandomClipPlan(ViewSpec("clip", 4, stride=1, canvas=(16, 16)))
    a, b = VideoDataset(manifest, plan, seed=7), VideoDataset(manifest, plan, seed=7)
    for i in range(len(a)):
        assert torch.equal(a[i]["video"]["clip"], b[i]["video"]["clip"])
    first = [levels(a[i]["video"]["clip"])[0] for i in range(len(a))]
    a.set_epoch(1)
    assert a.epoch == 1
    second = [levels(a[i]["video"]["clip"])[0] for i in range(len(a))]
    other_seed = VideoDataset(manifest, plan, seed=8)
    third = [levels(other_seed[i]["video"]["clip"])[0] for i in range(len(a))]
    assert first != second and first != third


def test_dataloader_two_workers_two_views_and_distributed_sampler(dataset_root):
    manifest = build_manifest(dataset_root)
    dataset = VideoDataset(manifest, TWO_VIEWS, split="train", seed=3)
    dataset.set_epoch(2)  # must reach the workers
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert len(batches) == 3
    batch = batches[0]
    assert batch["video"]["narrow"].shape == (2, 8, 32, 32, 3) and batch["video"]["broad"].shape == (2, 8, 16, 16, 3)
    assert batch["audio"]["broad"].shape == (2, 16000) and batch["label"].shape == (2,) and batch["skipped"] == []
    direct = dataset[1]
    assert torch.equal(batch["video"]["narrow"][1], direct["video"]["narrow"])
    # DistributedSampler: 2 ranks, disjoint indices, identical items to the single-process ones
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        for b in DataLoader(dataset, batch_size=3, sampler=sampler, collate_fn=collate):
            seen.extend(b["index"].tolist())
            i = int(b["index"][0])
            assert torch.equal(b["video"]["broad"][0], dataset[i]["video"]["broad"])
    assert sorted(seen) == list(range(6))


def test_corrupt_file_is_skipped_counted_and_reported(dataset_root, caplog):
    manifest = build_manifest(dataset_root)
    bad_path = dataset_root / "train" / "silent" / "noaudio_0.mp4"
    bad_path.write_bytes(b"garbage" * 100)  # corrupted after indexing
    dataset = VideoDataset(manifest, TWO_VIEWS, split="train", seed=0)
    bad = next(i for i, r in enumerate(dataset.records) if r.path.endswith("noaudio_0.mp4"))
    with caplog.at_level(logging.WARNING, logger="vidssl.data.datasets"):
        item = dataset[bad]
        again = dataset[bad]
    assert item["index"] != bad and item["skipped"] == (str(bad_path),)
    assert torch.equal(item["video"]["narrow"], again["video"]["narrow"])  # deterministic replacement
    assert list(dataset.failures()) == [str(bad_path)]
    assert sum(str(bad_path) in rec.getMessage() for rec in caplog.records) == 1  # logged once
    # across workers: the batch carries what its worker skipped
    fresh = VideoDataset(manifest, TWO_VIEWS, split="train", seed=0)
    skipped = [p for b in DataLoader(fresh, batch_size=3, num_workers=2, collate_fn=collate) for p in b["skipped"]]
    assert skipped == [str(bad_path)] and fresh.failures() == {}
    fresh.note_batch({"skipped": skipped})
    assert list(fresh.failures()) == [str(bad_path)]


def test_files_unreadable_at_index_time_are_left_out(dataset_root):
    (dataset_root / "train" / "silent" / "zero.mp4").write_bytes(b"")
    manifest = build_manifest(dataset_root)
    dataset = VideoDataset(manifest, TWO_VIEWS)
    assert len(dataset) == 6 and any(p.endswith("zero.mp4") for p in dataset.failures())


def test_all_files_corrupt_is_an_error(dataset_root):
    manifest = build_manifest(dataset_root, probe=False)
    for path in (dataset_root / "train").rglob("*.mp4"):
        path.write_text("x")
    dataset = VideoDataset(manifest, TWO_VIEWS, max_retries=3)
    with pytest.raises(DataError, match="4 unreadable videos in a row") as excinfo:
        dataset[0]
    assert "\n" not in str(excinfo.value)


def test_bad_arguments(dataset_root):
    manifest = build_manifest(dataset_root)
    with pytest.raises(UserError, match="unknown decoder"):
        VideoDataset(manifest, TWO_VIEWS, decoder="nope")
    with pytest.raises(DataError, match="no 'test' videos"):
        VideoDataset(manifest, TWO_VIEWS, split="test")


def test_fit_canvas_resizes_short_side_and_centre_crops():
    frames = torch.zeros(2, 40, 80, 3, dtype=torch.uint8)
    frames[:, :, 30:50] = 255  # a bright vertical band in the centre
    out = fit_canvas(frames, (20, 20))
    assert out.shape == (2, 20, 20, 3) and out.dtype == torch.uint8
    assert out[:, :, 5:15].float().mean() > 200 and out[:, :, :3].float().mean() < 30
    assert fit_canvas(frames, None) is frames
    stacked = fit_canvas(torch.zeros(3, 2, 40, 80, 3, dtype=torch.uint8), (10, 30))
    assert stacked.shape == (3, 2, 10, 30, 3)


def test_demo_dataset_through_a_two_worker_loader(demo_manifest):
    plan = AlignedViewsPlan([ViewSpec("narrow", 8, stride=2, canvas=(32, 32)),
                             ViewSpec("broad", 16, stride=2, canvas=(24, 24), audio_seconds=1.0)])
    dataset = VideoDataset(demo_manifest, plan, split="train", fold=1)
    batch = next(iter(DataLoader(dataset, batch_size=4, num_workers=2, shuffle=True, collate_fn=collate)))
    assert batch["video"]["narrow"].shape == (4, 8, 32, 32, 3) and batch["audio"]["broad"].shape == (4, 16000)
    assert batch["has_audio"].all() and batch["label"].max() < demo_manifest.num_classes


def test_far_apart_clips_are_decoded_as_separate_runs(dataset_root):
    manifest = build_manifest(dataset_root)
    plan = UniformClipsPlan(ViewSpec("clip", 5, stride=2, canvas=None), num_clips=2)  # starts 0 and 91
    dataset = VideoDataset(manifest, plan)
    index = next(i for i, r in enumerate(dataset.records) if r.path.endswith("long_1.mp4"))  # 100 frames
    calls = []
    decode = dataset.decoder.decode
    dataset.decoder.decode = lambda *a, **k: calls.append(a[1:3]) or decode(*a, **k)
    item = dataset[index]
    assert len(calls) == 2  # the 80-frame gap is skipped by seeking, not decoded
    clips = item["video"]["clip"]
    for clip, start in zip(clips, (0, 91)):
        assert np.abs(levels(clip) - [frame_level(start + 2 * k) for k in range(5)]).max() <= 8
