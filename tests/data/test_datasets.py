"""VideoDataset: item layout, decode-once slicing, per-kind slicers, audio validity, repeats,
shot windows, determinism per (seed, pass, index), workers, corrupt files."""

from __future__ import annotations

import logging
import re
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from video_factory import AUDIO_RATE, frame_level
from vidssl.data.datasets import SLICERS, VideoDataset, collate, fit_canvas, worker_context
from vidssl.data.index import build_manifest
from vidssl.data.sampling import ClipPlan, RandomClipPlan, ShotWindowPlan, UniformClipsPlan, ViewSpec, ViewsPlan
from vidssl.errors import DataError, UserError

def _torchcodec_works() -> bool:
    try:
        from vidssl.data.decode import TorchCodecDecoder

        TorchCodecDecoder()
    except UserError:
        return False
    return True


@pytest.fixture(autouse=True, params=["pyav", pytest.param("torchcodec", marks=pytest.mark.skipif(
    not _torchcodec_works(), reason="torchcodec (with a system FFmpeg) not installed: pip install 'vidssl[torchcodec]'"))])
def decoder_backend(request, monkeypatch):
    """Every dataset test runs with each decoder backend: ``decoder="pyav"`` (the default) is swapped for it."""
    import vidssl.data.datasets as datasets

    chosen, real = request.param, datasets.get_decoder
    monkeypatch.setattr(datasets, "get_decoder", lambda name="pyav", **kw: real(chosen if name == "pyav" else name, **kw))
    return chosen


TWO_VIEWS = ViewsPlan([
    ViewSpec("narrow", num_frames=8, stride=1, canvas=(32, 32)),
    ViewSpec("broad", num_frames=8, stride=4, canvas=(16, 16), align_to="narrow"),
    ViewSpec("broad_audio", kind="audio", seconds=1.0, align_to="narrow"),
])

#: Seconds of audio of the generated files (the sine's amplitude ramps 0.1 -> 0.9 over them).
AUDIO_SECONDS = {"av": 2.0, "long": 4.0, "h264": 1.6, "shortaudio": 0.8}


def copy_videos(root, videos, sources: dict[str, list[str]]):
    """ROOT/train/CLASS/NAME_I.mp4 copies of the session's generated videos."""
    for cls, names in sources.items():
        for i, name in enumerate(names):
            target = root / "train" / cls / f"{name}_{i}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(videos[name], target)
    return root


@pytest.fixture()
def dataset_root(tmp_path, videos):
    """ROOT/train/CLASS/*.mp4: 3 videos per class, one class without audio."""
    return copy_videos(tmp_path, videos, {"with_audio": ["av", "long", "h264"], "silent": ["noaudio", "fewkeys", "noaudio"]})


