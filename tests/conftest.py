"""Shared test setup: offline, few threads, and the embedded dataset as a fixture."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A tiny embedded dataset (UCF101 layout, real MP4 files with audio), generated once per session."""
    from vidssl.data.demo import generate_demo

    root = tmp_path_factory.mktemp("demo") / "demo"
    generate_demo(root, size="tiny", seed=0)
    return root


@pytest.fixture(scope="session")
def demo_manifest(demo_root):
    """The manifest of :func:`demo_root` (probed once per session)."""
    from vidssl.data.index import build_manifest

    return build_manifest(demo_root, format="auto")


@pytest.fixture(scope="session")
def movie_root(tmp_path_factory):
    """A tiny 'movie' variant of the embedded dataset (shots grouped into scenes, MovieNet-SSeg format)."""
    from vidssl.data.demo import generate_movie_demo

    root = tmp_path_factory.mktemp("movie") / "movie"
    generate_movie_demo(root, size="tiny", seed=0)
    return root


def write_image_tree(root, splits=("train", "val"), classes=("cat", "dog", "eel"), per_class=3, size=(48, 64)):
    """Small still images in an ImageNet-style tree ``root/SPLIT/CLASS/*`` (``splits=(None,)``: ``root/CLASS/*``).

    Every image is one flat colour (class ``c``'s red channel is ``60 * (c + 1)``, green ``20 * k`` for the
    k-th image), alternately a ``.JPEG`` and a ``.png``, so tests can tell which image and class they got.
    Returns ``root``.
    """
    from pathlib import Path

    import numpy as np
    from PIL import Image

    root = Path(root)
    for split in splits:
        for c, name in enumerate(classes):
            folder = root / name if split is None else root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                pixels = np.zeros((*size, 3), dtype=np.uint8)
                pixels[..., 0], pixels[..., 1], pixels[..., 2] = 60 * (c + 1), 20 * k, 100
                path = folder / f"{name}_{k}.{'JPEG' if k % 2 == 0 else 'png'}"
                Image.fromarray(pixels).save(path, **({"quality": 95} if k % 2 == 0 else {}))
    return root


@pytest.fixture(scope="session")
def image_root(tmp_path_factory):
    """A tiny ImageNet-style folder (train/val × 3 classes × 3 images of 48×64, JPEG and PNG), written once."""
    return write_image_tree(tmp_path_factory.mktemp("images") / "imagenet")


@pytest.fixture()
def make_image_tree():
    """:func:`write_image_tree`, for tests that build (and break) their own image folder."""
    return write_image_tree
