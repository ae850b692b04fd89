"""``vidssl <command>``: a thin layer over the library.

Each command lives in ``vidssl.commands.<name>`` and exposes ``register(subparsers)``;
heavy imports (torch, av) happen inside the command's ``run`` so ``--help`` is fast.
Errors the user caused (:class:`~vidssl.errors.UserError`) print one line and exit 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from vidssl import __version__
from vidssl.errors import Interrupted, UserError

# Plain list of command modules, in the order ``vidssl --help`` shows them.
COMMAND_MODULES = [
    "vidssl.commands.demo",
    "vidssl.commands.data",
    "vidssl.commands.pretrain",
    "vidssl.commands.extract",
    "vidssl.commands.eval",
    "vidssl.commands.segment",
    "vidssl.commands.report",
    "vidssl.commands.bench",
    "vidssl.commands.tokenizer",
]

EPILOG = """examples:
  vidssl demo                                   # generate data, pretrain, evaluate vs random init
  vidssl data demo --out data/demo              # write the embedded dataset
  vidssl pretrain --preset fgkvmem_kvmem_r3d18_demo_tiny --out runs/x
  vidssl eval linear --checkpoint runs/x --data data/demo --out runs/x/linear
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidssl",
        description="Self-supervised video representation learning: pretrain a video encoder, then measure it.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"vidssl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command still being written must not break the others
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args`` that also accepts ``key=value`` overrides mixed with options in any order
    (``pretrain --preset P max_steps=2 --out X data.root=D``) and ``--debug`` after the subcommand."""
    args, extras = parser.parse_known_args(argv)
    rest = []
    for token in extras:
        if token == "--debug":
            args.debug = True
        elif _OVERRIDE.match(token) and isinstance(getattr(args, "overrides", None), list):
            args.overrides.append(token)
        else:
            rest.append(token)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if not argv or argv == ["--debug"] else 2
    try:
        result = args.func(args)
    except UserError as exc:
        if debug:
            raise
        print(f"vidssl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        hint = str(exc) if isinstance(exc, Interrupted) else ""
        print(f"vidssl: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