def levels(frames: torch.Tensor) -> np.ndarray:
    return frames[..., frames.shape[-3] * 3 // 5, frames.shape[-2] * 3 // 5, 0].numpy().astype(int)


def record_index(dataset, suffix: str) -> int:
    return next(i for i, r in enumerate(dataset.records) if r.path.endswith(suffix))


def selection_of(dataset, index: int, epoch: int = 0, attempt: int = 0):
    """The dataset's own draw for item ``index`` (one video per item, no retries)."""
    record = dataset.records[index]
    return dataset.plan.sample(record, np.random.default_rng((dataset.seed, epoch, index, attempt)))


def amplitude(wave: torch.Tensor) -> float:
    return float(wave.abs().max())


def ramp(name: str, seconds: float) -> float:
    """Amplitude of the generated sine at ``seconds`` into the file."""
    return 0.1 + 0.8 * seconds / AUDIO_SECONDS[name]


def count_decodes(dataset) -> list:
    calls = []
    decode = dataset.decoder.decode

    def counting(*args, **kwargs):
        calls.append(args[1:3])
        return decode(*args, **kwargs)

    dataset.decoder.decode = counting
    return calls


# --------------------------------------------------------------------------------------------
# Layout and slicing
# --------------------------------------------------------------------------------------------


def test_item_layout_and_shapes(dataset_root):
    manifest = build_manifest(dataset_root)
    dataset = VideoDataset(manifest, TWO_VIEWS, split="train", seed=0)
    assert len(dataset) == 6 and dataset.class_names == ["silent", "with_audio"]
    assert set(SLICERS) == {"video", "image", "audio", "flow"}
    item = dataset[3]  # with_audio/av_0.mp4
    assert dataset.records[3].path.endswith("av_0.mp4")
    assert set(item) == {"clips", "valid", "label", "index", "skipped"}
    assert set(item["clips"]) == set(item["valid"]) == {"narrow", "broad", "broad_audio"}
    assert item["clips"]["narrow"].shape == (8, 32, 32, 3) and item["clips"]["narrow"].dtype == torch.uint8
    assert item["clips"]["broad"].shape == (8, 16, 16, 3)
    assert item["clips"]["broad_audio"].shape == (16000,) and item["clips"]["broad_audio"].dtype == torch.float32
    start = selection_of(dataset, 3).start_frame / 25  # the audio begins where the narrow view does
    assert amplitude(item["clips"]["broad_audio"][:320]) == pytest.approx(ramp("av", start), abs=0.03)
    assert all(v.dtype == torch.bool and v.shape == () and bool(v) for v in item["valid"].values())
    assert item["label"].dtype == torch.int64 and item["label"] == 1 and item["index"] == 3
    assert item["skipped"] == ()
    silent = dataset[0]
    assert silent["valid"]["narrow"] and silent["valid"]["broad"]
    assert not silent["valid"]["broad_audio"] and silent["clips"]["broad_audio"].abs().max() == 0  # zeros + invalid
    assert silent["clips"]["broad_audio"].shape == (16000,)


def test_views_are_sliced_from_the_right_frames(dataset_root):
    manifest = build_manifest(dataset_root)
    views = [ViewSpec("a", num_frames=6, stride=2, canvas=None),
             ViewSpec("b", num_frames=6, stride=1, offset_frames=5, canvas=None, reverse=True, align_to="a")]
    dataset = VideoDataset(manifest, ViewsPlan(views), split="train")
    index = record_index(dataset, "long_1.mp4")  # 100 frames
    for epoch in range(3):
        dataset.set_epoch(epoch)
        item = dataset[index]
        sel = selection_of(dataset, index, epoch)
        start = sel.start_frame + int(sel.views["a"].frame_indices[0])
        assert not sel.looped and item["clips"]["a"].shape == (6, 48, 64, 3)  # canvas None: decoded size
        expected_a = [frame_level(start + 2 * k) for k in range(6)]
        expected_b = [frame_level(start + 5 + k) for k in range(6)][::-1]
        assert np.abs(levels(item["clips"]["a"]) - expected_a).max() <= 8
        assert np.abs(levels(item["clips"]["b"]) - expected_b).max() <= 8


def test_short_video_loops_frames_and_audio(dataset_root):
    manifest = build_manifest(dataset_root)
    plan = RandomClipPlan(ViewSpec("clip", num_frames=20, stride=2, canvas=None))
    dataset = VideoDataset(manifest, plan)
    item = dataset[record_index(dataset, "noaudio_0.mp4")]  # 30 frames < 39: starts at 0 and wraps
    expected = [frame_level((2 * k) % 30) for k in range(20)]
    assert np.abs(levels(item["clips"]["clip"]) - expected).max() <= 8
    # audio longer than the video: wraps over the audio of the whole video, like the frames
    plan = ViewsPlan([ViewSpec("v", num_frames=8, canvas=(16, 16)),
                      ViewSpec("a", kind="audio", seconds=3.0, align_to="v")])
    dataset = VideoDataset(manifest, plan)
    index = record_index(dataset, "av_0.mp4")  # 2.0 s of audio
    sel = selection_of(dataset, index)
    assert sel.looped
    wave = dataset[index]["clips"]["a"]
    assert wave.shape == (48000,) and dataset[index]["valid"]["a"]
    period = 2 * AUDIO_RATE
    torch.testing.assert_close(wave[period:], wave[: 48000 - period], rtol=0, atol=0)  # one period later: the same
    start = float(sel.views["a"].audio_starts)
    assert amplitude(wave[:320]) == pytest.approx(ramp("av", start), abs=0.03)
    wrap = int(round((2.0 - start) * AUDIO_RATE))  # where the file's end is reached: back to its start
    assert amplitude(wave[wrap + 160 : wrap + 480]) == pytest.approx(ramp("av", 0.02), abs=0.03)


def test_audio_is_aligned_with_its_view_and_reversed(dataset_root):
    manifest = build_manifest(dataset_root)
    plan = ViewsPlan([ViewSpec("v", num_frames=8, canvas=(16, 16)),
                      ViewSpec("a", kind="audio", seconds=1.0, align_to="v", offset_frames=5),
                      ViewSpec("a_rev", kind="audio", seconds=1.0, align_to="v", offset_frames=5, reverse=True)])
    for seed in range(3):
        dataset = VideoDataset(manifest, plan, seed=seed)
        for name in ("av", "long", "h264"):
            index = record_index(dataset, f"{name}_{['av', 'long', 'h264'].index(name)}.mp4")
            item = dataset[index]
            sel = selection_of(dataset, index)
            start = (sel.start_frame + 5) / 25
            assert float(sel.views["a"].audio_starts) == pytest.approx(5 / 25)
            wave = item["clips"]["a"]
            assert item["valid"]["a"] and item["valid"]["a_rev"]
            assert amplitude(wave[:320]) == pytest.approx(ramp(name, start), abs=0.03)
            assert amplitude(wave[-800:-480]) == pytest.approx(ramp(name, start + 0.96), abs=0.03), (name, start)
            torch.testing.assert_close(item["clips"]["a_rev"], wave.flip(0), rtol=0, atol=0)


@pytest.fixture()
def audio_root(tmp_path, videos):
    return copy_videos(tmp_path, videos, {"c": ["av", "noaudio", "shortaudio"]})


def test_audio_validity(audio_root):
    manifest = build_manifest(audio_root)
    plan = ViewsPlan([ViewSpec("v", num_frames=8, canvas=(16, 16)),
                      ViewSpec("a", kind="audio", seconds=1.0, align_to="v")])
    dataset = VideoDataset(manifest, plan)
    index = record_index(dataset, "av_0.mp4")
    full = dataset[index]  # 2.0 s track covers every 1 s view
    start = selection_of(dataset, index).start_frame / 25
    assert full["valid"]["a"] and amplitude(full["clips"]["a"][:320]) == pytest.approx(ramp("av", start), abs=0.03)
    assert amplitude(full["clips"]["a"][-800:-480]) == pytest.approx(ramp("av", start + 0.96), abs=0.03)
    none = dataset[record_index(dataset, "noaudio_1.mp4")]  # no track at all
    assert not none["valid"]["a"] and none["valid"]["v"]
    assert none["clips"]["a"].shape == (16000,) and not none["clips"]["a"].any()
    short = dataset[record_index(dataset, "shortaudio_2.mp4")]  # 0.8 s track: no 1 s view is covered
    assert not short["valid"]["a"] and short["valid"]["v"] and not short["clips"]["a"].any()
    # a view the short track does cover is valid; one that runs past its end is not
    plan = ViewsPlan([ViewSpec("v", num_frames=8, canvas=(16, 16)),
                      ViewSpec("a", kind="audio", seconds=0.5, align_to="v")])  # group: 13 frames
    covered = uncovered = 0
    for seed in range(40):
        dataset = VideoDataset(manifest, plan, seed=seed)
        index = record_index(dataset, "shortaudio_2.mp4")
        start = selection_of(dataset, index).start_frame / 25
        end = start + 0.5  # the audio view's end (the AAC track holds 0.8 s + up to one 64 ms frame of padding)
        item = dataset[index]
        if end <= 0.76:
            covered += 1
            assert item["valid"]["a"], end
            assert amplitude(item["clips"]["a"][:320]) == pytest.approx(ramp("shortaudio", start), abs=0.04), end
        elif end >= 0.87:
            uncovered += 1
            assert not item["valid"]["a"] and not item["clips"]["a"].any(), end
    assert covered >= 2 and uncovered >= 2


def test_audio_validity_is_per_view(audio_root):
    manifest = build_manifest(audio_root)
    views = [ViewSpec(f"clip_{k}", num_frames=4, canvas=(16, 16)) for k in (1, 2)]
    views += [ViewSpec(f"clip_{k}_audio", kind="audio", seconds=0.3, align_to=f"clip_{k}") for k in (1, 2)]
    plan = ViewsPlan(views)
    checked = 0
    for seed in range(30):
        dataset = VideoDataset(manifest, plan, seed=seed)
        index = record_index(dataset, "shortaudio_2.mp4")  # 0.8 s track in a 2 s video
        sel = selection_of(dataset, index)
        starts = {k: (sel.start_frame + int(sel.views[f"clip_{k}"].frame_indices[0])) / 25 for k in (1, 2)}
        if min(starts.values()) + 0.3 <= 0.7 and max(starts.values()) >= 0.9:
            item = dataset[index]
            for k, start in starts.items():
                assert bool(item["valid"][f"clip_{k}_audio"]) == (start + 0.3 <= 0.7), (seed, starts)
            checked += 1
    assert checked >= 2


def test_image_views_are_single_frames(dataset_root):
    manifest = build_manifest(dataset_root)
    plan = ViewsPlan([ViewSpec("clip", num_frames=4, stride=2, canvas=(16, 16)),
                      ViewSpec("key", kind="image", canvas=None, align_to="clip", offset_frames=3)])
    dataset = VideoDataset(manifest, plan)
    index = record_index(dataset, "long_1.mp4")
    item = dataset[index]
    sel = selection_of(dataset, index)
    assert item["clips"]["key"].shape == (48, 64, 3) and item["clips"]["key"].dtype == torch.uint8
    assert abs(int(levels(item["clips"]["key"])) - frame_level(sel.start_frame + 3)) <= 8
    batch = collate([dataset[index], dataset[0]])
    assert batch["clips"]["key"].shape == (2, 48, 64, 3) and batch["clips"]["clip"].shape == (2, 4, 16, 16, 3)
    stacked = VideoDataset(manifest, UniformClipsPlan(ViewSpec("key", kind="image", canvas=(24, 24)), num_clips=3))
    keys = stacked[index]["clips"]["key"]
    assert keys.shape == (3, 24, 24, 3)
    assert np.abs(levels(keys) - [frame_level(k) for k in (0, 50, 99)]).max() <= 8


def test_rho_and_uniform_plans(dataset_root):
    manifest = build_manifest(dataset_root)
    views = [ViewSpec(f"clip_{k}", num_frames=4, stride=2, canvas=(24, 24)) for k in (1, 2)]
    views += [ViewSpec(f"clip_{k}_audio", kind="audio", seconds=0.5, sample_rate=8000, align_to=f"clip_{k}") for k in (1, 2)]
    rho = VideoDataset(manifest, ViewsPlan(views))
    item = rho[3]
    assert item["clips"]["clip_1"].shape == item["clips"]["clip_2"].shape == (4, 24, 24, 3)
    assert item["clips"]["clip_1_audio"].shape == item["clips"]["clip_2_audio"].shape == (4000,)
    for index, name in ((3, "av"), (record_index(rho, "long_1.mp4"), "long")):
        item, sel = rho[index], selection_of(rho, index)
        starts = []
        for k in (1, 2):  # each clip at its own start, with its own audio
            start = sel.start_frame + int(sel.views[f"clip_{k}"].frame_indices[0])
            starts.append(start)
            assert np.abs(levels(item["clips"][f"clip_{k}"]) - [frame_level(start + 2 * j) for j in range(4)]).max() <= 8
            audio_start = float(sel.views[f"clip_{k}_audio"].audio_starts) + sel.start_frame / 25
            assert audio_start == pytest.approx(start / 25)
            assert amplitude(item["clips"][f"clip_{k}_audio"][:160]) == pytest.approx(ramp(name, audio_start), abs=0.03)
        assert starts[0] != starts[1]  # independent starts (for these two draws)
    long = record_index(rho, "long_1.mp4")
    uniform = VideoDataset(manifest, UniformClipsPlan(ViewSpec("clip", num_frames=4, canvas=(24, 24)), num_clips=3))
    clips = uniform[long]["clips"]["clip"]
    assert clips.shape == (3, 4, 24, 24, 3)
    assert np.abs(levels(clips)[:, 0] - [frame_level(s) for s in (0, 48, 96)]).max() <= 8
    audio = VideoDataset(manifest, UniformClipsPlan(ViewSpec("a", kind="audio", seconds=1.0), num_clips=3))
    item = audio[long]  # 4 s: clips at 0, 1.5, 3 s
    assert item["clips"]["a"].shape == (3, 16000) and item["valid"]["a"]
    for wave, start in zip(item["clips"]["a"], (0.0, 1.5, 3.0)):
        assert amplitude(wave[:320]) == pytest.approx(ramp("long", start), abs=0.03)


# --------------------------------------------------------------------------------------------
# Shot windows
# --------------------------------------------------------------------------------------------

SHOTS = [[0, 20], [20, 45], [45, 70], [70, 100]]
SHOT_LABELS = [0, 1, 0, 1]


def test_shot_window_through_the_dataset(tmp_path, videos):
    root = copy_videos(tmp_path, videos, {"movies": ["long", "av"]})
    manifest = build_manifest(root)
    long, av = (next(r for r in manifest.records if r.path.endswith(n)) for n in ("long_0.mp4", "av_1.mp4"))
    long.annotations = {"shots": SHOTS, "shot_labels": SHOT_LABELS}
    av.annotations = {"shots": [[0, 25], [25, 50]]}
    plan = ShotWindowPlan(ViewSpec("shot", kind="image", canvas=None), shots_per_side=1)
    dataset = VideoDataset(manifest, plan, seed=3)
    assert len(dataset) == 4 + 2  # one item per shot
    long_items = [i for i, (r, _) in enumerate(dataset.items) if dataset.records[r] is long]
    assert [dataset.items[i][1] for i in long_items] == [0, 1, 2, 3]
    for key, i in enumerate(long_items):
        item = dataset[i]
        assert item["clips"]["shot"].shape == (3, 48, 64, 3)  # S×H×W×C
        shots = np.clip(np.arange(key - 1, key + 2), 0, 3)
        np.testing.assert_array_equal(item["shot_index"].numpy(), shots)
        np.testing.assert_array_equal(item["shot_valid"].numpy(), [key > 0, True, key < 3])
        np.testing.assert_array_equal(item["shot_labels"].numpy(), [SHOT_LABELS[s] for s in shots])
        sel = dataset.plan.sample(long, np.random.default_rng((3, 0, i, 0)), key)
        frames = sel.start_frame + sel.views["shot"].frame_indices
        for frame, shot in zip(frames, shots):
            assert SHOTS[shot][0] <= frame < SHOTS[shot][1]
        assert np.abs(levels(item["clips"]["shot"]) - [frame_level(f) for f in frames]).max() <= 8
    av_item = dataset[next(i for i, (r, _) in enumerate(dataset.items) if dataset.records[r] is av)]
    np.testing.assert_array_equal(av_item["shot_labels"].numpy(), [-1, -1, -1])  # no labels: unknown
    batch = collate([dataset[long_items[0]], dataset[long_items[1]]])
    assert batch["clips"]["shot"].shape == (2, 3, 48, 64, 3) and batch["shot_labels"].shape == (2, 3)
    assert batch["shot_valid"].dtype == torch.bool
    av.annotations = {}
    with pytest.raises(DataError, match=re.escape(f"{av.path} has no shot annotations")):
        VideoDataset(manifest, plan)


# --------------------------------------------------------------------------------------------
# Repeated samples of one decode
# --------------------------------------------------------------------------------------------


def test_repeats_sample_one_decode_k_times(tmp_path, videos):
    root = copy_videos(tmp_path, videos, {"a": ["noaudio", "fewkeys"], "b": ["noaudio", "fewkeys"]})
    manifest = build_manifest(root)
    plan = RandomClipPlan(ViewSpec("clip", num_frames=12, canvas=(16, 16)))
    dataset = VideoDataset(manifest, plan, seed=1, repeats=3)
    calls = count_decodes(dataset)
    distinct = 0
    for i in range(len(dataset)):
        before = len(calls)
        samples = dataset[i]
        assert len(calls) - before == 1  # one decode per item, whatever k
        assert isinstance(samples, list) and len(samples) == 3
        rng = np.random.default_rng((1, 0, i, 0))
        starts = [plan.sample(dataset.records[i], rng).start_frame for _ in range(3)]
        for sample, start in zip(samples, starts):
            assert sample["clips"]["clip"].shape == (12, 16, 16, 3)
            assert np.abs(levels(sample["clips"]["clip"]) - [frame_level(start + k) for k in range(12)]).max() <= 8
            assert sample["label"] == dataset.records[i].label and sample["index"] == i
        for a in range(3):
            for b in range(a + 1, 3):
                same = torch.equal(samples[a]["clips"]["clip"], samples[b]["clips"]["clip"])
                assert same == (starts[a] == starts[b])
        distinct += len(set(starts)) == 3
    assert distinct >= 2
    batch = collate([dataset[0], dataset[3]])  # B=2 items × k=3 -> 6 rows
    assert batch["clips"]["clip"].shape == (6, 12, 16, 16, 3) and batch["valid"]["clip"].shape == (6,)
    labels = [dataset.records[0].label] * 3 + [dataset.records[3].label] * 3
    assert batch["label"].tolist() == labels and batch["index"].tolist() == [0, 0, 0, 3, 3, 3]
    assert batch["skipped"] == []
    torch.testing.assert_close(batch["clips"]["clip"][3], dataset[3][0]["clips"]["clip"], rtol=0, atol=0)
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate)
    assert [b["label"].shape for b in loader] == [(6,), (6,)]
    with pytest.raises(DataError, match=re.escape("repeats must be >= 1, got 0")):
        VideoDataset(manifest, plan, repeats=0)


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


