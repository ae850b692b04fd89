"""vidssl.cli: the command list, help examples and the one-line error contract."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vidssl.cli import build_parser, main

COMMANDS = ["demo", "data", "pretrain", "extract", "eval", "report"]


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"    {name}" in out


def _subparsers(parser):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            yield from action.choices.items()


def _all_commands(parser, prefix=()):
    for name, sub in _subparsers(parser):
        yield prefix + (name,), sub
        yield from _all_commands(sub, prefix + (name,))


def test_every_command_help_has_an_example():
    commands = list(_all_commands(build_parser()))
    assert len(commands) >= len(COMMANDS)
    for path, parser in commands:
        text = parser.format_help()
        assert "vidssl " + path[0] in text.split("usage:", 1)[1], path
        assert "example" in text.lower(), f"`vidssl {' '.join(path)} --help` has no example"


def test_user_error_prints_one_line_and_exits_2(tmp_path, capsys):
    code = main(["data", "index", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("vidssl: error:") and "\n" not in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vidssl", "--debug", "data", "index", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


@pytest.mark.parametrize("argv", [["pretrain", "--preset", "nope_tiny", "--out", "x"], ["pretrain", "--preset",
                                   "fgkvmem_kvmem_r3d18_demo_tiny", "--out", "x", "optim.lrr=1"]])
def test_config_mistakes_exit_2(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "did you mean" in capsys.readouterr().err
