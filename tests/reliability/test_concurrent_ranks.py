"""Issue 16 case 10, the cause of the torchrun restart flake: every rank of a group runs the same
pretrain code before the Trainer exists, so files written there must tolerate concurrent writers and
only rank 0 may move the run's files."""

from __future__ import annotations

import subprocess
import sys

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