def test_determinism_under_seed_and_epoch(dataset_root):
    manifest = build_manifest(dataset_root)
    plan = RandomClipPlan(ViewSpec("clip", num_frames=4, stride=1, canvas=(16, 16)))
    a, b = VideoDataset(manifest, plan, seed=7), VideoDataset(manifest, plan, seed=7)
    for i in range(len(a)):
        assert torch.equal(a[i]["clips"]["clip"], b[i]["clips"]["clip"])
    long = record_index(a, "long_1.mp4")
    for epoch in range(3):  # the draw of (seed, epoch, index) is the clip
        a.set_epoch(epoch)
        start = selection_of(a, long, epoch).start_frame
        assert np.abs(levels(a[long]["clips"]["clip"]) - [frame_level(start + k) for k in range(4)]).max() <= 8
    a.set_epoch(0)
    first = [levels(a[i]["clips"]["clip"])[0] for i in range(len(a))]
    a.set_epoch(1)
    assert a.epoch == 1
    second = [levels(a[i]["clips"]["clip"])[0] for i in range(len(a))]
    other_seed = VideoDataset(manifest, plan, seed=8)
    third = [levels(other_seed[i]["clips"]["clip"])[0] for i in range(len(a))]
    assert first != second and first != third


def test_an_index_past_the_end_encodes_the_pass(dataset_root):
    manifest = build_manifest(dataset_root)
    plan = RandomClipPlan(ViewSpec("clip", num_frames=4, stride=1, canvas=(16, 16)))
    dataset = VideoDataset(manifest, plan, seed=5)
    n = len(dataset)
    reference = VideoDataset(manifest, plan, seed=5)
    differs = 0
    for p in (1, 2):
        reference.set_epoch(p)
        for i in range(n):
            encoded, plain = dataset[p * n + i], reference[i]
            assert torch.equal(encoded["clips"]["clip"], plain["clips"]["clip"]) and encoded["index"] == plain["index"]
            differs += not torch.equal(encoded["clips"]["clip"], dataset[i]["clips"]["clip"])
    assert dataset.epoch == 0 and differs > 0
    dataset.set_epoch(7)  # an encoded pass wins over set_epoch's
    reference.set_epoch(1)
    assert torch.equal(dataset[n + 2]["clips"]["clip"], reference[2]["clips"]["clip"])


