"""Ways to damage a video file, for the reliability tests (deterministic given a seed).

``corrupt_middle`` reproduces issue 16's case 1: the file's index (``moov``) stays intact, so it
probes fine, but the media data from some point on is garbage, so decoding breaks part-way
through. :data:`MUTATIONS` are the fuzz test's random mutations.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np


def copy_dataset(src: Path, dst: Path) -> Path:
    """A writable copy of a dataset root, without its saved manifest (so it is re-probed)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("vidssl_manifest.json", ".vidssl*"))
    return dst


def boxes(data: bytes) -> dict[str, tuple[int, int]]:
    """Top-level MP4 boxes: name -> (offset, size)."""
    out, i = {}, 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        if size < 8:
            break
        out[kind.decode("latin-1")] = (i, size)
        i += size
    return out


def corrupt_middle(path: Path, start: float = 0.5, seed: int = 0) -> None:
    """Overwrite the media data from fraction ``start`` of it to its end with random bytes (index kept)."""
    data = bytearray(path.read_bytes())
    offset, size = boxes(bytes(data))["mdat"]
    a, b = offset + 8 + int((size - 8) * start), offset + size
    data[a:b] = np.random.default_rng(seed).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def truncate(path: Path, rng: np.random.Generator) -> str:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * rng.uniform(0.05, 0.95))])
    return "truncated"


def flip_bytes(path: Path, rng: np.random.Generator) -> str:
    data = bytearray(path.read_bytes())
    for i in rng.integers(0, len(data), 64):
        data[i] = int(rng.integers(0, 256))
    path.write_bytes(bytes(data))
    return "bytes flipped"


def garbage_tail(path: Path, rng: np.random.Generator) -> str:
    corrupt_middle(path, start=float(rng.uniform(0.1, 0.9)), seed=int(rng.integers(1 << 30)))
    return "media data garbage from the middle"


def empty(path: Path, rng: np.random.Generator) -> str:
    path.write_bytes(b"")
    return "empty"


def still_image(path: Path, rng: np.random.Generator) -> str:
    """A PNG renamed .mp4 (issue 16 case 8)."""
    import av

    with av.open(str(path), "w", format="image2", options={"update": "1"}) as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 128, np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return "still image"


#: The fuzz test's mutations (each returns a description).
MUTATIONS = [truncate, flip_bytes, garbage_tail, empty, still_image]


def replace_audio(path: Path, audio: str, seed: int = 0) -> None:
    """Rewrite ``path`` with its video packets untouched and its audio track ``"dropped"`` (no
    track, like surveillance footage) or ``"garbage"`` (a track whose packets decode to nothing,
    like the trailer's AC3 track of issue 16)."""
    import av

    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    rng = np.random.default_rng(seed)
    with av.open(str(path)) as src, av.open(str(tmp), "w") as out:
        v_in = src.streams.video[0]
        v_out = out.add_stream_from_template(v_in)
        a_out = None
        if audio == "garbage":
            a_out = out.add_stream("aac", rate=16000)
            a_out.layout = "mono"
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, 0
            list(a_out.encode(frame))  # opens the encoder: the track gets real codec parameters
        for packet in src.demux(v_in):
            if packet.dts is None:
                continue
            packet.stream = v_out
            out.mux(packet)
        if a_out is not None:
            duration = float(v_in.duration * v_in.time_base) if v_in.duration else 2.0
            for i in range(int(duration * 16000 / 1024) + 1):
                packet = av.Packet(rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
                packet.stream, packet.pts, packet.dts = a_out, i * 1024, i * 1024
                out.mux(packet)
    tmp.replace(path)
