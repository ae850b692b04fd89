"""``vidssl bench``: step vs plain PyTorch, loader, end to end, data wait (vidssl.bench) on one tiny preset."""

from __future__ import annotations

import json

import pytest

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