def test_dataloader_two_workers_two_views_and_distributed_sampler(dataset_root):
    manifest = build_manifest(dataset_root)
    dataset = VideoDataset(manifest, TWO_VIEWS, split="train", seed=3)
    dataset.set_epoch(2)  # must reach the workers
    loader = DataLoader(dataset, batch_size=2, num_workers=2, multiprocessing_context=worker_context(2),
                        collate_fn=collate)
    batches = list(loader)
    assert len(batches) == 3
    batch = batches[0]
    assert batch["clips"]["narrow"].shape == (2, 8, 32, 32, 3) and batch["clips"]["broad"].shape == (2, 8, 16, 16, 3)
    assert batch["clips"]["broad_audio"].shape == (2, 16000) and batch["label"].shape == (2,) and batch["skipped"] == []
    assert batch["valid"]["broad_audio"].tolist() == [False, False]  # silent/fewkeys_1, silent/noaudio_0
    assert batches[2]["valid"]["broad_audio"].tolist() == [True, True]
    direct = dataset[1]
    assert torch.equal(batch["clips"]["narrow"][1], direct["clips"]["narrow"])
    # DistributedSampler: 2 ranks, disjoint indices, identical items to the single-process ones
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        for b in DataLoader(dataset, batch_size=3, sampler=sampler, collate_fn=collate):
            seen.extend(b["index"].tolist())
            i = int(b["index"][0])
            assert torch.equal(b["clips"]["broad"][0], dataset[i]["clips"]["broad"])
    assert sorted(seen) == list(range(6))


