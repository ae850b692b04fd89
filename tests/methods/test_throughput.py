"""Data-wait fraction and samples/s logged every step (vidssl.methods.throughput)."""

from __future__ import annotations

import csv

import pytest
import torch

from vidssl.methods.throughput import ThroughputLogger, samples_in_batch


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeModule:
    def __init__(self):
        self.logged: list[dict[str, float]] = []

    def log(self, name, value, **kwargs):
        assert kwargs["on_step"] and not kwargs["on_epoch"]
        if not self.logged or name in self.logged[-1]:
            self.logged.append({})
        self.logged[-1][name] = value


class FakeTrainer:
    log_every_n_steps = 2


def batch_of(n: int) -> dict:
    return {"video": {"clips": {"clip_1": torch.zeros(n, 2, 4, 4, 3, dtype=torch.uint8)}, "index": torch.arange(n)}}


def run_steps(callback, clock, steps):
    """Drive the hooks as Lightning does: (wait s, compute s, samples) per step."""
    module, trainer = FakeModule(), FakeTrainer()
    callback.on_train_epoch_start(trainer, module)
    for i, (wait, compute, n) in enumerate(steps):
        clock.now += wait
        callback.on_train_batch_start(trainer, module, batch_of(n), i)
        clock.now += compute
        callback.on_train_batch_end(trainer, module, None, batch_of(n), i)
    return module.logged


def test_wait_fraction_and_rate_over_the_log_window():
    clock = FakeClock()
    callback = ThroughputLogger(clock=clock)  # window = trainer.log_every_n_steps = 2
    logged = run_steps(callback, clock, [(3.0, 1.0, 8), (1.0, 1.0, 8), (0.0, 2.0, 8)])
    assert len(logged) == 3  # every step
    assert logged[0]["throughput/data_wait_fraction"] == pytest.approx(0.75)
    assert logged[0]["throughput/samples_per_s"] == pytest.approx(2.0)
    # steps 0-1: 4 s waiting of 6 s, 16 samples in 6 s
    assert logged[1]["throughput/data_wait_fraction"] == pytest.approx(4 / 6)
    assert logged[1]["throughput/samples_per_s"] == pytest.approx(16 / 6)
    assert logged[1]["throughput/data_wait_ms"] == pytest.approx(2000.0)
    assert logged[1]["throughput/step_ms"] == pytest.approx(3000.0)
    # steps 1-2 (the window slides): 1 s waiting of 4 s
    assert logged[2]["throughput/data_wait_fraction"] == pytest.approx(0.25)
    assert logged[2]["throughput/samples_per_s"] == pytest.approx(16 / 4)
    # the summary leaves out the first step (worker start-up): steps 1-2
    summary = callback.summary()
    assert summary["data_wait_fraction"] == pytest.approx(0.25) and summary["samples_per_s"] == pytest.approx(4.0)


def test_explicit_window_and_no_summary_from_one_step():
    clock = FakeClock()
    callback = ThroughputLogger(window=1, clock=clock)
    logged = run_steps(callback, clock, [(1.0, 1.0, 4)])
    assert logged[0]["throughput/data_wait_fraction"] == pytest.approx(0.5)
    assert callback.summary() == {}
    with pytest.raises(ValueError, match="window must be >= 1"):
        ThroughputLogger(window=0)


def test_samples_count_repeats_and_rejects_unknown_batches():
    assert samples_in_batch(batch_of(6)) == 6
    no_index = {"video": {"clips": {"clip_1": torch.zeros(5, 1)}}}
    assert samples_in_batch(no_index) == 5
    with pytest.raises(ValueError, match="cannot count the samples"):
        samples_in_batch({"video": {"label": 3}})


def test_every_pretrain_step_logs_the_data_wait(demo_root, tmp_path):
    from vidssl.methods.train import load_pretrain_config, pretrain

    overrides = ["method.backbone_kwargs={width: 4}", "method.num_frames=4", "method.stride=2", "method.canvas=32",
                 "method.crop_size=24", "method.proj_hidden_dim=32", "method.proj_dim=16", "method.pred_hidden_dim=32",
                 "data.batch_size=4", "data.num_workers=0", "trainer.log_every=1", "trainer.progress_bar=false",
                 f"data.root={demo_root}", "max_steps=3"]
    lines: list[str] = []
    out = pretrain(load_pretrain_config("byol_rho2_r3d18_demo_tiny", overrides), tmp_path / "run", log=lines.append)
    with open(out / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("throughput/data_wait_fraction")]
    assert [int(r["step"]) for r in rows] == [0, 1, 2]
    for row in rows:
        assert 0.0 <= float(row["throughput/data_wait_fraction"]) < 1.0
        assert float(row["throughput/samples_per_s"]) > 0 and float(row["throughput/step_ms"]) > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard")).Reload()
    assert {"throughput/data_wait_fraction", "throughput/samples_per_s"} <= set(events.Tags()["scalars"])
    assert any(line.startswith("data wait ") and "samples/s" in line for line in lines)
