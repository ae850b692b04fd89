"""Still images: the ``images`` layout (ImageNet-style class folders), the Pillow decoder, image views cut
from them, and every bad tree or file failing loudly or being skipped and reported."""

from __future__ import annotations

import json
import logging
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from vidssl.data.datasets import VideoDataset, collate
from vidssl.data.decode import get_decoder, probe_image
from vidssl.data.index import build_manifest, detect_format, load_manifest
from vidssl.data.sampling import RandomClipPlan, ViewSpec
from vidssl.errors import DataError, VideoDecodeError

IMAGE_VIEW = RandomClipPlan(ViewSpec("image", kind="image", canvas=(32, 32)))


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


def noisy_jpeg(path, size=(96, 128), seed=0):
    """A JPEG of noise (its data is much longer than its header, so cutting it keeps the header)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)
    return path


# ------------------------------------------------------------------------------------------ layout


def test_imagenet_tree_gives_classes_splits_and_records(image_root):
    assert detect_format(image_root) == "images"
    manifest = build_manifest(image_root, write=False)
    assert manifest.format == "images" and manifest.stills
    assert manifest.class_names == ["cat", "dog", "eel"] and manifest.folds == [1] and len(manifest) == 18
    train, val = manifest.subset("train"), manifest.subset("val")
    assert len(train) == len(val) == 9
    assert train.records[0].path == "train/cat/cat_0.JPEG" and train.records[1].path == "train/cat/cat_1.png"
    # one label per class name, the same in both splits
    for subset in (train, val):
        assert {(r.label_name, r.label) for r in subset.records} == {("cat", 0), ("dog", 1), ("eel", 2)}
    info = train.records[0].info
    assert (info.num_frames, info.fps, info.width, info.height, info.has_audio) == (1, 1.0, 64, 48, False)
    assert {r.info.video_codec for r in manifest.records} == {"jpeg", "png"}
    assert not manifest.unreadable()


def test_tree_without_splits_and_flat_unlabelled_folders(tmp_path, make_image_tree, caplog):
    plain = make_image_tree(tmp_path / "plain", splits=(None,), classes=("a", "b"), per_class=2)
    manifest = build_manifest(plain, write=False)
    assert manifest.format == "images" and manifest.folds == [] and manifest.class_names == ["a", "b"]
    assert [(r.path, r.label) for r in manifest.records] == [("a/a_0.JPEG", 0), ("a/a_1.png", 0), ("b/b_0.JPEG", 1),
                                                             ("b/b_1.png", 1)]
    # ImageNet's official val/ is one flat folder: its images are unlabelled (-1), train keeps its classes
    tree = make_image_tree(tmp_path / "imagenet", splits=("train",), classes=("a", "b"), per_class=2)
    (tree / "val").mkdir()
    for k in range(3):
        shutil.copyfile(tree / "train" / "a" / "a_0.JPEG", tree / "val" / f"ILSVRC2012_val_{k:08d}.JPEG")
    with caplog.at_level(logging.INFO, logger="vidssl.data.layouts.images"):
        manifest = build_manifest(tree, write=False)
    val = manifest.subset("val")
    assert len(val) == 3 and {(r.label, r.label_name) for r in val.records} == {(-1, "")}
    assert manifest.class_names == ["a", "b"] and len(manifest.subset("train")) == 4
    assert "3 images without a class folder" in caplog.text


def test_other_files_and_hidden_files_are_left_out_and_counted(tmp_path, make_image_tree, caplog):
    root = make_image_tree(tmp_path / "root", splits=("train",), classes=("a",), per_class=2)
    (root / "train" / "a" / "readme.txt").write_text("not an image")
    (root / "train" / "a" / "._a_0.JPEG").write_bytes(b"macOS resource fork")  # hidden: never read
    (root / "train" / "a" / "nested").mkdir()
    (root / "LOC_synset_mapping.txt").write_text("n01 a\n")  # files next to the splits are not read
    with caplog.at_level(logging.WARNING, logger="vidssl.data.layouts.images"):
        manifest = build_manifest(root, write=False)
    assert [r.path for r in manifest.records] == ["train/a/a_0.JPEG", "train/a/a_1.png"]
    assert "2 file(s) or folder(s) inside" in caplog.text and "are not images and are left out" in caplog.text


def test_bad_trees_fail_with_one_line_that_says_what_to_do(tmp_path, make_image_tree):
    # an empty class folder
    root = make_image_tree(tmp_path / "empty_class", classes=("a", "b"), per_class=1)
    shutil.rmtree(root / "val" / "b")
    (root / "val" / "b").mkdir()
    with pytest.raises(DataError, match=re.escape("1 class folder(s) hold no images, e.g. ")) as excinfo:
        build_manifest(root, format="images", write=False)
    assert str(root / "val" / "b") in one_line(excinfo) and "fill them in or remove them" in str(excinfo.value)
    # ROOT one level too high: the "class" folder holds the dataset's folders
    above = tmp_path / "above"
    make_image_tree(above / "imagenet", classes=("a",), per_class=1)
    with pytest.raises(DataError, match="is ROOT one level too high"):
        build_manifest(above, format="images", write=False)
    # no image at all
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="has no images .*point ROOT at the folder that holds the images") as excinfo:
        build_manifest(tmp_path / "nothing", format="images", write=False)
    one_line(excinfo)
    # class folders and loose images side by side
    loose = make_image_tree(tmp_path / "loose", splits=(None,), classes=("a",), per_class=1)
    shutil.copyfile(loose / "a" / "a_0.JPEG", loose / "stray.JPEG")
    with pytest.raises(DataError, match="both class folders .* and 1 loose image") as excinfo:
        build_manifest(loose, format="images", write=False)
    one_line(excinfo)


def test_videos_and_images_are_never_mixed(tmp_path, make_image_tree, videos):
    root = make_image_tree(tmp_path / "mixed", splits=("train",), classes=("a", "b"), per_class=1)
    shutil.copyfile(videos["av"], root / "train" / "b" / "clip.mp4")
    with pytest.raises(DataError, match="mixes 1 video.*with 1 image.*separate dataset roots") as excinfo:
        build_manifest(root, format="images", write=False)
    one_line(excinfo)
    with pytest.raises(DataError, match="holds both videos and images; pass format=folder") as excinfo:
        detect_format(root)
    one_line(excinfo)
    # videos only, read as images: the message names the right format
    only_videos = tmp_path / "videos"
    (only_videos / "a").mkdir(parents=True)
    shutil.copyfile(videos["av"], only_videos / "a" / "clip.mp4")
    assert detect_format(only_videos) == "folder"
    with pytest.raises(DataError, match="holds videos .*not images; read this dataset with format=folder"):
        build_manifest(only_videos, format="images", write=False)


def test_a_saved_manifest_of_another_format_is_not_silently_used(tmp_path, make_image_tree):
    from vidssl.data.module import open_manifest

    root = make_image_tree(tmp_path / "root", splits=("train",), classes=("a",), per_class=1)
    build_manifest(root)  # writes ROOT/vidssl_manifest.json (format images)
    assert open_manifest(root, "images").stills and open_manifest(root, "auto").stills
    with pytest.raises(DataError, match="as format=images, but format=folder was asked; re-index it") as excinfo:
        open_manifest(root, "folder")
    one_line(excinfo)


# ------------------------------------------------------------------------------------------ decoding


def test_decoder_gives_one_rgb_frame_resized_on_the_short_side(tmp_path):
    decoder = get_decoder("image")
    paths = {}
    for mode, colour in (("RGB", (200, 40, 90)), ("L", 120), ("RGBA", (10, 220, 30, 0)), ("P", None), ("CMYK", (0, 0, 0, 0))):
        image = Image.new(mode, (64, 48), colour) if colour is not None else Image.new("RGB", (64, 48), (0, 51, 102)).convert("P")
        paths[mode] = tmp_path / f"{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
        image.save(paths[mode])
    clip = decoder.decode(paths["RGB"])
    assert clip.frames.shape == (1, 48, 64, 3) and clip.frames.dtype == torch.uint8
    assert clip.frames[0, 10, 10].tolist() == [200, 40, 90] and clip.audio is None
    assert decoder.decode(paths["RGB"], short_side=24).frames.shape == (1, 24, 32, 3)
    assert decoder.decode(paths["RGB"], short_side=96).frames.shape == (1, 96, 128, 3)
    assert decoder.decode(paths["L"]).frames[0, 0, 0].tolist() == [120, 120, 120]
    assert decoder.decode(paths["RGBA"]).frames[0, 0, 0].tolist() == [10, 220, 30]  # alpha dropped
    assert decoder.decode(paths["P"]).frames[0, 0, 0].tolist() == [0, 51, 102]  # a web-palette colour
    cmyk = decoder.decode(paths["CMYK"]).frames[0, 0, 0]  # CMYK 0,0,0,0 is white
    assert cmyk.min() >= 250
    # a large JPEG decoded at a reduced DCT scale still comes out at exactly the asked size
    big = noisy_jpeg(tmp_path / "big.jpg", size=(400, 600))
    assert decoder.decode(big, short_side=64).frames.shape == (1, 64, 96, 3)
    assert decoder.decode_audio(big, 0.0, 1.0, 16000) == (None, False)
    with pytest.raises(ValueError, match="only frame 0 exists"):
        decoder.decode(big, frame_indices=np.array([0, 1]))


def test_unreadable_images_raise_with_the_path_and_the_reason(tmp_path):
    decoder = get_decoder("image")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_text("this is not an image\n" * 10)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(deep)
    cut = noisy_jpeg(tmp_path / "cut.JPEG")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    for path, reason in ((garbage, "not a readable image"), (empty, "file is empty"), (tmp_path / "none.jpg", "does not exist"),
                         (deep, "16-bit or float samples")):
        with pytest.raises(VideoDecodeError, match=reason) as excinfo:
            probe_image(path)
        assert excinfo.value.path == str(path)
    assert probe_image(cut).width == 128  # the header is intact: only decoding finds the damage
    with pytest.raises(VideoDecodeError, match="image data is corrupt .*truncated"):
        decoder.decode(cut)


# ------------------------------------------------------------------------------------------ dataset


def test_image_views_from_an_image_folder(image_root):
    manifest = build_manifest(image_root, write=False)
    dataset = VideoDataset(manifest, IMAGE_VIEW, split="train", decoder="torchcodec")  # the video backend does not apply
    assert dataset.decoder.name == "image" and len(dataset) == 9
    batch = collate([dataset[i] for i in range(len(dataset))])
    images = batch["clips"]["image"]
    assert images.shape == (9, 32, 32, 3) and images.dtype == torch.uint8
    assert batch["valid"]["image"].all() and batch["skipped"] == []
    # each image's colour says its class: the label travels with the right pixels
    red = images[:, 16, 16, 0].float()
    torch.testing.assert_close(red, 60.0 * (batch["label"].float() + 1), atol=3.0, rtol=0.0)
    # repeated augmentation: k samples of one decode
    repeated = VideoDataset(manifest, IMAGE_VIEW, split="val", repeats=2)[0]
    assert len(repeated) == 2 and repeated[0]["clips"]["image"].shape == (32, 32, 3)


def test_video_audio_and_flow_views_of_still_images_are_refused(image_root):
    manifest = build_manifest(image_root, write=False)
    for view in (ViewSpec("clip", num_frames=8, canvas=(32, 32)), ViewSpec("sound", kind="audio", seconds=1.0),
                 ViewSpec("motion", kind="flow", num_frames=4)):
        with pytest.raises(DataError, match=rf"holds still images \(format=images\), but view\(s\) {view.name} \({view.kind}\) "
                                            "need videos; point this stream's root at videos") as excinfo:
            VideoDataset(manifest, RandomClipPlan(view), split="train")
        one_line(excinfo)


def test_corrupt_images_are_skipped_counted_and_reported(tmp_path, make_image_tree, caplog):
    root = make_image_tree(tmp_path / "root", splits=("train",), classes=("a", "b"), per_class=3)
    cut = noisy_jpeg(root / "train" / "a" / "cut.JPEG")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # probes fine, breaks while decoding
    (root / "train" / "b" / "garbage.png").write_text("not a png")  # unreadable at probe
    with caplog.at_level(logging.WARNING):
        manifest = build_manifest(root)
    [bad] = manifest.unreadable()
    assert bad.path == "train/b/garbage.png" and "not a readable image" in bad.error
    assert "1 of 8 images are unreadable" in caplog.text
    dataset = VideoDataset(manifest, IMAGE_VIEW, split="train")
    assert len(dataset) == 7 and list(dataset.failures()) == [str(root / "train" / "b" / "garbage.png")]
    index = next(i for i, (r, _) in enumerate(dataset.items) if dataset.records[r].path == "train/a/cut.JPEG")
    with caplog.at_level(logging.WARNING):
        item = dataset[index]
    assert item["skipped"] == (str(cut),) and int(item["index"]) != index  # another image, never the broken one
    assert "skipping unreadable image" in caplog.text and str(cut) in dataset.failures()
    # evaluation never substitutes: the item is dropped from the batch and listed
    excluded = VideoDataset(manifest, IMAGE_VIEW, split="train", on_unreadable="exclude")
    batch = collate([excluded[index], excluded[0]])
    assert batch["clips"]["image"].shape[0] == 1 and batch["unreadable"][0][1] == str(cut)


def test_data_check_and_prepare_on_an_image_folder(tmp_path, make_image_tree, capsys):
    from vidssl.cli import main

    root = make_image_tree(tmp_path / "root", splits=("train",), classes=("a", "b"), per_class=2)
    cut = noisy_jpeg(root / "train" / "a" / "cut.JPEG")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    (root / "train" / "b" / "garbage.png").write_text("not a png")
    report = tmp_path / "check.json"
    assert main(["data", "check", str(root), "--clips", "2", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "images      6 indexed = 4 OK + 2 unreadable (1 at probe, 1 break while decoding)" in out
    assert str(cut) in out and "decode      2 images at 112x112" in out
    data = json.loads(report.read_text())
    assert data["format"] == "images" and data["counts"]["broken"] == 1 and str(cut) in data["broken"]
    assert main(["data", "index", str(root)]) == 0
    assert "indexed 6 images (images, 2 classes" in capsys.readouterr().out
    assert load_manifest(root).stills
    assert main(["data", "prepare", str(root), str(tmp_path / "out")]) == 2
    assert "holds still images (format=images): there are no videos to re-encode" in capsys.readouterr().err