# --------------------------------------------------------------------------------------------
# Corrupt files and bad arguments
# --------------------------------------------------------------------------------------------


def replacement(dataset, epoch: int, index: int, bad: set[int]) -> int:
    """The item the dataset reads instead of ``index`` (its retries, replayed: each attempt's
    generator first draws the failed item's views, then the replacement)."""
    current, attempt = index, 0
    while current in bad:
        rng = np.random.default_rng((dataset.seed, epoch, index, attempt))
        for _ in range(dataset.repeats):
            dataset.plan.sample(dataset.records[current], rng)
        current = int(rng.integers(len(dataset)))
        attempt += 1
    return current


def test_corrupt_file_is_skipped_counted_and_reported(dataset_root, caplog):
    manifest = build_manifest(dataset_root)
    bad_path = dataset_root / "train" / "silent" / "noaudio_0.mp4"
    bad_path.write_bytes(b"garbage" * 100)  # corrupted after indexing
    dataset = VideoDataset(manifest, TWO_VIEWS, split="train", seed=0)
    bad = record_index(dataset, "noaudio_0.mp4")
    with caplog.at_level(logging.WARNING, logger="vidssl.data.datasets"):
        item = dataset[bad]
        again = dataset[bad]
    expected = replacement(dataset, 0, bad, {bad})
    assert item["index"] == expected != bad and item["skipped"] == (str(bad_path),)
    assert item["label"] == dataset.records[expected].label
    assert torch.equal(item["clips"]["narrow"], again["clips"]["narrow"])  # deterministic replacement
    assert list(dataset.failures()) == [str(bad_path)]
    assert sum(str(bad_path) in rec.getMessage() for rec in caplog.records) == 1  # logged once
    # with repeats the skipped path is reported once per item (on its first sample)
    twice = VideoDataset(manifest, TWO_VIEWS, split="train", seed=0, repeats=2)
    repeated = twice[bad]
    assert [s["skipped"] for s in repeated] == [(str(bad_path),), ()]
    expected = replacement(twice, 0, bad, {bad})
    assert [int(s["index"]) for s in repeated] == [expected, expected] and expected != bad
    # across workers: the batch carries what its worker skipped
    fresh = VideoDataset(manifest, TWO_VIEWS, split="train", seed=0)
    skipped = [p for b in DataLoader(fresh, batch_size=3, num_workers=2, multiprocessing_context=worker_context(2), collate_fn=collate) for p in b["skipped"]]
    assert skipped == [str(bad_path)] and fresh.failures() == {}
    fresh.note_batch({"skipped": skipped})
    assert list(fresh.failures()) == [str(bad_path)]


