"""Optical flow for BraVe's broad flow view: computed once per video with OpenCV, cached as int8.

BraVe's paper trains its best configurations (V/F, V/AF) with an optical-flow broad view, but
the released code cannot produce flow. vidssl computes dense flow with OpenCV (DIS by default,
Farneback as an option) between *consecutive native frames* of the whole video, at a reduced
resolution, and caches it next to the dataset so every later epoch only slices it:

    <dataset root>/.vidssl_flow/<hash>.npz      # flow int8 N×h×w×2, scale float32, meta

``flow[t]`` is the motion from frame ``t`` to frame ``t + 1`` in pixels of the cached
resolution (the last frame repeats the previous flow, so every frame index has one). Values
are stored as ``round(flow / scale)`` in int8 with one ``scale`` per video (max |flow| / 127),
which keeps 8-bit precision where a video has motion and costs 1/4 of float32 on disk.

The broad flow view is then built by :func:`flow_view`: take the flow frames at the broad
view's frame indices (looping like the video), resize to the view's canvas (rescaling the
vectors with the image), and normalise to the network's range (``B×2×T×H×W`` after collate).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from vidssl.errors import ConfigError

FlowMethod = Literal["dis", "farneback"]
FLOW_METHODS: tuple[str, ...] = ("dis", "farneback")
CACHE_DIRNAME = ".vidssl_flow"


def _to_gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame.ndim == 2:
        return np.ascontiguousarray(frame)
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def _resize_short_side(frame: np.ndarray, short_side: int | None) -> np.ndarray:
    import cv2

    if short_side is None:
        return frame
    h, w = frame.shape[:2]
    scale = short_side / min(h, w)
    if abs(scale - 1.0) < 1e-6:
        return frame
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def compute_flow(frames: np.ndarray, method: FlowMethod = "dis", short_side: int | None = None) -> np.ndarray:
    """Dense optical flow between consecutive frames.

    Args:
        frames: ``T×H×W×3`` uint8 RGB (or ``T×H×W`` gray), ``T >= 1``.
        method: ``"dis"`` (OpenCV DIS, medium preset; fast and accurate) or ``"farneback"``.
        short_side: resize frames so their short side is this many pixels first (None: keep).

    Returns:
        ``T×h×w×2`` float32, ``[..., 0]`` = dx (right positive), ``[..., 1]`` = dy (down positive),
        in pixels of the resized frames. ``flow[t]`` moves frame ``t`` towards ``t+1``; the last
        entry repeats the one before it (a single frame gives zero flow).
    """
    import cv2

    if method not in FLOW_METHODS:
        raise ConfigError(f"unknown optical flow method '{method}'; choose one of {list(FLOW_METHODS)}")
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or frames.shape[0] < 1 or (frames.ndim == 4 and frames.shape[-1] not in (1, 3)):
        raise ValueError(f"compute_flow expects T×H×W×3 (or T×H×W) frames with T >= 1, got shape {frames.shape}")
    if frames.ndim == 4 and frames.shape[-1] == 1:
        frames = frames[..., 0]
    if frames.dtype != np.uint8:
        raise ValueError(f"compute_flow expects uint8 frames, got {frames.dtype}")
    gray = [_to_gray(_resize_short_side(f, short_side)) for f in frames]
    h, w = gray[0].shape
    out = np.zeros((len(gray), h, w, 2), dtype=np.float32)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        step = lambda a, b: dis.calc(a, b, None)  # noqa: E731
    else:
        step = lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)  # noqa: E731
    for t in range(len(gray) - 1):
        out[t] = step(gray[t], gray[t + 1])
    if len(gray) > 1:
        out[-1] = out[-2]
    return out


def quantize_flow(flow: np.ndarray) -> tuple[np.ndarray, float]:
    """float flow -> (int8 codes, scale) with ``flow ≈ codes * scale``; scale = max|flow| / 127 (1.0 if all zero)."""
    peak = float(np.abs(flow).max()) if flow.size else 0.0
    scale = peak / 127.0 if peak > 0 else 1.0
    codes = np.clip(np.rint(flow / scale), -127, 127).astype(np.int8)
    return codes, scale


def dequantize_flow(codes: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of :func:`quantize_flow` (float32)."""
    return codes.astype(np.float32) * np.float32(scale)


