"""StreamDataModule's loader settings: worker count (-1 = the process's share of the cores), prefetch,
and the warning when the node's processes ask for far more decode workers than it has cores."""

from __future__ import annotations

import pytest

from vidssl.data import module
from vidssl.data.module import StreamDataModule, loader_workers
from vidssl.errors import ConfigError
from vidssl.methods.byol import BYOL
from vidssl.methods.train import load_pretrain_config


def test_auto_workers_are_the_process_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(module, "available_cores", lambda: 16)
    assert loader_workers(-1) == 16
    assert loader_workers(-1, local_processes=8) == 2
    assert loader_workers(-1, local_processes=32) == 1  # never zero: decoding in the training loop stalls it
    assert loader_workers(3, local_processes=8) == 3  # an explicit value is kept


def test_oversubscription_is_reported_not_silently_changed(monkeypatch):
    monkeypatch.setattr(module, "available_cores", lambda: 4)
    said: list[str] = []
    assert loader_workers(8, local_processes=2, log=said.append) == 8
    assert len(said) == 1 and "16 decode workers on 4 cores" in said[0] and "data.num_workers=-1 uses 2" in said[0]
    said.clear()
    loader_workers(4, local_processes=2, log=said.append)  # 8 workers on 4 cores: within 2x, no message
    assert said == []


def test_loader_uses_the_configured_workers_and_prefetch(demo_root, monkeypatch):
    monkeypatch.setattr(module, "available_cores", lambda: 3)
    cfg = load_pretrain_config("byol_rho2_r3d18_demo_tiny", [f"data.root={demo_root}", "data.num_workers=-1",
                                                              "data.prefetch_factor=5", "data.batch_size=4"])
    method = BYOL(cfg, num_classes=10)
    data = StreamDataModule(method.data_streams(), seed=0)
    data.setup("fit")
    loader = data.loader("video")
    assert loader.num_workers == 3 and loader.prefetch_factor == 5 and loader.persistent_workers


@pytest.mark.parametrize("override, message", [("data.num_workers=-2", "num_workers must be >= 0 or -1"),
                                               ("data.prefetch_factor=0", "prefetch_factor")])
def test_bad_loader_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_pretrain_config("byol_rho2_r3d18_demo_tiny", [override])
