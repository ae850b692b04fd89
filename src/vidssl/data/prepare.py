"""Re-encode a dataset at the training scale with a short keyframe interval (``vidssl data prepare``).

Measured on a 16-core H100 box (``reference/dependencies.md``): a DataLoader decoding 340×256
H.264 with a keyframe every 250 frames delivered 194 clips/s; the same videos with a keyframe
every 25 frames 346; shrunk to 172×128 as well, 679 — the speed a compiled R3D-18 step consumes.
Decoding random clips costs a seek to the previous keyframe plus every frame after it, and the
cost of each frame grows with its pixels; both are set once, when the data is written.

:func:`prepare_dataset` writes, for every video of a source manifest:

* ``DST/<same relative path>.mp4``: H.264 (libx264, CRF ``crf``, yuv420p) scaled so the short side is
  ``short_side`` (never up-scaled; sides rounded to even numbers, as 4:2:0 needs), a keyframe
  every ``gop_seconds`` at the source frame rate, **every source frame kept** (frame indices in
  annotations such as shots stay valid), and the first audio track re-encoded to AAC at its own
  rate and channel layout (stereo at most);
* ``DST/vidssl_manifest.json``: the source manifest (labels, splits, annotations) with each record
  pointing at its prepared file and probed again, so ``data.root=DST`` trains on it directly;
* ``DST/vidssl_prepare.json``: the options, so a second run into the same DST resumes (files already
  written are kept) and a run with other options is refused instead of mixing two encodings.

Files are encoded in parallel, one process per file, one codec thread each (the processes are the
parallelism). Each output is written to ``NAME.partial`` and renamed when complete, so a killed run
leaves no half-written video behind. A source that cannot be read stays in the manifest marked
unreadable (as ``vidssl data index`` marks it), with the reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

from vidssl.errors import ConfigError, DataError, VidsslError

__all__ = ["PrepareOptions", "PreparedFile", "PrepareReport", "prepare_file", "prepare_dataset", "output_path",
           "STATE_NAME"]

STATE_NAME = "vidssl_prepare.json"
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class PrepareOptions:
    """How prepared files are encoded.

    Attributes:
        short_side: target length of the shorter side in pixels (None keeps the size). Sources
            already smaller are not up-scaled.
        gop_seconds: keyframe interval in seconds (``round(gop_seconds · fps)`` frames, at least 1).
        crf: libx264 constant rate factor (lower: larger files, fewer artefacts; 23 is x264's default).
        preset: libx264 speed preset (``ultrafast`` … ``veryslow``).
        audio_bitrate: AAC bit rate in bit/s.
    """

    short_side: int | None = 128
    gop_seconds: float = 1.0
    crf: int = 23
    preset: str = "veryfast"
    audio_bitrate: int = 128_000

    def __post_init__(self) -> None:
        if self.short_side is not None and self.short_side < 16:
            raise ConfigError(f"--short-side must be at least 16 pixels, got {self.short_side}")
        if not self.gop_seconds > 0:
            raise ConfigError(f"--gop-seconds must be > 0, got {self.gop_seconds}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"--crf must be in [0, 51] (libx264), got {self.crf}")
        presets = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
        if self.preset not in presets:
            raise ConfigError(f"--preset must be one of {', '.join(presets)}, got {self.preset!r}")


@dataclass
class PreparedFile:
    """What happened to one source file."""

    source: str
    output: str
    bytes_in: int = 0
    bytes_out: int = 0
    frames: int = 0
    source_frames: int | None = None
    audio: bool = False
    truncated: bool = False  # a stream error ended the source early; what was decoded was kept
    error: str | None = None
    reused: bool = False  # already prepared by an earlier run into the same DST


@dataclass
class PrepareReport:
    """Totals of one :func:`prepare_dataset` call."""

    manifest: str
    files: list[PreparedFile] = field(default_factory=list)

    @property
    def bytes_in(self) -> int:
        return sum(f.bytes_in for f in self.files if f.error is None)

    @property
    def bytes_out(self) -> int:
        return sum(f.bytes_out for f in self.files if f.error is None)

    @property
    def failed(self) -> list[PreparedFile]:
        return [f for f in self.files if f.error is not None]


def output_path(relative: str) -> str:
    """The prepared file's path (relative to DST) for a source path relative to SRC: same folders, ``.mp4``."""
    return str(Path(relative).with_suffix(".mp4"))


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def _target_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) with the short side at ``short_side`` (never larger than the source), both even."""
    scale = 1.0 if short_side is None else min(1.0, short_side / min(width, height))
    return _even(width * scale), _even(height * scale)


def prepare_file(source: str, output: str, options: PrepareOptions) -> PreparedFile:
    """Re-encode ``source`` to ``output`` (see the module docstring); never raises for a bad source.

    Returns a :class:`PreparedFile` whose ``error`` says why nothing was written when the source
    could not be read (no file at ``output`` then).
    """
    import av

    result = PreparedFile(source=source, output=output)
    partial = output + PARTIAL_SUFFIX
    try:
        result.bytes_in = os.path.getsize(source)
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        _encode(source, partial, options, result)
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError, VidsslError) as exc:
        result.error = str(exc) or type(exc).__name__
    if result.error is None and result.frames == 0:
        result.error = "no video frame could be decoded"
    if result.error is not None:
        if os.path.exists(partial):
            os.remove(partial)
        return result
    os.replace(partial, output)
    result.bytes_out = os.path.getsize(output)
    return result


def _encode(source: str, partial: str, options: PrepareOptions, result: PreparedFile) -> None:
    import av
    from av.video.frame import PictureType
    from av.video.reformatter import VideoReformatter

    with av.open(source, metadata_errors="ignore") as src:
        if not src.streams.video:
            raise DataError("no video stream")
        vin = src.streams.video[0]
        vin.thread_type, vin.codec_context.thread_count = "SLICE", 1
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        fps = float(rate)
        width, height = vin.codec_context.width, vin.codec_context.height
        if not width or not height:
            raise DataError("video stream has no frame size")
        out_w, out_h = _target_size(width, height, options.short_side)
        gop = max(1, int(round(options.gop_seconds * fps)))
        ain = src.streams.audio[0] if src.streams.audio else None
        v_origin = vin.start_time if vin.start_time is not None else 0
        v_tb = float(vin.time_base) if vin.time_base else 1.0 / fps
        with av.open(partial, "w", format="mp4", options={"movflags": "+faststart"}) as dst:
            vout = dst.add_stream("libx264", rate=rate, options={
                "crf": str(options.crf), "preset": options.preset, "g": str(gop), "keyint_min": str(gop),
                "sc_threshold": "0",  # keyframes exactly every gop frames: seek cost is bounded and predictable
                "threads": "1"})
            vout.width, vout.height, vout.pix_fmt = out_w, out_h, "yuv420p"
            vout.codec_context.time_base = Fraction(1, 1) / rate
            aout = resampler = None
            if ain is not None and ain.codec_context.sample_rate:
                audio_rate = int(ain.codec_context.sample_rate)
                layout = "mono" if (ain.codec_context.channels or 1) == 1 else "stereo"
                aout = dst.add_stream("aac", rate=audio_rate)
                aout.layout, aout.bit_rate = layout, options.audio_bitrate
                aout.codec_context.time_base = Fraction(1, audio_rate)
                resampler = av.AudioResampler(format="fltp", layout=layout, rate=audio_rate,
                                              frame_size=aout.codec_context.frame_size or 1024)
            reformatter = VideoReformatter()
            last_pts, audio_samples, audio_ok = -1, None, aout is not None
            streams = [vin] + ([ain] if aout is not None else [])
            try:
                for packet in src.demux(*streams):
                    if packet.stream.type == "video":
                        for frame in packet.decode():
                            t = ((frame.pts - v_origin) * v_tb) if frame.pts is not None else (last_pts + 1) / fps
                            # every source frame is kept, in order, at the source rate: frame k stays frame k
                            last_pts = max(int(round(t * fps)), last_pts + 1)
                            scaled = reformatter.reformat(frame, width=out_w, height=out_h, format="yuv420p",
                                                          interpolation="AREA")
                            scaled.pts, scaled.time_base = last_pts, vout.codec_context.time_base
                            # the source's picture types would force its keyframes on the encoder
                            scaled.pict_type = PictureType.NONE
                            dst.mux(vout.encode(scaled))
                            result.frames += 1
                    elif audio_ok:
                        try:
                            decoded = packet.decode()
                        except (av.error.FFmpegError, ValueError):  # audio cut short or corrupt: keep what we have
                            audio_ok = False
                            continue
                        for frame in decoded:
                            if audio_samples is None and frame.pts is not None:
                                # align the first audio sample with the video start (the stream start_times differ)
                                start = frame.pts * float(ain.time_base) - v_origin * v_tb
                                audio_samples = max(0, int(round(start * aout.codec_context.sample_rate)))
                            audio_samples = audio_samples or 0
                            for chunk in resampler.resample(frame):
                                chunk.pts, audio_samples = audio_samples, audio_samples + chunk.samples
                                dst.mux(aout.encode(chunk))
                            result.audio = True
            except av.error.EOFError:
                pass
            except (av.error.FFmpegError, ValueError) as exc:
                if result.frames == 0:
                    raise DataError(f"stream error before any frame: {exc}") from exc
                result.truncated = True  # keep what was decoded, as the loader does
            dst.mux(vout.encode(None))
            if aout is not None and result.audio:
                for chunk in resampler.resample(None):
                    chunk.pts, audio_samples = audio_samples, audio_samples + chunk.samples
                    dst.mux(aout.encode(chunk))
                dst.mux(aout.encode(None))


def _state(options: PrepareOptions, source_root: str) -> dict:
    return {"version": 1, "source": os.path.abspath(source_root), "options": asdict(options)}


def _check_state(dst: Path, state: dict) -> None:
    path = dst / STATE_NAME
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        if old != state:
            raise ConfigError(f"{dst} holds files prepared with other options or from another source "
                              f"({path}: {old}); choose another DST or delete it")
    elif dst.exists() and any(dst.iterdir()):
        raise ConfigError(f"{dst} exists and is not an earlier `vidssl data prepare` output; choose an empty or new DST")


def _worker(task: tuple[str, str, PrepareOptions]) -> PreparedFile:
    return prepare_file(*task)


def prepare_dataset(
    source,
    dst: str | os.PathLike,
    options: PrepareOptions,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> PrepareReport:
    """Prepare every video of ``source`` (a :class:`~vidssl.data.index.Manifest`) into ``dst``.

    ``progress(n)`` is called as files finish (``n`` files each call). Returns a :class:`PrepareReport`;
    the new manifest is ``dst/vidssl_manifest.json``.

    Raises:
        ConfigError: ``dst`` holds something else (another encoding, another source, other files), or
            lies inside the source root, or two sources map to one output (``a.avi`` and ``a.mp4``).
    """
    from concurrent.futures import ProcessPoolExecutor

    from vidssl.data.datasets import worker_context
    from vidssl.data.decode import probe
    from vidssl.data.index import MANIFEST_NAME, Manifest, VideoRecord

    dst = Path(dst).expanduser().resolve()
    src_root = Path(source.root).resolve()
    if dst == src_root or src_root in dst.parents:
        raise ConfigError(f"DST {dst} lies inside the source dataset {src_root}; choose a folder outside it")
    state = _state(options, str(src_root))
    _check_state(dst, state)
    outputs: dict[str, str] = {}
    for record in source.records:
        rel = os.path.relpath(source.resolve(record), src_root)
        if rel.startswith(".."):
            raise ConfigError(f"{record.path} lies outside the source root {src_root}: prepare cannot mirror it into DST")
        out = output_path(rel)
        if out in outputs:
            raise ConfigError(f"{record.path} and {outputs[out]} would both be written to {dst / out}; rename one")
        outputs[out] = record.path
    dst.mkdir(parents=True, exist_ok=True)
    (dst / STATE_NAME).write_text(json.dumps(state, indent=1))

    results: dict[str, PreparedFile] = {}
    tasks = []
    for record in source.records:
        rel_out = output_path(os.path.relpath(source.resolve(record), src_root))
        target = str(dst / rel_out)
        if record.error is not None:
            results[record.path] = PreparedFile(source.resolve(record), target, error=f"unreadable at index: {record.error}")
        elif os.path.isfile(target):
            results[record.path] = PreparedFile(source.resolve(record), target, reused=True,
                                                bytes_in=_size(source.resolve(record)), bytes_out=_size(target))
        else:
            tasks.append((record.path, (source.resolve(record), target, options)))
    if progress and results:
        progress(len(results))
    if tasks:
        workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
        if workers == 1:
            for key, task in tasks:
                results[key] = _worker(task)
                if progress:
                    progress(1)
        else:
            with ProcessPoolExecutor(workers, mp_context=_mp_context(worker_context(workers))) as pool:
                futures = {pool.submit(_worker, task): key for key, task in tasks}
                from concurrent.futures import as_completed

                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    if progress:
                        progress(1)

    records = []
    for record in source.records:
        done = results[record.path]
        rel_out = os.path.relpath(done.output, dst)
        new = VideoRecord(path=rel_out, label=record.label, label_name=record.label_name, splits=dict(record.splits),
                          annotations=dict(record.annotations))
        if done.error is None:
            try:
                new.info = probe(done.output)
                new.size, new.mtime = _size(done.output), os.path.getmtime(done.output)
                done.frames = new.info.num_frames
            except VidsslError as exc:  # VideoDecodeError: the written file does not read back
                done.error = f"prepared file unreadable: {exc}"
        done.source_frames = record.info.num_frames if record.info is not None else None
        if done.error is not None:
            new.error = f"vidssl data prepare: {done.error}"
        records.append(new)
    manifest = Manifest(root=str(dst), class_names=list(source.class_names), records=records,
                        format=source.format, missing=list(source.missing))
    manifest.save(dst / MANIFEST_NAME)
    return PrepareReport(manifest=str(dst / MANIFEST_NAME), files=[results[r.path] for r in source.records])


def _mp_context(name: str | None):
    import multiprocessing

    return multiprocessing.get_context(name) if name else None


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
