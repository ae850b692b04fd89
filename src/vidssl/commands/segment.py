"""``vidssl segment MOVIE --checkpoint SCENE_MODEL``: the scene timeline of your own movie; and
``vidssl eval scenes``: BaSSL's scene-segmentation protocol (fine-tuning + AP/mIoU/F1/Recall/Recall@3s),
which writes the scene model ``segment`` uses.

``segment``: shots (PySceneDetect) → three keyframes per shot → shot features → boundary probabilities
→ scenes, written as ``<movie>.scenes.json`` / ``.scenes.csv`` (scene, start/end time and frame, shots),
``<movie>.edl`` (CMX 3600) and ``<movie>.chapters.txt`` (FFmpeg chapters) for an editor or player,
``<movie>.contact.png`` (a row of keyframes per scene) and, with ``--export-clips``, one file per scene
cut without re-encoding. The movie is streamed, never loaded whole.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EPILOG = """examples:
  vidssl eval scenes --checkpoint runs/bassl --data data/movies --preset tiny --out runs/bassl/scenes
  vidssl segment film.mp4 --checkpoint runs/bassl/scenes/scene_model --out film_scenes
  vidssl segment film.mkv --checkpoint runs/bassl/scenes/scene_model --out film_scenes --export-clips
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("segment", help="scene timeline of a movie (shots, scenes, EDL, contact sheet)",
                                   description=__doc__, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("movie", metavar="MOVIE", help="the movie file")
    parser.add_argument("--checkpoint", required=True,
                        help="a scene model directory (written by `vidssl eval scenes` as OUT/scene_model)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--threshold", type=float, default=None, help="boundary probability threshold (default: the model's, 0.5)")
    parser.add_argument("--detector", choices=["adaptive", "content"], default="adaptive", help="shot detector")
    parser.add_argument("--detector-threshold", type=float, default=None, help="shot detector threshold")
    parser.add_argument("--min-shot-frames", type=int, default=15, help="shortest shot in frames (default 15)")
    parser.add_argument("--export-clips", action="store_true", help="also cut one file per scene (stream copy)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def add_scenes_parser(sub) -> None:
    """``vidssl eval scenes`` (registered by ``vidssl.commands.eval``)."""
    scenes = sub.add_parser("scenes", help="BaSSL: scene boundaries on shot features (AP, mIoU, F1, Recall, Recall@3s)",
                            description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = scenes.add_argument_group("encoder (one of)")
    source.add_argument("--checkpoint", help="pretrain run directory (BaSSL or shot_simclr), or a converted checkpoint")
    source.add_argument("--backbone", help="a randomly initialised image backbone instead, e.g. image_resnet_tiny")
    source.add_argument("--backbone-kwargs", default="{}", help="JSON builder arguments of --backbone")
    scenes.add_argument("--canvas", type=int, default=None, help="random --backbone only: frame size (default 256)")
    scenes.add_argument("--crop-size", type=int, default=None, help="random --backbone only: crop (default 224)")
    scenes.add_argument("--data", required=True, help="MovieNet-SSeg tree (the embedded movies, `vidssl data shots`)")
    scenes.add_argument("--out", required=True, help="report directory (report.json, report.md, scene_model/)")
    scenes.add_argument("--preset", default="bassl", help="bassl (the seed's) or tiny (CPU, embedded movies)")
    scenes.add_argument("--device", default="auto")
    scenes.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "vidssl" / "features"),
                        help="shot-feature cache (default ~/.cache/vidssl/features)")
    scenes.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    scenes.add_argument("--quiet", action="store_true")
    scenes.add_argument("overrides", nargs="*", metavar="key=value",
                        help="e.g. epochs=10 lr=1e-4 seed=1; repeats=5 fine-tunes with 5 seeds and reports mean ± std")
    scenes.set_defaults(func=run_scenes)


def run_scenes(args) -> int:
    import dataclasses

    from vidssl.commands.eval import parse_backbone_kwargs
    from vidssl.errors import UserError
    from vidssl.eval.scenes import IMAGE_CONTRACT, run_scene_protocol, scene_config

    if bool(args.checkpoint) == bool(args.backbone):
        raise UserError("give exactly one of --checkpoint PATH or --backbone NAME")
    contract = None
    if args.canvas or args.crop_size:
        if args.checkpoint:
            raise UserError("--canvas/--crop-size apply to a random --backbone; a checkpoint is fed as its contract says")
        canvas = args.canvas or IMAGE_CONTRACT.canvas
        crop = args.crop_size or min(canvas, IMAGE_CONTRACT.crop_size)
        if not 1 <= crop <= canvas:
            raise UserError(f"--crop-size {crop} must be between 1 and --canvas {canvas}")
        contract = dataclasses.replace(IMAGE_CONTRACT, canvas=canvas, crop_size=crop)
    cfg = scene_config(args.preset, args.overrides)
    run_scene_protocol(args.data, args.out, cfg, checkpoint=args.checkpoint, backbone=args.backbone,
                       backbone_kwargs=parse_backbone_kwargs(args.backbone_kwargs), device=args.device,
                       cache_dir=None if args.no_cache else args.cache_dir, progress=not args.quiet, contract=contract)
    return 0


def run(args) -> int:
    from vidssl.data.shots import ShotDetectionConfig
    from vidssl.errors import UserError
    from vidssl.eval.timeline import segment_movie

    if not Path(args.movie).is_file():
        raise UserError(f"movie {args.movie} does not exist")
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise UserError(f"--threshold is a probability in (0, 1), got {args.threshold}")
    detection = ShotDetectionConfig(args.detector, args.detector_threshold, args.min_shot_frames)
    summary = segment_movie(args.movie, args.checkpoint, args.out, detection, args.threshold, args.device,
                            args.export_clips, progress=not args.quiet)
    print(json.dumps(summary, indent=1))
    return 0
