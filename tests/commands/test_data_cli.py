"""``vidssl data demo|index|check`` through the real CLI entry point."""

from __future__ import annotations

import json
import shutil

import pytest

from vidssl.cli import main
from vidssl.data.index import MANIFEST_NAME


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def demo_copy(demo_root, tmp_path):
    """A writable copy of the tiny demo dataset with one corrupt and one silent video added to the lists."""
    root = tmp_path / "demo"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns(MANIFEST_NAME))
    lists = root / "ucfTrainTestlist"
    first_class = (lists / "classInd.txt").read_text().split()[1]
    (root / first_class / "v_broken.mp4").write_text("not a video at all")
    with open(lists / "testlist01.txt", "a") as f:
        f.write(f"{first_class}/v_broken.mp4\n")
    return root


@pytest.mark.parametrize("sub", ["demo", "index", "check"])
def test_help_has_examples(capsys, sub):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", sub, "--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_data_without_subcommand_prints_help(capsys):
    code, out, _ = run_cli(capsys, "data")
    assert code == 2 and "demo" in out and "check" in out


def test_index_then_check(capsys, demo_copy):
    code, out, _ = run_cli(capsys, "data", "index", str(demo_copy))
    assert code == 0 and "ucf101" in out and (demo_copy / MANIFEST_NAME).is_file()
    assert "1 unreadable" in out
    report = demo_copy.parent / "report.json"
    code, out, _ = run_cli(capsys, "data", "check", str(demo_copy), "--clips", "3", "--json", str(report))
    assert code == 0  # bad files do not fail the check
    broken = str(demo_copy / next(p.parent.name for p in demo_copy.rglob("v_broken.mp4")) / "v_broken.mp4")
    assert f"  {broken}: " in out
    for line in ("videos ", "no audio", "resolution  64x64", "fps         25", "keyframes", "decode      3 clips"):
        assert line in out
    data = json.loads(report.read_text())
    assert list(data["unreadable"]) == [broken] and len(data["decode_s_per_clip"]) == 3


def test_index_out_path_and_check_of_a_manifest_file(capsys, demo_copy, tmp_path):
    out_file = tmp_path / "m.json"
    code, out, _ = run_cli(capsys, "data", "index", str(demo_copy), "--out", str(out_file), "--format", "ucf101")
    assert code == 0 and out_file.is_file() and str(out_file) in out
    code, out, _ = run_cli(capsys, "data", "check", str(out_file), "--clips", "1")
    assert code == 0 and "decode      1 clips" in out


@pytest.mark.parametrize("case", ["missing_root", "empty_folder", "bad_split_file", "wrong_format"])
def test_user_errors_print_one_line_and_exit_2(capsys, tmp_path, demo_copy, case):
    if case == "missing_root":
        argv, expect = ["data", "index", str(tmp_path / "nope")], "does not exist"
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        argv, expect = ["data", "check", str(tmp_path / "empty")], "no recognisable dataset layout"
    elif case == "bad_split_file":
        with open(demo_copy / "ucfTrainTestlist" / "trainlist02.txt", "a") as f:
            f.write("garbage line with spaces\n")
        argv, expect = ["data", "index", str(demo_copy)], "trainlist02.txt line"
    else:
        argv, expect = ["data", "index", str(demo_copy), "--format", "hmdb51"], "_test_splitN.txt"
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and expect in err
    assert err.count("\n") == 1 and err.startswith("vidssl: error: ")


def test_demo_command_writes_the_dataset(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "data", "demo", "--out", str(tmp_path / "d"), "--size", "tiny", "--seed", "1")
    assert code == 0 and "next: vidssl data index" in out
    assert (tmp_path / "d" / "ucfTrainTestlist" / "classInd.txt").is_file()
    code, _, err = run_cli(capsys, "data", "demo", "--out", str(tmp_path / "e"), "--size", "huge")
    assert code == 2 and "unknown demo size" in err


def test_demo_command_movie_variant(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "data", "demo", "--out", str(tmp_path / "m"), "--size", "tiny", "--movie")
    assert code == 0 and "movie demo dataset" in out
    assert any((tmp_path / "m" / "videos").glob("*.mp4"))
