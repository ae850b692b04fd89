"""``vidssl demo``: does self-supervised pretraining learn anything? Measured end to end on a CPU.

Steps (each reused when its output already exists, so a second run is fast):

1. generate the embedded dataset (:func:`vidssl.data.demo.generate_demo`, or with ``--dataset shapes``
   :func:`vidssl.data.demo.generate_shapes_demo`; 10 (8) motion classes whose
   appearance says nothing about the class) under ``DATA`` if it is missing, with its own seed
   (``--data-seed``; the training ``--seed`` never regenerates it);
2. pretrain a tiny encoder on its train split with a tiny FGKVMemPred/BYOL preset (GPU when
   available). A run already in ``OUT/pretrain`` is reused (or resumed) only when its
   ``config.yaml`` equals the config of this call; otherwise the demo stops and says which keys differ;
3. extract features of the pretrained encoder **and of the same architecture randomly initialised**,
   both fed as the pretrained encoder's input contract says (clip geometry and normalisation)
   (train: augmented passes; test: K×S views);
4. linear probe, linear SVM and cosine kNN on both (:mod:`vidssl.eval.protocols`, the code
   ``vidssl eval`` runs); print them side by side; write
   ``OUT/report.json`` (``{"results": {"pretrained": {"linear", "svm", "knn"}, "random": {…}},
   "seconds": …}``, top-1 fractions), ``OUT/report.md``, the pretraining curve and confusion matrices.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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


def pretrain_config(settings: DemoSettings, data_root: Path, device: str, seed: int, progress: bool,
                    data_seed: int = 0, dataset: str = "clips"):
    """The resolved pretraining config: the settings' preset on the dataset's train split of fold 1.

    ``seed`` is the training seed (``trainer.seed``); ``data_seed`` the embedded dataset's
    (``data.demo_seed``); ``dataset`` which embedded dataset (``data.demo_variant``: ``clips`` = digits, or
    ``shapes``). Built before anything runs, so an unknown preset or override fails at once.
    """
    from vidssl.methods.train import load_pretrain_config

    overrides = [f"data.root={data_root}", "data.split=train", "data.fold=1", f"data.demo_size={settings.dataset_size}",
                 f"data.demo_seed={data_seed}", f"data.demo_variant={dataset}", f"trainer.seed={seed}",
                 f"trainer.progress_bar={progress}",
                 *settings.pretrain_overrides]
    if device not in ("auto", None):
        overrides.append(f"trainer.accelerator={'gpu' if str(device).startswith('cuda') else 'cpu'}")
    return load_pretrain_config(settings.preset, overrides)


#: Config keys that do not change what a pretraining run computes (ignored when deciding to reuse one).
COSMETIC_KEYS = ("trainer.progress_bar",)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: data}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs (present in one only included),
    :data:`COSMETIC_KEYS` left out."""
    normal = [_flatten(json.loads(json.dumps(d, default=str))) for d in (saved, current)]
    keys = sorted(set(normal[0]) | set(normal[1]))
    missing = object()
    return [k for k in keys if k not in COSMETIC_KEYS and normal[0].get(k, missing) != normal[1].get(k, missing)]


def check_previous_run(cfg, run_dir: Path) -> bool:
    """Whether ``run_dir`` holds an earlier pretraining run to reuse (finished) or resume (killed).

    Only a run whose saved ``config.yaml`` equals ``cfg`` (the resolved dicts, :data:`COSMETIC_KEYS`
    aside) is reused; any other content of ``run_dir`` is a :class:`UserError` naming the differing
    keys, so the demo never reports numbers of an encoder trained another way.
    """
    from vidssl.config import load_yaml, to_dict
    from vidssl.errors import ConfigError

    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return False
    advice = f"choose another --out or delete {run_dir}"
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise UserError(f"{run_dir} is not empty but holds no config.yaml, so it cannot be reused; {advice}")
    try:
        saved = load_yaml(saved_path)
    except ConfigError as exc:
        raise UserError(f"{exc}; {advice}") from None
    differing = config_differences(saved, to_dict(cfg))
    if differing:
        shown = ", ".join(differing[:8]) + (f" and {len(differing) - 8} more" if len(differing) > 8 else "")
        raise UserError(f"the pretraining run in {run_dir} was made with another config (differing keys: {shown}); "
                        f"{advice}")
    return True


