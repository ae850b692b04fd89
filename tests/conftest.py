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