def test_files_unreadable_at_index_time_are_left_out(dataset_root):
    (dataset_root / "train" / "silent" / "zero.mp4").write_bytes(b"")
    manifest = build_manifest(dataset_root)
    dataset = VideoDataset(manifest, TWO_VIEWS)
    assert len(dataset) == 6 and [p for p in dataset.failures()] == [str(dataset_root / "train" / "silent" / "zero.mp4")]


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
    with pytest.raises(UserError, match=re.escape("unknown decoder 'nope'; choose one of pyav, torchcodec")):
        VideoDataset(manifest, TWO_VIEWS, decoder="nope")
    with pytest.raises(DataError, match="no 'test' videos"):
        VideoDataset(manifest, TWO_VIEWS, split="test")

    class NoItems(ClipPlan):
        views = [ViewSpec("v", num_frames=4)]

        def item_keys(self, record):
            return []

    with pytest.raises(DataError, match=re.escape("the plan yields no items from the 6 videos of")):
        VideoDataset(manifest, NoItems())


def test_fit_canvas_resizes_short_side_and_centre_crops():
    frames = torch.zeros(2, 40, 80, 3, dtype=torch.uint8)
    frames[:, :, 30:50] = 255  # a bright vertical band in the centre
    out = fit_canvas(frames, (20, 20))
    assert out.shape == (2, 20, 20, 3) and out.dtype == torch.uint8
    # 40×80 -> 20×40 (antialiased bilinear), then columns 10..29: the band is columns 5..14, edges blended
    profile = torch.tensor([0, 0, 0, 0, 32, 223] + [255] * 8 + [223, 32, 0, 0, 0, 0], dtype=torch.uint8)
    torch.testing.assert_close(out, profile[None, None, :, None].expand(2, 20, 20, 3), rtol=0, atol=0)
    assert fit_canvas(frames, None) is frames
    stacked = fit_canvas(torch.zeros(3, 2, 40, 80, 3, dtype=torch.uint8), (10, 30))
    assert stacked.shape == (3, 2, 10, 30, 3)
    single = fit_canvas(frames[0], (20, 20))  # an image: H×W×C
    torch.testing.assert_close(single, out[0], rtol=0, atol=0)


