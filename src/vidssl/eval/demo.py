"""``vidssl demo``: does self-supervised pretraining learn anything? Measured end to end on a CPU.

Steps (each reused when its output already exists, so a second run is fast):

1. generate the embedded dataset (:func:`vidssl.data.demo.generate_demo`; 10 motion classes whose
   appearance says nothing about the class) under ``DATA`` if it is missing;
2. pretrain a tiny encoder on its train split with a tiny FGKVMemPred/BYOL preset (GPU when
   available);
3. extract features of the pretrained encoder **and of the same architecture randomly initialised**
   (train: augmented passes; test: K×S views);
4. linear probe, linear SVM and cosine kNN on both; print them side by side; write
   ``OUT/report.json`` (``{"results": {"pretrained": {"linear", "svm", "knn"}, "random": {…}},
   "seconds": …}``, top-1 fractions), ``OUT/report.md``, the pretraining curve and confusion matrices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vidssl.errors import UserError
from vidssl.eval.linear import LinearProbeConfig

PROTOCOL_NAMES = ("linear", "svm", "knn")


@dataclass
class DemoSettings:
    """One size of the demo. ``pretrain_overrides`` are ``key=value`` strings for the preset."""

    dataset_size: str
    preset: str
    pretrain_overrides: list[str]
    views: str
    linear: LinearProbeConfig
    svm_C: float = 1e-2
    knn_k: int = 10
    batch_size: int = 16
    num_workers: int = 1


DEMO_SETTINGS: dict[str, DemoSettings] = {
    # ≤ 10 minutes on 2 CPU cores, all steps together.
    "full": DemoSettings(
        dataset_size="default",
        preset="byol_rho2_r3d18_demo_tiny",
        pretrain_overrides=[],
        views="demo",
        linear=LinearProbeConfig(epochs=60, warmup_epochs=5),
    ),
    # `--quick`: a smoke run of every step (< 2 minutes), no claim about the margin.
    "quick": DemoSettings(
        dataset_size="tiny",
        preset="byol_rho2_r3d18_demo_tiny",
        pretrain_overrides=["trainer.max_steps=4", "trainer.max_epochs=1", "data.batch_size=8", "data.num_workers=0"],
        views="demo_quick",
        linear=LinearProbeConfig(epochs=10, warmup_epochs=1),
        num_workers=0,
    ),
}


def pretrain_config(settings: DemoSettings, data_root: Path, device: str, seed: int, progress: bool):
    """The resolved pretraining config: the settings' preset on the dataset's train split of fold 1.

    Built before anything runs, so an unknown preset or override fails at once.
    """
    from vidssl.methods.train import load_pretrain_config

    overrides = [f"data.root={data_root}", "data.split=train", "data.fold=1", f"trainer.seed={seed}",
                 f"trainer.progress_bar={progress}", *settings.pretrain_overrides]
    if device not in ("auto", None):
        overrides.append(f"trainer.accelerator={'gpu' if str(device).startswith('cuda') else 'cpu'}")
    return load_pretrain_config(settings.preset, overrides)


def _pretrain(cfg, run_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Pretrain ``cfg`` into ``run_dir``; a finished run (``encoder.safetensors`` present) is reused and a
    killed one resumes from its last checkpoint."""
    from vidssl.methods.train import pretrain

    if (run_dir / "encoder.safetensors").is_file():
        log(f"      reusing the finished pretraining run in {run_dir}")
        return run_dir
    resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
    pretrain(cfg, run_dir, resume=resume, log=log)
    if not (run_dir / "encoder.safetensors").is_file():
        raise UserError(f"pretraining finished without writing {run_dir / 'encoder.safetensors'}")
    return run_dir


def demo_protocol(settings: DemoSettings, run_dir: Path):
    """The settings' view protocol with the clip geometry the encoder was pretrained on (frames,
    stride, canvas, crop from ``run_dir/config.yaml``) and its method's input normalisation (BraVe
    feeds [0, 1] pixels, the BYOL family mean 0.45 / std 0.225), so the features see what
    pretraining saw."""
    from vidssl.config import load_yaml
    from vidssl.eval.features import get_protocol
    from vidssl.methods import METHODS

    method = load_yaml(run_dir / "config.yaml").get("method", {})
    canvas = int(method.get("canvas", 64))
    normalisation = {}
    method_class = METHODS.get(method.get("name", ""))
    if method_class is not None:
        normalisation = dict(mean=(method_class.input_mean,) * 3, std=(method_class.input_std,) * 3)
    return get_protocol(settings.views, num_frames=method.get("num_frames"), stride=method.get("stride"),
                        canvas=(canvas, canvas), crop_size=method.get("crop_size"), **normalisation)