def _pretrain(cfg, run_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Pretrain ``cfg`` into ``run_dir``; a finished run of the same config (``encoder.safetensors``
    present) is reused and a killed one resumes from its last checkpoint (:func:`check_previous_run`)."""
    from vidssl.methods.train import pretrain

    if check_previous_run(cfg, run_dir) and (run_dir / "encoder.safetensors").is_file():
        log(f"      reusing the finished pretraining run in {run_dir} (same config)")
        return run_dir
    resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
    pretrain(cfg, run_dir, resume=resume, log=log)
    if not (run_dir / "encoder.safetensors").is_file():
        raise UserError(f"pretraining finished without writing {run_dir / 'encoder.safetensors'}")
    return run_dir


def demo_protocol(settings: DemoSettings, encoder: nn.Module, run_dir: Path | str = "the pretraining run"):
    """The settings' view protocol for the pretrained ``encoder`` (:func:`~vidssl.eval.views.protocol_for`):
    the clip geometry (frames, stride, canvas, crop) and the normalisation of its input contract, so
    the features see what pretraining saw. Both encoders of the demo are fed this way."""
    from vidssl.eval.features import contract_of, protocol_for

    if contract_of(encoder) is None:
        raise UserError(f"the encoder of {run_dir} carries no input contract (written by an older vidssl); "
                        f"delete {run_dir} or choose another --out")
    return protocol_for(encoder, settings.views)


def run_demo(
    out_dir: str | Path = "vidssl-demo",
    data_dir: str | Path | None = None,
    quick: bool = False,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
    settings: DemoSettings | None = None,
    log: Callable[[str], None] = print,
    data_seed: int = 0,
    dataset: str = "clips",
) -> dict[str, Any]:
    """Run the whole demo; return the report dict written to ``out_dir/report.json``.

    ``seed`` is the training seed (pretraining, random-init baseline, probes); ``data_seed`` the
    embedded dataset's, so another ``seed`` never regenerates an existing dataset. ``dataset`` picks the
    embedded dataset: ``clips`` (digits) or ``shapes`` (the second one, :mod:`vidssl.data.demo.shapes`).
    """
    from vidssl.data.demo import generate_embedded
    from vidssl.eval import report as reporting
    from vidssl.eval.features import load_eval_encoder, open_dataset, pick_device, random_twin
    from vidssl.eval.protocols import Extraction, FeatureSource, KNNSpec, LinearSpec, SVMSpec, run_feature_protocol

    started = time.time()
    settings = settings or DEMO_SETTINGS["quick" if quick else "full"]
    out_dir = Path(out_dir)
    # absolute: the run's config.yaml names its data wherever a rerun or resume is started from
    data_root = (Path(data_dir) if data_dir is not None else out_dir / "data").expanduser().absolute()
    torch_device = pick_device(device)
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.time()
        timings[name] = now - since
        return now

    cfg = pretrain_config(settings, data_root, str(torch_device), seed, progress, data_seed, dataset)
    check_previous_run(cfg, out_dir / "pretrain")  # before minutes of work: a stale run is refused at once
    mark = time.time()
    log(f"[1/3] embedded dataset '{dataset}' ({settings.dataset_size}, seed {data_seed}) at {data_root}")
    generate_embedded(dataset, data_root, size=settings.dataset_size, seed=data_seed)
    manifest = open_dataset(data_root)
    mark = lap("data", mark)

    log(f"[2/3] pretraining {settings.preset} on {torch_device} -> {out_dir / 'pretrain'}")
    run_dir = _pretrain(cfg, out_dir / "pretrain", log)
    mark = lap("pretrain", mark)

    pretrained, pretrained_info = load_eval_encoder(run_dir)
    random_encoder, random_info = random_twin(pretrained, run_dir, seed)
    choice = demo_protocol(settings, pretrained, run_dir)
    protocol = choice.protocol
    encoders = {"pretrained": (pretrained, pretrained_info), "random": (random_encoder, random_info)}
    log(f"[3/3] linear probe, SVM and kNN: pretrained vs randomly initialised {random_info.backbone}")
    extraction = Extraction(cache_dir=out_dir / "features", device=str(torch_device), batch_size=settings.batch_size,
                            num_workers=settings.num_workers, seed=seed, progress=progress)
    source = FeatureSource(encoders, manifest, protocol, extraction, contract=choice.record()["input_contract"])
    # Linear probe and SVM train on augmented passes when the protocol asks for them, else on the views.
    specs = {"linear": LinearSpec(settings.linear, passes=protocol.train_passes),
             "svm": SVMSpec(C=(settings.svm_C,), passes=protocol.train_passes), "knn": KNNSpec(k=settings.knn_k)}
    scored = {name: run_feature_protocol(spec, source, 1, len(manifest.class_names)) for name, spec in specs.items()}
    results = {e: {p: scored[p][e].numbers["top1"] for p in PROTOCOL_NAMES} for e in encoders}
    top5 = {e: {p: scored[p][e].numbers["top5"] for p in PROTOCOL_NAMES} for e in encoders}
    confusions = {e: {p: scored[p][e].confusion for p in PROTOCOL_NAMES} for e in encoders}
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
        "dataset": {"root": str(data_root), "name": dataset, "size": settings.dataset_size, "seed": data_seed,
                    "classes": manifest.class_names, "fold": 1},
        "seed": seed,
        "encoders": {"pretrained": pretrained_info.as_dict(), "random": random_info.as_dict()},
        "settings": _settings_dict(settings),
        "views": protocol.describe(),
        **choice.record(),
        "quick": bool(quick),
        "images": images,
    }
    reporting.write_json(report, out_dir / "report.json")
    (out_dir / "report.md").write_text(render_demo_markdown(report))
    return report


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