def test_demo_dataset_through_a_two_worker_loader(demo_manifest):
    plan = ViewsPlan([ViewSpec("narrow", num_frames=8, stride=2, canvas=(32, 32)),
                      ViewSpec("broad", num_frames=16, stride=2, canvas=(24, 24), align_to="narrow"),
                      ViewSpec("broad_audio", kind="audio", seconds=1.0, align_to="narrow")])
    dataset = VideoDataset(demo_manifest, plan, split="train", fold=1)
    batch = next(iter(DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context=worker_context(2), shuffle=True, collate_fn=collate)))
    assert batch["clips"]["narrow"].shape == (4, 8, 32, 32, 3) and batch["clips"]["broad_audio"].shape == (4, 16000)
    assert batch["valid"]["broad_audio"].all() and batch["valid"]["narrow"].all()
    assert batch["label"].tolist() == [dataset.records[i].label for i in batch["index"].tolist()]


def test_far_apart_clips_are_decoded_as_separate_runs(dataset_root):
    manifest = build_manifest(dataset_root)
    plan = UniformClipsPlan(ViewSpec("clip", num_frames=5, stride=2, canvas=None), num_clips=2)  # starts 0 and 91
    dataset = VideoDataset(manifest, plan)
    index = record_index(dataset, "long_1.mp4")  # 100 frames
    calls = count_decodes(dataset)
    item = dataset[index]
    assert len(calls) == 2  # the 80-frame gap is skipped by seeking, not decoded
    assert calls[0] == pytest.approx((0.0, 9 / 25)) and calls[1] == pytest.approx((91 / 25, 100 / 25))
    clips = item["clips"]["clip"]
    for clip, start in zip(clips, (0, 91)):
        assert np.abs(levels(clip) - [frame_level(start + 2 * k) for k in range(5)]).max() <= 8


