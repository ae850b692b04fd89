"""``vidssl pretrain``: self-supervised pretraining of a video encoder from a preset."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  vidssl pretrain --list-presets
  vidssl pretrain --preset fgkvmem_kvmem_r3d18_demo_tiny --out runs/fgkv_tiny
  vidssl pretrain --preset fgkvmem_full_r3d18_ucf101 --out runs/fgkv data.root=/data/UCF101 trainer.devices=8
  vidssl pretrain --preset byol_rho2_r3d18_demo_tiny --out runs/byol max_steps=50 optim.lr=0.5
  vidssl pretrain --out runs/fgkv_tiny --resume                  # reads runs/fgkv_tiny/config.yaml
  vidssl pretrain --out runs/fgkv_tiny --resume max_steps=2000   # overrides on top (not data/model keys)
  TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --nproc-per-node 8 --max-restarts 3 -m vidssl.cli pretrain --preset P --out runs/x --auto-resume trainer.devices=8

writes DIR/config.yaml, DIR/checkpoints/{last,best}.ckpt, DIR/metrics.csv (probe/acc = online
linear probe top-1 when the data has labels), DIR/tensorboard/ and DIR/encoder.safetensors.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain a video encoder with a self-supervised method",
        description="Pretrain a video encoder from a preset (method + data + optimiser + trainer), "
        "with key=value overrides of any config key.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", help="preset name (see --list-presets) or a YAML file")
    parser.add_argument("--out", help="run directory to write")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from checkpoints/last.ckpt with the run's own config.yaml "
                             "(--preset not needed; key=value overrides apply on top, except data/model keys)")
    parser.add_argument("--auto-resume", action="store_true",
                        help="resume when --out holds a checkpoint, else start from --preset: for restarts by "
                             "torchrun --max-restarts or a requeued SLURM job (the same command line every time)")
    parser.add_argument("--list-presets", action="store_true", help="print the preset names, one per line, and exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=0.5 max_steps=100")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vidssl.config import preset_names

    if args.list_presets:
        for name in preset_names():
            print(name)
        return 0
    from vidssl.distributed import check_elastic_restarts, release_process_group

    check_elastic_restarts()  # before anything is written: a restarted group must be able to form
    try:
        return _run(args)
    finally:
        release_process_group()


def _run(args: argparse.Namespace) -> int:
    """The run itself (a new one, or a resume)."""
    from vidssl.errors import ConfigError

    if args.resume or (args.auto_resume and args.out and (Path(args.out) / "checkpoints" / "last.ckpt").is_file()):
        return _resume(args)
    if not args.preset:
        raise ConfigError("--preset is required (see `vidssl pretrain --list-presets`)")
    from vidssl.methods.train import load_pretrain_config

    cfg = load_pretrain_config(args.preset, args.overrides)
    if args.print_config:
        import yaml

        from vidssl.config import to_dict

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    if not args.out:
        raise ConfigError("--out DIR is required (the run directory to write)")
    from vidssl.methods.train import pretrain

    pretrain(cfg, args.out, resume=args.resume)
    return 0


def _resume(args: argparse.Namespace) -> int:
    """``--resume``: the run's saved config + the overrides given now (listed; data/model keys refused)."""
    from vidssl.errors import ConfigError
    from vidssl.methods.resume import resume_config
    from vidssl.methods.train import load_pretrain_config, pretrain

    if not args.out:
        raise ConfigError("--resume needs --out DIR (the run directory to continue)")
    preset_method = load_pretrain_config(args.preset).method.name if args.preset else None
    cfg, changes = resume_config(args.out, args.overrides, preset_method)
    if args.print_config:
        import yaml

        from vidssl.config import to_dict

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    print(f"resuming {args.out} with its config.yaml" + (" (the preset is not re-read)" if args.preset else ""))
    for key, (old, new) in changes.items():
        print(f"  override {key}: {old!r} -> {new!r}")
    pretrain(cfg, args.out, resume=True)
    return 0
