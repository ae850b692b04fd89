"""Issue 16 case 10, the cause of the torchrun restart flake: every rank of a group runs the same
pretrain code before the Trainer exists, so files written there must tolerate concurrent writers and
only rank 0 may move the run's files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vidssl.methods import train

WRITER = """
import sys
from vidssl.config import save_yaml
from vidssl.eval.report import write_json
from vidssl.methods.train import write_json_atomic
from pathlib import Path
out = Path(sys.argv[1])
for i in range(100):
    save_yaml({"step": i, "rank": sys.argv[2]}, out / "config.yaml")
    write_json({"i": i}, out / "report.json")
    write_json_atomic({"i": i}, out / "skipped.json")
"""


def test_two_processes_writing_the_same_files_at_once_both_succeed(tmp_path):
    # Both used to write FILE.tmp and rename it: the slower one's rename found no FILE.tmp.
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), str(rank)], stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind
    assert "rank:" in (tmp_path / "config.yaml").read_text()


def test_only_rank_zero_moves_metrics_csv_aside_on_resume(tmp_path, monkeypatch):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    (tmp_path / "metrics.csv").write_text("step,train/loss\n0,1.0\n5,0.5\n")
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    train._csv_logger(tmp_path, resume_step=3, flush_every=10)
    assert (tmp_path / "metrics.csv").is_file() and not (tmp_path / "metrics.csv.before-resume").exists()
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    train._csv_logger(tmp_path, resume_step=3, flush_every=10)
    assert (tmp_path / "metrics.csv.before-resume").is_file()


HOLDER = """
import sys, time
from pathlib import Path
from vidssl.io import run_dir_lock
with run_dir_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_into_the_same_directory_is_refused_and_a_dead_holder_leaves_no_lock(tmp_path):
    # Seen: a leftover driver script started a second pretrain into a running run's directory; both
    # trained and interleaved their checkpoints. The directory is now locked for the run.
    from vidssl.errors import UserError
    from vidssl.methods.train import load_pretrain_config, pretrain

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = load_pretrain_config("byol_rho2_r3d18_demo_tiny", [f"data.root={tmp_path / 'no_data'}"])
        with pytest.raises(UserError, match=rf"in use by another running vidssl process \(pid {holder.pid}\)"):
            pretrain(cfg, out)
        assert not (out / "config.yaml").exists()  # refused before anything was written
    finally:
        holder.kill()  # like kill -9: the kernel drops the lock with the process
        holder.wait()
    from vidssl.io import run_dir_lock

    with run_dir_lock(out):
        pass