def test_worker_crop_cuts_the_box_from_the_whole_decoded_frame(demo_manifest):
    """A view with ``crop`` gets its box cut from the whole frame (decoded at ``source_short_side``) and
    resized to the canvas, and carries its zoom for the device-side blur."""
    from vidssl.data.datasets import crop_and_fit
    from vidssl.data.sampling import CropOptions

    view = ViewSpec("clip_1", num_frames=4, stride=2, canvas=(32, 32), crop=CropOptions((0.2, 0.766), (0.75, 1.333), 64))
    dataset = VideoDataset(demo_manifest, ViewsPlan([view]), seed=3)
    item = dataset[5]
    sel = selection_of(dataset, 5)
    record = dataset.records[dataset.items[5][0]]
    assert item["clips"]["clip_1"].shape == (4, 32, 32, 3)
    assert float(item["zoom"]["clip_1"]) == pytest.approx(sel.views["clip_1"].zoom)
    whole = dataset.decoder.decode(dataset.manifest.resolve(record), sel.start_frame / record.info.fps,
                                   sel.end_frame / record.info.fps).frames  # native 64×64
    frames = whole[torch.from_numpy(sel.views["clip_1"].frame_indices)]
    expected = crop_and_fit(frames, sel.views["clip_1"].crop_box, (32, 32))
    assert (item["clips"]["clip_1"].int() - expected.int()).abs().max() <= 1
