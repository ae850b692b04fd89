"""``vidssl bench``: where a preset's training time goes, against plain PyTorch, in one process.

For one preset, :func:`bench_preset` measures (samples = items of the primary stream after repeated
augmentation is flattened, as :func:`vidssl.methods.throughput.samples_in_batch` counts them):

* **step**: vidssl's training step on a batch already in device memory (synthetic, shaped like the
  loader's: :func:`vidssl.data.synthetic.synthetic_batch`), run by the real engine (Lightning
  ``Trainer`` with the run's precision — bf16 on GPU —, channels-last-3d and ``torch.compile`` as the
  preset sets them, the online probe, logging and EMA updates);
* **plain**: the same model and loss in plain fp32 eager PyTorch: the same method object's
  ``augment`` → ``compute_loss`` → ``backward`` → the same optimiser → EMA update, in a bare loop (no
  Lightning, no autocast, no channels-last, no compile, no probe, no logging);
* **loader**: the preset's DataLoaders alone (every stream, the run's workers), samples/s, timed after the
  batches the workers had queued ahead (``workers × prefetch_factor``), over at least two batches per worker;
* **end-to-end**: a real ``vidssl pretrain`` of a few steps (temporary run directory), samples/s
  and the fraction of step time spent waiting for data (:class:`~vidssl.methods.throughput.ThroughputLogger`);
* on a GPU also: peak memory per sample of the step, FLOPs per sample (counted with
  ``torch.utils.flop_counter`` on the plain step) and MFU against the card's dense bf16 peak, and the
  largest batch of the step that fits (doubling the batch until out of memory).
  ``--no-plain`` skips the plain step and the FLOP count (about half of a preset's time on a GPU).

Step times are medians over the timed steps (robust to load spikes from other jobs). Ratios reported: ``step / plain`` (what the engine's defaults buy; ≈ 1 or below on CPU, where both
are fp32 eager and vidssl does more bookkeeping), ``end-to-end / step`` (how much of the in-memory
speed survives the data path), ``loader / step`` (can the loader keep up) and the data-wait fraction.

On CPU every preset is benchmarked through its *tiny twin* (the ``*_tiny`` preset of the same method
with the nearest name), on the tiny embedded dataset generated once under ``data_cache``.
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from vidssl.errors import ConfigError

__all__ = ["BenchOptions", "bench_preset", "format_result", "tiny_twin", "presets_for_all", "DENSE_BF16_PEAK",
           "HostSyncRecorder", "find_host_syncs", "host_sync_report", "format_host_syncs"]

#: Dense bf16 tensor-core peak FLOP/s by GPU name fragment (vendor data sheets; SXM parts).
DENSE_BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


@dataclass
class BenchOptions:
    """What :func:`bench_preset` runs.

    ``batch`` None: the preset's batch on GPU, 8 on CPU. ``workers`` None: the preset's. ``data_cache``:
    where demo datasets are generated when a preset's data root does not exist. ``overrides``: preset
    ``key=value`` overrides applied before anything else. ``plain`` False skips the plain fp32 step and the
    FLOP count (no step / plain ratio, no MFU): on a GPU they take about half of a preset's time, and a run
    that only wants the compiled step, the loader or the end-to-end figures can reuse an earlier run's.
    """

    steps: int = 3
    warmup: int = 1
    batch: int | None = None
    workers: int | None = None
    loader_batches: int = 4
    end_to_end: bool = True
    largest_batch: bool = True
    plain: bool = True
    data_cache: str = field(default_factory=lambda: os.path.join(tempfile.gettempdir(), "vidssl-bench-data"))
    overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("steps", "loader_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}")
        if self.batch is not None and self.batch < 2:
            raise ConfigError(f"--batch must be at least 2 (BatchNorm and batch-wise losses), got {self.batch}")


def tiny_twin(preset: str) -> str:
    """The ``*_tiny`` preset of the same method with the longest common name prefix (itself if tiny)."""
    from vidssl.config import preset_names
    from vidssl.methods.train import load_pretrain_config

    if "tiny" in preset:
        return preset
    method = load_pretrain_config(preset).method.name
    candidates = [p for p in preset_names() if "tiny" in p and load_pretrain_config(p).method.name == method]
    if not candidates:
        raise ConfigError(f"preset {preset} ({method}) has no *_tiny twin to run on CPU; run it on a GPU")
    return max(candidates, key=lambda p: (len(os.path.commonprefix([p, preset])), -len(p)))


def presets_for_all(gpu: bool) -> list[str]:
    """``--all``: every full preset on a GPU, every tiny preset on CPU."""
    from vidssl.config import preset_names

    return [p for p in preset_names() if ("tiny" in p) != gpu]


def _data_configs(cfg) -> list:
    return [cfg.data] + list(getattr(cfg, "streams", {}).values())


def _bench_config(preset: str, options: BenchOptions, gpu: bool):
    """The preset's config for the benchmark: batch, workers, and the embedded demo dataset (generated under
    the cache) for every stream whose data root does not exist here — also for full presets, whose step
    speed does not depend on the videos' content (their loader figures then describe the demo's 64² files)."""
    from vidssl.data.index import STILL_FORMATS
    from vidssl.methods.train import load_pretrain_config

    cfg = load_pretrain_config(preset, options.overrides)
    batch = options.batch or (cfg.data.batch_size if gpu else 8)
    twin = None
    streams = [("data", cfg.data)] + list(getattr(cfg, "streams", {}).items())
    for name, data in streams:
        data.batch_size = batch
        if options.workers is not None:
            data.num_workers = options.workers
        if not Path(data.root).expanduser().exists():
            if not data.generate_demo:  # a full preset without its dataset here: the embedded one, as its tiny twin uses
                twin = twin or load_pretrain_config(tiny_twin(preset))
                twin_data = twin.data if name == "data" else twin.streams[name]
                data.generate_demo = True
                data.demo_variant = getattr(twin_data, "demo_variant", "clips")
                # the twin's format where the embedded data has no such layout: BEVT's image stream reads
                # format=images (ImageNet) in the full preset and frames of the embedded videos in its twin
                if data.format in STILL_FORMATS:
                    data.format = twin_data.format
            variant = getattr(data, "demo_variant", "clips")
            data.root = os.path.join(options.data_cache, f"{variant}-{'default' if gpu else 'tiny'}")
            data.demo_size = "default" if gpu else "tiny"
    cfg.trainer.progress_bar = False
    cfg.trainer.checkpoint_every = 10**6
    return cfg


class _Repeat(torch.utils.data.Dataset):
    """The same in-memory batch ``count`` times (a loader that never waits)."""

    def __init__(self, batch: Any, count: int):
        self.batch, self.count = batch, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Any:
        return self.batch


class _StepClock:
    """Host time at the end of every training batch (after a device sync: benchmark timing only)."""

    def __init__(self, device: torch.device):
        import lightning as L

        clock = self

        class Callback(L.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                clock.ends.append(time.perf_counter())

        self.ends: list[float] = []
        self.callback = Callback()

    def seconds_per_step(self, warmup: int) -> float:
        """Median step time after ``warmup`` steps (the median resists other jobs' load spikes)."""
        ends = self.ends[max(warmup, 1) - 1:]
        return statistics.median(b - a for a, b in zip(ends, ends[1:]))


def _method(cfg, num_classes: int):
    from vidssl.methods import METHODS

    return METHODS[cfg.method.name](cfg, num_classes=num_classes)


class HostSyncRecorder:
    """Every synchronising CUDA call made inside a training batch (hooks ``on_train_batch_start`` to
    ``on_train_batch_end``: the forward, loss, logging, backward, optimiser and EMA steps), after
    ``warmup`` batches, through ``torch.cuda.set_sync_debug_mode("warn")``.

    ``syncs`` lists ``"file:line"`` of the Python line that made each call (an ``.item()``, a
    ``bool(tensor)``, a boolean-mask index…); where that line is inside a library (torch, Lightning),
    `` (from FILE:LINE)`` names the innermost vidssl line on the stack, and `` [thread NAME]`` a sync
    reported from another thread. A sync stalls the CPU until the GPU catches up, so the next step's
    kernels cannot be queued while this one runs.

    ``stacks=True`` also keeps the whole Python stack of each sync in ``stack_traces`` (for a sync whose
    ``file:line`` names no vidssl caller); ``mode="error"`` makes the first sync raise a ``RuntimeError``
    at the synchronising call itself, so its traceback shows where it was made.
    """

    def __init__(self, warmup: int = 1, mode: str = "warn", stacks: bool = False):
        import warnings

        import lightning as L

        if mode not in ("warn", "error"):
            raise ConfigError(f"HostSyncRecorder mode must be 'warn' or 'error', got {mode!r}")
        recorder = self
        self.syncs: list[str] = []
        self.stack_traces: list[str] = []
        self._keep_stacks = stacks

        class Callback(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                if batch_idx < warmup:
                    return
                recorder._catch = warnings.catch_warnings()
                recorder._catch.__enter__()
                warnings.simplefilter("always")
                warnings.showwarning = recorder._record
                torch.cuda.set_sync_debug_mode(mode)

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                if batch_idx < warmup:
                    return
                torch.cuda.set_sync_debug_mode(0)
                recorder._catch.__exit__(None, None, None)

        self.callback = Callback()

    def _record(self, message, category, filename, lineno, file=None, line=None) -> None:
        import threading
        import traceback

        # torch's report of a sync; not the once-per-process notice that setting the mode prints
        # ("Synchronization debug mode is a prototype feature and does not yet detect all synchronizing
        # operations"), which the first recorded preset of a process used to be charged with
        if "called a synchronizing CUDA operation" not in str(message):
            return
        where = f"{filename}:{lineno}"
        if "/vidssl/" not in filename:
            ours = [f for f in traceback.extract_stack()[:-1] if "/vidssl/" in f.filename and not f.filename.endswith("bench.py")]
            if ours:
                where += f" (from {ours[-1].filename}:{ours[-1].lineno})"
        thread = threading.current_thread().name
        self.syncs.append(where + ("" if thread == "MainThread" else f" [thread {thread}]"))
        if self._keep_stacks:
            self.stack_traces.append("".join(traceback.format_stack()[:-1]))


def find_host_syncs(cfg, num_classes: int = 10, steps: int = 2, warmup: int = 1, mode: str = "warn",
                    stack_traces: list[str] | None = None) -> list[str]:
    """``file:line`` of each host sync in ``steps`` vidssl training steps of ``cfg`` on a synthetic batch
    (CUDA only), with the run's precision, channels-last and compile settings. The recorded steps log
    nothing (a logging step reads the logged values back to the host by design). ``stack_traces``, if
    given, receives each sync's whole Python stack; ``mode="error"`` raises at the first sync (see
    :class:`HostSyncRecorder`)."""
    from vidssl.data.synthetic import synthetic_batch

    if not torch.cuda.is_available():
        raise ConfigError("finding host syncs needs a CUDA device (torch.cuda.set_sync_debug_mode)")
    device = torch.device("cuda")
    torch.manual_seed(cfg.trainer.seed)
    batch = synthetic_batch(_method(cfg, num_classes).data_streams(), cfg.data.batch_size,
                            num_classes=num_classes, device=device)
    recorder = HostSyncRecorder(warmup=warmup, mode=mode, stacks=stack_traces is not None)
    # no recorded step is a logging step: those read the logged values back by design
    _vidssl_step(cfg, batch, num_classes, device, BenchOptions(steps=steps, warmup=warmup),
                 callbacks=[recorder.callback], log_every=10**6)
    if stack_traces is not None:
        stack_traces.extend(recorder.stack_traces)
    return recorder.syncs


def host_sync_report(preset: str, options: BenchOptions) -> dict[str, Any]:
    """``{"preset", "steps", "host_syncs": {file:line: count}}`` for ``preset`` at the benchmark's batch (CUDA)."""
    from collections import Counter

    cfg = _bench_config(preset, options, gpu=True)
    syncs = find_host_syncs(cfg, steps=options.steps, warmup=options.warmup)
    return {"preset": preset, "steps": options.steps, "host_syncs": dict(Counter(syncs))}


def format_host_syncs(report: dict[str, Any]) -> str:
    """One line per sync site of a :func:`host_sync_report`, the most frequent first."""
    syncs = report["host_syncs"]
    lines = [f"{report['preset']}: {sum(syncs.values())} host syncs in {report['steps']} training steps"]
    lines += [f"  {count:3d}x {where}" for where, count in sorted(syncs.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def _vidssl_step(cfg, batch, num_classes: int, device: torch.device, options: BenchOptions,
                 callbacks: list = (), log_every: int = 1) -> float:
    """Seconds per vidssl training step on ``batch`` (already on the device), through the engine."""
    import lightning as L

    from vidssl.methods.train import _trainer_kwargs
    from vidssl.progress import quiet_lightning

    method = _method(cfg, num_classes)
    clock = _StepClock(device)
    total = max(options.warmup, 1) + options.steps
    loader = torch.utils.data.DataLoader(_Repeat(batch, total), batch_size=None, collate_fn=lambda b: b)
    kwargs = _trainer_kwargs(cfg)
    kwargs.update(max_steps=total, max_epochs=1, enable_progress_bar=False, log_every_n_steps=log_every,
                  devices=1, num_nodes=1, strategy="auto")
    with quiet_lightning():
        trainer = L.Trainer(**kwargs, logger=False, enable_checkpointing=False, callbacks=[*callbacks, clock.callback],
                            enable_model_summary=False)
        trainer.fit(method, train_dataloaders=loader)
    return clock.seconds_per_step(options.warmup)


def _plain_step(cfg, batch, num_classes: int, device: torch.device) -> tuple[Callable[[], None], Any]:
    """The same model and loss in plain fp32 eager PyTorch: a closure running one step, and the method."""
    from vidssl.methods.base import ema_update
    from vidssl.optim import build_optimizer

    plain_cfg = copy.deepcopy(cfg)
    plain_cfg.trainer.compile = False
    plain_cfg.trainer.channels_last = False
    method = _method(plain_cfg, num_classes).to(device)
    method.train()
    optimizer = build_optimizer(plain_cfg.optim, method.param_groups(), device_type=device.type)
    pairs = [(method.get_submodule(o), method.get_submodule(t)) for o, t in method._ema_pairs]

    def step() -> None:
        views = method.augment(batch)
        loss = method.compute_loss(views, batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for online, target in pairs:
                ema_update(online, target, 0.99)

    return step, method


def _timed(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    """Median seconds per ``step()`` after ``warmup`` untimed calls (synchronised, as the vidssl side is)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _loader_rate(cfg, method, manifest, options: BenchOptions) -> float:
    """Samples/s of the preset's loaders alone (all streams combined, as in training)."""
    from vidssl.data.module import StreamDataModule, loader_workers
    from vidssl.methods.throughput import samples_in_batch

    streams = method.data_streams()
    data = StreamDataModule(streams, seed=cfg.trainer.seed, manifests={next(iter(streams)): manifest}, log=lambda _: None)
    data.setup("fit")
    combined = data.train_dataloader()
    iterator = iter(combined)

    def next_batch():
        nonlocal iterator
        try:
            item = next(iterator)
        except StopIteration:  # a small dataset: start another pass (the persistent workers stay)
            iterator = iter(combined)
            item = next(iterator)
        return item[0] if isinstance(item, tuple) else item

    # Untimed: worker start-up and every batch the workers had already queued (prefetch_factor per worker);
    # timing those would measure a queue, not the loader. Timed: at least two batches per worker, so the
    # figure is the rate the workers produce batches at while the step consumes them.
    workers = loader_workers(cfg.data.num_workers)
    for _ in range(max(1, workers * cfg.data.prefetch_factor)):
        next_batch()
    start, samples = time.perf_counter(), 0
    for _ in range(max(options.loader_batches, 2 * workers)):
        samples += samples_in_batch(next_batch())
    return samples / (time.perf_counter() - start)


def _end_to_end(cfg, options: BenchOptions) -> dict[str, float]:
    """A real ``vidssl pretrain`` of warm-up + steps steps; its throughput summary (first step left out)."""
    from vidssl.methods.throughput import ThroughputLogger
    from vidssl.methods.train import pretrain

    run_cfg = copy.deepcopy(cfg)
    run_cfg.trainer.max_steps = max(options.warmup, 1) + options.steps
    run_cfg.trainer.log_every = 1
    meter = ThroughputLogger(window=1)
    with tempfile.TemporaryDirectory(prefix="vidssl-bench-run-") as out:
        pretrain(run_cfg, Path(out) / "run", callbacks=[meter], log=lambda _: None)
    return meter.summary()


def _flops_per_step(step: Callable[[], None]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def _peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in DENSE_BF16_PEAK.items() if k in name), None)


def _largest_batch(cfg, num_classes: int, device: torch.device, start: int, tries: int = 4) -> int:
    """Largest batch (doubling from ``start``, ``tries`` times) whose bf16 step runs without running out of
    memory. Other errors at a large batch (a kernel's 32-bit index limit) also end the search."""
    from vidssl.data.synthetic import synthetic_batch

    fits, size = start, start * 2
    for _ in range(tries):
        try:
            batch = synthetic_batch(_method(cfg, num_classes).data_streams(), size, num_classes=max(num_classes, 2),
                                    device=device)
            step, _ = _plain_step(cfg, batch, num_classes, device)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                step()
            torch.cuda.synchronize()
            fits, size = size, size * 2
        except (torch.cuda.OutOfMemoryError, RuntimeError):
            break
        finally:
            batch = step = None
            torch.cuda.empty_cache()
    return fits


def bench_preset(preset: str, options: BenchOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Benchmark one preset (its tiny twin on CPU); returns the figures (see the module docstring)."""
    from vidssl.data.module import open_manifest, prepare_data_root
    from vidssl.data.synthetic import synthetic_batch
    from vidssl.methods.throughput import samples_in_batch

    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    ran = preset if gpu else tiny_twin(preset)
    cfg = _bench_config(ran, options, gpu)
    for data in _data_configs(cfg):
        prepare_data_root(data, log)
    manifest = open_manifest(Path(cfg.data.root).expanduser(), cfg.data.format)
    num_classes = max(manifest.num_classes, 2)
    torch.manual_seed(cfg.trainer.seed)
    probe_method = _method(cfg, num_classes)
    batch = synthetic_batch(probe_method.data_streams(), cfg.data.batch_size, num_classes=num_classes, device=device)
    samples = samples_in_batch(batch)
    result: dict[str, Any] = {
        "preset": preset, "ran": ran, "method": cfg.method.name, "backbone": cfg.method.backbone,
        "device": torch.cuda.get_device_name(device) if gpu else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)",
        "batch": cfg.data.batch_size, "samples_per_step": samples, "workers": cfg.data.num_workers,
        "steps": options.steps, "warmup": options.warmup, "load_average_before": list(os.getloadavg()),
    }
    if options.plain:  # built first, so both sides start from the same initial weights
        plain, plain_method = _plain_step(cfg, batch, num_classes, device)
    if gpu:
        torch.cuda.reset_peak_memory_stats(device)
    step_s = _vidssl_step(cfg, batch, num_classes, device, options)
    if gpu:
        result["peak_memory_per_sample_mib"] = torch.cuda.max_memory_allocated(device) / samples / 2**20
    result.update(step_samples_per_s=samples / step_s, plain_samples_per_s=None, step_vs_plain=None,
                  flops_per_sample=None, achieved_tflops=None, mfu=None)
    if options.plain:
        plain_s = _timed(plain, options.steps, options.warmup, device)
        result.update(plain_samples_per_s=samples / plain_s, step_vs_plain=plain_s / step_s)
        flops = _flops_per_step(plain)
        result["flops_per_sample"] = flops / samples
        peak = _peak(device)
        result["achieved_tflops"] = flops / step_s / 1e12
        result["mfu"] = flops / step_s / peak if peak else None
        del plain, plain_method
    # each figure is printed as soon as it is measured: a run cut off by a time limit keeps them
    log(f"[{preset}] step {result['step_samples_per_s']:.1f} samples/s"
        + (f", plain fp32 eager {result['plain_samples_per_s']:.1f} ({result['step_vs_plain']:.2f}x), "
           f"{result['achieved_tflops']:.2f} TFLOP/s" if options.plain else " (plain step skipped)")
        + (f", MFU {100 * result['mfu']:.1f} %" if result["mfu"] else "")
        + (f", peak {result['peak_memory_per_sample_mib']:.0f} MiB/sample" if gpu else ""))
    result["loader_samples_per_s"] = _loader_rate(cfg, probe_method, manifest, options)
    result["loader_vs_step"] = result["loader_samples_per_s"] / result["step_samples_per_s"]
    log(f"[{preset}] loader {result['loader_samples_per_s']:.1f} samples/s ({result['loader_vs_step']:.2f}x the step)")
    if options.end_to_end:
        e2e = _end_to_end(cfg, options)
        result["end_to_end_samples_per_s"] = e2e.get("samples_per_s")
        result["data_wait_fraction"] = e2e.get("data_wait_fraction")
        if e2e:
            result["end_to_end_vs_step"] = e2e["samples_per_s"] / result["step_samples_per_s"]
            log(f"[{preset}] end to end {e2e['samples_per_s']:.1f} samples/s ({100 * result['end_to_end_vs_step']:.0f} % "
                f"of the step), data wait {100 * (e2e.get('data_wait_fraction') or 0):.0f} %")
    if gpu and options.largest_batch:  # last: the slowest part (a new shape per try)
        result["largest_batch"] = _largest_batch(cfg, num_classes, device, cfg.data.batch_size)
    result["load_average_after"] = list(os.getloadavg())
    return result


def format_result(r: dict[str, Any]) -> str:
    """One block of lines for a :func:`bench_preset` result."""
    def pct(x):
        return "-" if x is None else f"{100 * x:.0f} %"

    lines = [f"{r['preset']}" + (f" (ran its tiny twin {r['ran']})" if r["ran"] != r["preset"] else "")
             + f": {r['method']} / {r['backbone']}, batch {r['batch']} ({r['samples_per_step']} samples), {r['device']}, "
             f"load {r['load_average_before'][0]:.2f} -> {r['load_average_after'][0]:.2f}",
             f"  step in memory   {r['step_samples_per_s']:9.1f} samples/s   "
             + (f"plain fp32 eager {r['plain_samples_per_s']:9.1f}   step / plain {r['step_vs_plain']:.2f}x"
                if r.get("plain_samples_per_s") is not None else "plain fp32 eager skipped (--no-plain)"),
             f"  loader only      {r['loader_samples_per_s']:9.1f} samples/s   loader / step {r['loader_vs_step']:.2f}x"]
    if r.get("end_to_end_samples_per_s") is not None:
        lines.append(f"  end to end       {r['end_to_end_samples_per_s']:9.1f} samples/s   end-to-end / step "
                     f"{pct(r.get('end_to_end_vs_step'))}   data wait {pct(r.get('data_wait_fraction'))} of step time")
    flops = (f"  {r['flops_per_sample'] / 1e9:.2f} GFLOP/sample (plain step), {r['achieved_tflops']:.3f} TFLOP/s, "
             f"MFU {pct(r['mfu'])}" if r.get("flops_per_sample") is not None else "  FLOPs and MFU not counted (--no-plain)")
    if "peak_memory_per_sample_mib" in r:
        flops += f", peak {r['peak_memory_per_sample_mib']:.0f} MiB/sample"
    if "largest_batch" in r:
        flops += f", largest batch that fits {r['largest_batch']}"
    lines.append(flops + ("" if r["mfu"] is not None or r.get("flops_per_sample") is None
                          else " (MFU needs a GPU with a known peak)"))
    return "\n".join(lines)

