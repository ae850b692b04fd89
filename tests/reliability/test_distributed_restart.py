"""Issue 16 case 10: a process dying under ``torchrun --max-restarts`` restarts the group, which resumes
from the last checkpoint (``--auto-resume``) to the same parameters as a run nobody killed (gloo on CPU)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

# Not in the default run: on the shared 2-core machine it failed in 3 of 6 runs (once the gloo
# rendezvous timed out; once rank 1 of the restarted group exited with an error while rank 0 waited at
# a barrier). Run it with `pytest -m torchrun_restart`; the flakiness is an open bug (docs/reliability.md).
pytestmark = [pytest.mark.ddp, pytest.mark.slow, pytest.mark.torchrun_restart]

# The CLI with one fault injected: rank 1 of the first attempt dies (os._exit, like a SIGKILL) at step KILL.
SCRIPT = """
import os, sys
KILL = int(os.environ["VIDSSL_TEST_KILL_AT"])
from vidssl.methods.byol import BYOL
original = BYOL.compute_loss
def dying(self, views, batch):
    if self.global_step == KILL and os.environ.get("RANK") == "1" and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
        os._exit(3)
    return original(self, views, batch)
if KILL >= 0:
    BYOL.compute_loss = dying
from vidssl.cli import main
sys.exit(main(sys.argv[1:]))
"""

ARGS = ["method.backbone_kwargs={width: 4}", "method.num_frames=4", "method.canvas=32", "method.crop_size=24",
        "method.proj_hidden_dim=32", "method.proj_dim=16", "method.pred_hidden_dim=32", "data.batch_size=4",
        "data.num_workers=0", "trainer.checkpoint_every=1", "trainer.log_every=1", "trainer.progress_bar=false",
        "trainer.accelerator=cpu", "trainer.devices=2", "max_steps=4",
        # plain "ddp" stops at step 1 with "parameters that were not used in producing the loss" (BYOL, gloo)
        "trainer.strategy=ddp_find_unused_parameters_true"]


def _torchrun(script, out, demo_root, kill_at):
    env = {**os.environ, "VIDSSL_TEST_KILL_AT": str(kill_at), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--max-restarts", "1", "--monitor-interval", "1", str(script), "pretrain", "--preset",
               "byol_rho2_r3d18_demo_tiny", "--out", str(out), "--auto-resume", f"data.root={demo_root}", *ARGS]
    for attempt in range(3):
        result = subprocess.run(command, capture_output=True, text=True, timeout=400, env=env)
        # On a loaded machine gloo's rendezvous sometimes times out before any training ("Connection
        # refused" while the process group forms): an infrastructure flake, not the behaviour under test.
        # Start that run again from scratch; any other failure is reported as it is.
        if result.returncode == 0 or "Gloo connectFullMesh failed" not in result.stderr:
            return result
        shutil.rmtree(out, ignore_errors=True)
    return result


def test_a_dead_process_restarts_and_resumes_to_the_same_parameters(demo_root, tmp_path):
    script = tmp_path / "vidssl_with_fault.py"
    script.write_text(SCRIPT)
    whole = _torchrun(script, tmp_path / "whole", demo_root, kill_at=-1)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = _torchrun(script, tmp_path / "killed", demo_root, kill_at=2)
    assert killed.returncode == 0, killed.stderr[-3000:]
    assert "resuming" in killed.stdout  # the restarted group continued the run instead of starting over
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    b = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert a["global_step"] == b["global_step"] == 4
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-5), key
