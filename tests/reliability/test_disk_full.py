"""Issue 16 case 6: a full disk while writing a checkpoint, the exported encoder or the feature cache
gives one line ("no space left on device (needed ~N MB at PATH)"), removes the partial file and keeps
the previous one."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import torch

from vidssl.errors import UserError
from vidssl.io import DiskFull, atomic_write
from vidssl.methods.train import load_pretrain_config, pretrain

SMALL = ["method.backbone_kwargs={width: 4}", "method.num_frames=4", "method.canvas=32", "method.crop_size=24",
         "method.proj_hidden_dim=32", "method.proj_dim=16", "method.pred_hidden_dim=32", "data.batch_size=4",
         "data.num_workers=0", "trainer.progress_bar=false", "trainer.checkpoint_every=1"]


def _leftovers(directory):
    return [p.name for p in directory.rglob("*") if "tmp" in p.name]


def test_a_full_disk_keeps_the_previous_file_and_removes_the_partial_one(tmp_path):
    target = tmp_path / "state.bin"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"good"))

    def half_then_full(tmp):
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull) as info:
        atomic_write(target, half_then_full, needed=3 * 2**20, what="a checkpoint")
    message = str(info.value)
    assert message.startswith("no space left on device (needed ~3 MB at ") and str(target) in message
    assert "the previous state.bin is kept" in message and "\n" not in message and isinstance(info.value, UserError)
    assert target.read_bytes() == b"good" and _leftovers(tmp_path) == []
    # torch.save reports the failed write from C++ (inline_container.cc) without an errno
    with pytest.raises(DiskFull, match="no space left on device"):
        atomic_write(target, lambda tmp: (tmp.write_bytes(b"x"), _raise_like_torch()))
    assert target.read_bytes() == b"good" and _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="unrelated"):  # other errors are not dressed up as a full disk
        atomic_write(target, lambda tmp: (_ for _ in ()).throw(ValueError("unrelated")))


def _raise_like_torch():
    raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0; "
                       "PytorchStreamWriter failed writing file data/3: file write failed")


def test_a_failed_checkpoint_keeps_the_last_good_one(demo_root, tmp_path, monkeypatch):
    real_save = torch.save
    calls = []

    def save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:  # the second checkpoint: the disk is full half-way
            open(f, "wb").write(b"half a checkpoint")
            _raise_like_torch()
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    cfg = load_pretrain_config("byol_rho2_r3d18_demo_tiny", SMALL + [f"data.root={demo_root}", "max_steps=3"])
    with pytest.raises(DiskFull, match=r"no space left on device \(needed ~\d+ (MB|kB) at .*last.ckpt\).*previous "
                                       r"last.ckpt is kept"):
        pretrain(cfg, tmp_path / "run", log=lambda _: None)
    monkeypatch.setattr(torch, "save", real_save)
    kept = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert kept["global_step"] == 1 and _leftovers(tmp_path / "run") == []
    assert not (tmp_path / "run" / "encoder.safetensors").exists()


def test_a_real_file_size_limit_on_the_first_checkpoint(demo_root, tmp_path):
    """A real failed write from the OS (``ulimit -f``: EFBIG instead of ENOSPC) through the CLI."""
    if sys.platform == "win32":
        pytest.skip("RLIMIT_FSIZE is POSIX")
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20)); "
              "from vidssl.cli import main; sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", script, "pretrain", "--preset", "byol_rho2_r3d18_demo_tiny", "--out",
                           str(out), f"data.root={demo_root}", "max_steps=2", *SMALL],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    last_line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert last_line.startswith("vidssl: error: file size limit exceeded (needed ~2 MB at ")
    assert "no earlier last.ckpt existed" in last_line and _leftovers(out) == []


def test_the_feature_cache_on_a_full_disk(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from vidssl.eval import features as F

    protocol = F.ViewProtocol("t", num_frames=2, stride=1, canvas=(8, 8), crop_size=6, temporal_clips=1, spatial_crops=1)

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"clips": {"clip": torch.full((1, 2, 8, 8, 3), i, dtype=torch.uint8)}, "label": i % 2, "index": i}

    class Mean(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3, 4))

    def full(path, arrays):
        open(path, "wb").write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("vidssl.eval.cache.savez", full)
    manifest = SimpleNamespace(root="/x", subset=lambda split, fold: SimpleNamespace(records=[]))
    with pytest.raises(DiskFull, match=r"no space left on device \(needed ~\d+ kB at .*part_000_00000.npz\)"):
        F.extract_features(Mean(), F.EncoderInfo("m", "h"), manifest, protocol,
                           cache_dir=tmp_path, progress=False, dataset_factory=lambda *a, **k: Items(),
                           chunk_size=2, batch_size=2)
    assert _leftovers(tmp_path) == [] and not list(tmp_path.rglob("*.npz"))
