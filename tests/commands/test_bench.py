"""``vidssl bench``: step vs plain PyTorch, loader, end to end, data wait (vidssl.bench) on one tiny preset."""

from __future__ import annotations

import json

import pytest
import torch

from vidssl.bench import BenchOptions, presets_for_all, tiny_twin
from vidssl.cli import main
from vidssl.errors import ConfigError

SMALL = ["method.backbone_kwargs={width: 4}", "method.num_frames=4", "method.stride=2", "method.canvas=32",
         "method.crop_size=24", "method.proj_hidden_dim=32", "method.proj_dim=16", "method.pred_hidden_dim=32"]


def test_bench_one_tiny_preset_prints_ratios_and_writes_json(demo_root, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "byol_rho2_r3d18_demo_tiny", "--batch", "4", "--steps", "1", "--warmup", "1",
                 "--loader-batches", "1", "--workers", "0", "--json", str(out), f"data.root={demo_root}", *SMALL]) == 0
    text = capsys.readouterr().out
    for phrase in ("step / plain", "loader / step", "end-to-end / step", "data wait", "GFLOP/sample"):
        assert phrase in text, phrase
    (result,) = json.loads(out.read_text())["results"]
    assert result["preset"] == result["ran"] == "byol_rho2_r3d18_demo_tiny" and result["batch"] == 4
    for key in ("step_samples_per_s", "plain_samples_per_s", "loader_samples_per_s", "end_to_end_samples_per_s",
                "flops_per_sample"):
        assert result[key] > 0, key
    assert result["step_vs_plain"] == pytest.approx(result["plain_samples_per_s"] and
                                                    result["step_samples_per_s"] / result["plain_samples_per_s"])
    assert 0.0 <= result["data_wait_fraction"] < 1.0
    assert result["mfu"] is None and len(result["load_average_before"]) == 3  # CPU: no peak to compare with


def test_tiny_twins_and_all():
    assert tiny_twin("byol_rho2_r3d18_k400") == "byol_rho2_r3d18_demo_tiny"
    assert tiny_twin("brave_va_tsm50_k600") == "brave_va_tiny"
    assert tiny_twin("gdt_basecase_tiny") == "gdt_basecase_tiny"
    cpu, gpu = presets_for_all(gpu=False), presets_for_all(gpu=True)
    assert cpu and gpu and all("tiny" in p for p in cpu) and not any("tiny" in p for p in gpu)


def test_bad_arguments(capsys):
    assert main(["bench"]) == 2
    assert "give one PRESET or --all" in capsys.readouterr().err
    assert main(["bench", "nope_tiny"]) == 2
    assert "unknown preset 'nope_tiny'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--steps must be at least 1"):
        BenchOptions(steps=0)
    with pytest.raises(ConfigError, match="--batch must be at least 2"):
        BenchOptions(batch=1)


def test_the_loader_rate_skips_the_queued_batches_and_times_two_per_worker(monkeypatch):
    """The loader figure is the workers' production rate: the batches they had queued ahead
    (workers x prefetch_factor) are drawn untimed, then at least two batches per worker are timed
    (on the first H200 run, 4 timed batches after 15 workers had queued 30 read 3780 samples/s)."""
    from types import SimpleNamespace

    import vidssl.data.module as module
    from vidssl.bench import _loader_rate

    drawn = []

    class FakeModule:
        def __init__(self, *args, **kwargs):
            pass

        def setup(self, stage):
            pass

        def train_dataloader(self):
            class Loader:
                def __iter__(self):
                    for i in range(5):  # a small dataset: the bench starts another pass
                        drawn.append(i)
                        yield {"video": {"index": torch.arange(2)}}
            return Loader()

    monkeypatch.setattr(module, "StreamDataModule", FakeModule)
    monkeypatch.setattr(module, "loader_workers", lambda requested, *a, **k: requested)
    cfg = SimpleNamespace(trainer=SimpleNamespace(seed=0), data=SimpleNamespace(num_workers=3, prefetch_factor=2))
    method = SimpleNamespace(data_streams=lambda: {"video": None})
    rate = _loader_rate(cfg, method, manifest=None, options=BenchOptions(loader_batches=4))
    assert len(drawn) == 3 * 2 + 2 * 3 and rate > 0


def test_a_full_preset_without_its_data_takes_each_stream_s_format_from_its_tiny_twin(tmp_path):
    """BEVT's image stream reads ImageNet (format=images) in the full preset; without it here the bench
    reads the embedded videos' frames, as the tiny twin does, so the twin's format comes along (the H200
    run stopped on "indexes … as format=ucf101, but format=images was asked")."""
    from vidssl.bench import _bench_config

    cfg = _bench_config("bevt_swinb_k400", BenchOptions(batch=4, data_cache=str(tmp_path)), gpu=True)
    assert cfg.streams["image"].format != "images"
    assert cfg.streams["image"].generate_demo and cfg.data.generate_demo
    assert cfg.streams["image"].batch_size == cfg.data.batch_size == 4


def test_no_plain_skips_the_plain_step_and_says_so(demo_root, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "byol_rho2_r3d18_demo_tiny", "--batch", "4", "--steps", "1", "--warmup", "1",
                 "--loader-batches", "1", "--workers", "0", "--no-end-to-end", "--no-plain", "--json", str(out),
                 f"data.root={demo_root}", *SMALL]) == 0
    text = capsys.readouterr().out
    assert "plain fp32 eager skipped (--no-plain)" in text and "FLOPs and MFU not counted" in text
    (result,) = json.loads(out.read_text())["results"]
    assert result["step_samples_per_s"] > 0 and result["loader_samples_per_s"] > 0
    assert result["plain_samples_per_s"] is None and result["step_vs_plain"] is None and result["mfu"] is None