@dataclass(frozen=True)
class CachedFlow:
    """The cached flow of one video: ``codes`` int8 ``N×h×w×2`` and its ``scale`` (pixels per code)."""

    codes: np.ndarray
    scale: float
    fps: float

    @property
    def num_frames(self) -> int:
        return int(self.codes.shape[0])

    def frames(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Flow at native frame ``indices`` (taken modulo N, i.e. looping like the video): ``T×h×w×2`` float32."""
        idx = np.asarray(indices, dtype=np.int64) % self.num_frames
        return dequantize_flow(self.codes[idx], self.scale)


FrameLoader = Callable[[Path, int], "tuple[np.ndarray, float]"]


def _default_frame_loader(path: Path, short_side: int) -> tuple[np.ndarray, float]:
    """Decode every frame of ``path`` at ``short_side`` with vidssl's decoder: (``N×H×W×3`` uint8, fps)."""
    from vidssl.data.decode import get_decoder, probe

    info = probe(path, count_frames=False)
    end = max(float(info.duration), 1.0 / max(float(info.fps), 1e-3)) + 1.0  # past the end: every frame
    clip = get_decoder("pyav").decode(path, 0.0, end, short_side=short_side)
    return np.asarray(clip.frames), float(info.fps)


class FlowCache:
    """Per-video optical flow computed once and stored under ``<cache_root>/.vidssl_flow/``.

    Args:
        cache_root: usually the dataset root (the directory holding the manifest).
        method: ``"dis"`` or ``"farneback"``.
        short_side: resolution (short side, pixels) at which flow is computed and stored.
        frame_loader: ``(path, short_side) -> (frames N×H×W×3 uint8, fps)``; defaults to vidssl's
            decoder. Injected in tests.

    The cache key hashes the video's absolute path, size and mtime plus ``method`` and
    ``short_side``, so an edited video or a different setting is recomputed. Files are written
    atomically (temporary file + rename), so concurrent data-loader workers are safe: the worst
    case is the same flow computed twice.
    """

    def __init__(
        self,
        cache_root: str | Path,
        method: FlowMethod = "dis",
        short_side: int = 128,
        frame_loader: FrameLoader | None = None,
    ):
        if method not in FLOW_METHODS:
            raise ConfigError(f"unknown optical flow method '{method}'; choose one of {list(FLOW_METHODS)}")
        if short_side < 8:
            raise ConfigError(f"flow short_side must be >= 8 pixels, got {short_side}")
        self.dir = Path(cache_root) / CACHE_DIRNAME
        self.method = method
        self.short_side = int(short_side)
        self.frame_loader = frame_loader or _default_frame_loader
        self.computed = 0  # how many videos this instance had to compute (the rest came from disk)

    def path_for(self, video_path: str | Path) -> Path:
        """Where the flow of ``video_path`` is (or will be) cached."""
        video_path = Path(video_path).resolve()
        st = video_path.stat()
        key = f"{video_path}|{st.st_size}|{st.st_mtime_ns}|{self.method}|{self.short_side}"
        return self.dir / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npz"

    def get(self, video_path: str | Path) -> CachedFlow:
        """Flow of ``video_path`` from the cache, computing and storing it on first use."""
        video_path = Path(video_path)
        cache_file = self.path_for(video_path)
        if cache_file.is_file():
            try:
                with np.load(cache_file, allow_pickle=False) as data:
                    return CachedFlow(data["codes"], float(data["scale"]), float(data["fps"]))
            except (OSError, ValueError, KeyError):
                pass  # truncated/corrupt cache entry: recompute below and overwrite it
        frames, fps = self.frame_loader(video_path, self.short_side)
        flow = compute_flow(frames, self.method, short_side=None)
        codes, scale = quantize_flow(flow)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, codes=codes, scale=np.float32(scale), fps=np.float32(fps))
        tmp.replace(cache_file)
        self.computed += 1
        return CachedFlow(codes, scale, float(fps))


def flow_view(flow: np.ndarray, size: int | tuple[int, int], max_pixels: float = 20.0) -> np.ndarray:
    """Fit a flow clip to the view's canvas and normalise it for the network.

    Like the video worker does for frames: resize so the canvas is covered (keeping the aspect
    ratio), then centre-crop to ``size``. The random crop and flip of the view happen later, on
    the device (:func:`vidssl.data.transforms.augment_flow`). The vectors are rescaled with the image so they
    stay in pixels of the output.

    Args:
        flow: ``T×h×w×2`` float32 in pixels of the cached resolution.
        size: output ``(H, W)`` (or one int for a square).
        max_pixels: displacement (in output pixels) mapped to 1.0; values are clipped to [-1, 1].
            20 px is the usual two-stream bound, here applied at the view's own resolution.

    Returns:
        ``2×T×H×W`` float32 in [-1, 1] (channels first, collates to ``B×2×T×H×W``).
    """
    import cv2

    out_h, out_w = (size, size) if isinstance(size, int) else size
    t, h, w, _ = flow.shape
    scale = max(out_h / h, out_w / w)
    new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    out = np.empty((t, out_h, out_w, 2), dtype=np.float32)
    for i in range(t):
        resized = cv2.resize(flow[i], (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        out[i] = resized[top : top + out_h, left : left + out_w]
    out[..., 0] *= new_w / w
    out[..., 1] *= new_h / h
    np.clip(out / max_pixels, -1.0, 1.0, out=out)
    return np.ascontiguousarray(out.transpose(3, 0, 1, 2))