class SideBySide(nn.Module):
    """Several frozen encoders on the same decoded batch: ``forward(x)`` = their embeddings concatenated.

    The demo decodes every video once for the pretrained and the random encoder (decoding, not the
    tiny encoders, dominates on a CPU); :func:`_split_features` cuts the features apart again.
    """

    def __init__(self, encoders: list[nn.Module]):
        super().__init__()
        self.encoders = nn.ModuleList(encoders)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([encoder(x) for encoder in self.encoders], dim=1)


def _split_features(features, dims: list[int]):
    """Cut ``N×V×ΣD`` features into one ``N×V×D_i`` array per encoder."""
    bounds = np.cumsum([0, *dims])
    return [features[..., a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _protocol_numbers(train_views, train_aug, test, labels, settings: DemoSettings, num_classes: int):
    """Linear / SVM / kNN top-1, top-5 and confusion matrices for one encoder's features."""
    from vidssl.eval.knn import evaluate_knn
    from vidssl.eval.linear import evaluate_linear
    from vidssl.eval.svm import evaluate_svm

    (train_labels, aug_labels, test_labels) = labels
    linear = evaluate_linear(train_aug, aug_labels, test, test_labels, settings.linear, num_classes)
    (svm,) = evaluate_svm(train_aug, aug_labels, test, test_labels, C=settings.svm_C, num_classes=num_classes)
    knn = evaluate_knn(train_views, train_labels, test, test_labels, k=settings.knn_k, num_classes=num_classes)
    numbers = {"linear": linear.top1, "svm": svm.top1, "knn": knn.top1}
    top5 = {"linear": linear.top5, "svm": svm.top5, "knn": knn.top5}
    confusions = {"linear": linear.confusion, "svm": svm.confusion, "knn": knn.confusion}
    return numbers, top5, confusions


def _evaluate(encoders: dict, manifest, protocol, settings: DemoSettings, cache_dir: Path, device: str, seed: int,
              progress: bool):
    """``{name: (encoder, info)}`` -> per-encoder numbers, top-5 and confusions (fold 1), decoding once."""
    import hashlib

    from vidssl.eval.features import EncoderInfo, extract_features

    names = list(encoders)
    joint = SideBySide([encoders[n][0] for n in names]).eval()
    digest = hashlib.sha256("+".join(encoders[n][1].hash for n in names).encode()).hexdigest()[:24]
    joint_info = EncoderInfo("+".join(encoders[n][1].source for n in names), digest)
    dims = [int(encoders[n][0].embed_dim) for n in names]
    common = dict(cache_dir=cache_dir, device=device, batch_size=settings.batch_size,
                  num_workers=settings.num_workers, seed=seed, progress=progress)
    train_views = extract_features(joint, joint_info, manifest, protocol, "train", 1, **common)
    # Linear probe and SVM train on augmented passes when the protocol asks for them, else on the views.
    train_aug = (extract_features(joint, joint_info, manifest, protocol, "train", 1, passes=protocol.train_passes, **common)
                 if protocol.train_passes > 0 else train_views)
    test = extract_features(joint, joint_info, manifest, protocol, "test", 1, **common)
    labels = (train_views.labels, train_aug.labels, test.labels)
    split = [_split_features(fs.features, dims) for fs in (train_views, train_aug, test)]
    results, top5, confusions = {}, {}, {}
    for i, name in enumerate(names):
        results[name], top5[name], confusions[name] = _protocol_numbers(
            split[0][i], split[1][i], split[2][i], labels, settings, len(manifest.class_names))
    return results, top5, confusions


def run_demo(
    out_dir: str | Path = "vidssl-demo",
    data_dir: str | Path | None = None,
    quick: bool = False,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
    settings: DemoSettings | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the whole demo; return the report dict written to ``out_dir/report.json``."""
    from vidssl.data.demo import generate_demo
    from vidssl.eval import report as reporting
    from vidssl.eval.features import load_eval_encoder, open_dataset, pick_device

    started = time.time()
    settings = settings or DEMO_SETTINGS["quick" if quick else "full"]
    out_dir = Path(out_dir)
    data_root = Path(data_dir) if data_dir is not None else out_dir / "data"
    torch_device = pick_device(device)
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.time()
        timings[name] = now - since
        return now

    cfg = pretrain_config(settings, data_root, str(torch_device), seed, progress)
    mark = time.time()
    log(f"[1/3] embedded dataset ({settings.dataset_size}) at {data_root}")
    generate_demo(data_root, size=settings.dataset_size, seed=seed)
    manifest = open_dataset(data_root)
    mark = lap("data", mark)

    log(f"[2/3] pretraining {settings.preset} on {torch_device} -> {out_dir / 'pretrain'}")
    run_dir = _pretrain(cfg, out_dir / "pretrain", log)
    mark = lap("pretrain", mark)

    pretrained, pretrained_info = load_eval_encoder(run_dir)
    backbone_name, backbone_kwargs = _architecture(run_dir, pretrained)
    random_encoder, random_info = load_eval_encoder(backbone=backbone_name, backbone_kwargs=backbone_kwargs, seed=seed)
    cache_dir = out_dir / "features"
    protocol = demo_protocol(settings, run_dir)
    encoders = {"pretrained": (pretrained, pretrained_info), "random": (random_encoder, random_info)}
    log(f"[3/3] linear probe, SVM and kNN: pretrained vs randomly initialised {backbone_name}")
    results, top5, confusions = _evaluate(encoders, manifest, protocol, settings, cache_dir, str(torch_device), seed,
                                          progress)
    mark = lap("evaluate", mark)

    images = []
    metrics_csv = _find_metrics(run_dir)
    if metrics_csv is not None and reporting.plot_training_curve(metrics_csv, out_dir / "training_curve.png") is not None:
        images.append("training_curve.png")
    for name, matrices in confusions.items():
        for protocol_name, matrix in matrices.items():
            filename = f"confusion_{name}_{protocol_name}.png"
            reporting.plot_confusion(matrix, manifest.class_names, out_dir / filename,
                                     title=f"{name} encoder, {protocol_name}")
            images.append(filename)

    seconds = time.time() - started
    margin = {p: results["pretrained"][p] - results["random"][p] for p in PROTOCOL_NAMES}
    report = {
        "results": results,
        "seconds": seconds,
        "top5": top5,
        "margin": margin,
        "linear_margin_ok": margin["linear"] >= 0.10,
        "timings": timings,
        "device": str(torch_device),
        "dataset": {"root": str(data_root), "size": settings.dataset_size, "classes": manifest.class_names,
                    "fold": 1},
        "encoders": {"pretrained": pretrained_info.as_dict(), "random": random_info.as_dict()},
        "settings": _settings_dict(settings),
        "views": protocol.describe(),
        "quick": bool(quick),
        "images": images,
    }
    reporting.write_json(report, out_dir / "report.json")
    (out_dir / "report.md").write_text(render_demo_markdown(report))
    return report


def _architecture(run_dir: Path, encoder: nn.Module) -> tuple[str, dict[str, Any]]:
    """Backbone name + kwargs of the pretrained encoder (``vidssl.models`` tags every encoder it builds),
    to build the same architecture with random weights."""
    name = getattr(encoder, "backbone_name", None)
    if not name:
        raise UserError(f"the encoder in {run_dir} does not say which backbone it is")
    return name, dict(getattr(encoder, "backbone_kwargs", {}) or {})


def _find_metrics(run_dir: Path) -> Path | None:
    direct = run_dir / "metrics.csv"
    if direct.is_file():
        return direct
    found = sorted(run_dir.rglob("metrics.csv"))
    return found[-1] if found else None


def _settings_dict(settings: DemoSettings) -> dict[str, Any]:
    from vidssl.config import to_dict

    return to_dict(settings)


def render_demo_markdown(report: dict[str, Any]) -> str:
    """The demo's report page: the side-by-side table, the margin, timings and the plots."""
    results = report["results"]
    lines = [
        "# vidssl demo: pretrained vs randomly initialised encoder",
        "",
        f"Embedded dataset `{report['dataset']['size']}` ({len(report['dataset']['classes'])} motion classes), split 1; "
        f"device {report['device']}; total {report['seconds']:.0f} s.",
        "",
        "| protocol | pretrained top-1 | random init top-1 | difference |",
        "|---|---|---|---|",
    ]
    for protocol in PROTOCOL_NAMES:
        a, b = results["pretrained"][protocol], results["random"][protocol]
        lines.append(f"| {protocol} | {100 * a:.1f} % | {100 * b:.1f} % | {100 * (a - b):+.1f} points |")
    verdict = "holds" if report["linear_margin_ok"] else "does NOT hold"
    lines += ["", f"Linear-probe margin ≥ 10 points: **{verdict}** ({100 * report['margin']['linear']:+.1f} points)."
              + (" (`--quick` is a smoke run of every step; it trains too briefly to show a margin.)" if report.get("quick") else ""),
              "", "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in report["timings"].items())]
    for image in report.get("images", []):
        lines += ["", f"![{Path(image).stem}]({image})"]
    return "\n".join(lines) + "\n"


def print_demo_table(report: dict[str, Any]) -> None:
    """Print the pretrained / random numbers side by side (rich table)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="vidssl demo — top-1 on the embedded dataset (split 1)")
    table.add_column("protocol")
    table.add_column("pretrained", justify="right")
    table.add_column("random init", justify="right")
    table.add_column("difference", justify="right")
    for protocol in PROTOCOL_NAMES:
        a, b = report["results"]["pretrained"][protocol], report["results"]["random"][protocol]
        table.add_row(protocol, f"{100 * a:.1f} %", f"{100 * b:.1f} %", f"{100 * (a - b):+.1f}")
    console = Console()
    console.print(table)
    console.print(f"total {report['seconds']:.0f} s on {report['device']}")
