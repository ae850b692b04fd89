"""The embedded dataset: real MP4 videos rendered from scikit-learn's bundled 8×8 digits.

Nothing can be downloaded, yet a new user must be able to pretrain and evaluate at
once, so vidssl renders its own videos (DESIGN.md, "The embedded dataset"):

* **Classes need time.** Every class is a *motion* (move left/right/up/down,
  rotate clockwise/counter-clockwise, zoom in/out, bounce off the side walls,
  bounce on the floor). Start positions, angles and zoom phases are random, so a
  single frame does not tell the class: only motion does. Digits are large (0.42–0.77 of
  the frame) and motions fast (half to three frame widths per second, 240–480°/s), so the
  motion survives the demo's 8 frames at stride 3 and 32² crops. Format 1 had smaller,
  half-as-fast digits on full-contrast backgrounds: a supervised tiny R3D-18 reached only
  28 % test top-1 after 300 steps there, against 74 % after 250 steps on format 2
  (docs/demo-findings.md).
* **Appearance varies and says nothing about the class.** Which digit (and which
  handwritten instance), its colour, size and tilt are random per clip; the
  background (colour, low-frequency texture, faint static "clutter" digits)
  belongs to a *group* and is shared by every class in that group, like UCF101's
  groups (clips of the same setting). Splits are group-disjoint, so test
  backgrounds are never seen in training.
* **Audio follows the picture.** A tone whose pitch is set by the digit, whose
  loudness follows how fast the digit moves, and a click at every wall/floor hit
  (and every zoom reset). Audio-visual methods can learn correspondence and sync.

Written in the UCF101 layout (``ROOT/<Class>/v_<Class>_gXX_cYY.mp4`` +
``ROOT/ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt``), H.264 (or
MPEG-4 Part 2 when PyAV's FFmpeg lacks libx264) in yuv420p at 25 fps with one
keyframe per second, plus an AAC mono track.

The "movie" variant (:func:`generate_movie_demo`) strings shots into scenes: one
long MP4 per movie, MovieNet-SSeg-style keyframes and BaSSL's ndjson annotations.

The "shapes" dataset (:func:`generate_shapes_demo`, :mod:`~vidssl.data.demo.shapes`) is a second
labelled action dataset that shares nothing with the digits but the layout: other objects, other
motions, 96² at 30 fps, other backgrounds and audio. It checks that a recipe works beyond the
dataset it was tuned on.

Both generators are deterministic under ``seed``: the rendered frames and waveforms
are bit-identical and the AAC packets too. x264 runs single-threaded, yet with
PyAV's FFmpeg its output is not always byte-identical from run to run (now and then
the first encode in a process differs slightly), so the decoded pictures agree up to
small codec differences. They skip all work when the output is already complete for
the same size and seed.

Modules: :mod:`~vidssl.data.demo.render` (motions, digits, backgrounds, frames, audio,
MP4 writing), :mod:`~vidssl.data.demo.dataset` (the action-recognition dataset in the
UCF101 layout, plus the marker and worker helpers both generators share) and
:mod:`~vidssl.data.demo.movies` (the movie variant).
"""

from __future__ import annotations

from vidssl.data.demo.dataset import (
    DEMO_SIZES,
    FORMAT_VERSION,
    MARKER_NAME,
    DemoClip,
    DemoSize,
    _check_size,
    _encode_clip,
    _group_background,
    _limit_threads,
    _load_marker,
    _prepare_root,
    _run_tasks,
    _write_marker,
    _write_readme,
    _write_split_files,
    generate_demo,
    held_out_groups,
    render_clip,
)
from vidssl.data.demo.movies import (
    MOVIE_SIZES,
    MOVIE_SPLITS,
    MovieSize,
    _encode_movie,
    _MovieJob,
    _render_movie,
    _shot_records,
    _write_movie_annotations,
    _write_movie_readme,
    generate_movie_demo,
    movie_id_of,
    plan_movie,
)
from vidssl.data.demo.shapes import (
    SHAPE_CLASS_NAMES,
    SHAPE_MOTIONS,
    SHAPES_FPS,
    SHAPES_SIZES,
    ShapesClip,
    generate_shapes_demo,
    render_shapes_clip,
)
from vidssl.data.demo.render import (
    BACKGROUND_CONTRAST,
    CLASS_DESCRIPTIONS,
    CLASS_NAMES,
    FPS,
    KEYFRAME_INTERVAL,
    MOTIONS,
    Background,
    Trajectory,
    _bounce_floor,
    _bounce_sides,
    _contrasting_colour,
    _digits,
    _draw_sprite,
    _luminance,
    _make_background,
    _motion_energy,
    _move,
    _random_colour,
    _random_digit,
    _rotate,
    _uniform,
    _zoom,
    digit_pitch,
    render_audio,
    render_frames,
    video_codec,
    write_mp4,
)

#: ``--dataset`` of ``vidssl data demo`` and ``vidssl demo`` -> ``data.demo_variant``.
ACTION_DATASETS = {"digits": "clips", "shapes": "shapes"}

#: ``data.demo_variant`` -> the generator that writes it (``generator(root, size=..., seed=..., workers=...)``).
EMBEDDED_GENERATORS = {"clips": generate_demo, "shapes": generate_shapes_demo, "movies": generate_movie_demo}


def generate_embedded(variant: str, out, size: str = "default", seed: int = 0, workers: int | None = None):
    """Write the embedded dataset ``variant`` (``clips``: digits, ``shapes`` or ``movies``) and return its root."""
    if variant not in EMBEDDED_GENERATORS:
        from vidssl.errors import DataError

        raise DataError(f"unknown embedded dataset {variant!r}; choose one of {', '.join(EMBEDDED_GENERATORS)}")
    return EMBEDDED_GENERATORS[variant](out, size=size, seed=seed, workers=workers)


__all__ = [
    "ACTION_DATASETS",
    "EMBEDDED_GENERATORS",
    "generate_embedded",
    "generate_shapes_demo",
    "SHAPE_CLASS_NAMES",
    "SHAPES_SIZES",
    "CLASS_NAMES",
    "DEMO_SIZES",
    "MOVIE_SIZES",
    "DemoSize",
    "MovieSize",
    "generate_demo",
    "generate_movie_demo",
    "DemoClip",
    "render_clip",
    "held_out_groups",
    "digit_pitch",
    "video_codec",
]
