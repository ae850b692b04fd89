"""What do a `vidssl demo` run's encoders encode on the shapes: the motion, or the object?

The shapes' captions name each clip's object (one of 7 shape types) and its colour, both drawn
independently of the motion class. A self-supervised objective that pairs two clips of one video can
be met by the object alone, so an encoder that loses motion might have learnt the object instead.
This fits a logistic-regression probe for each of the three labels on the features the demo cached
(``OUT/features``: the pretrained and the random encoder side by side, ``N×V×2D``, views averaged)
and prints top-1 on the test split of fold 1, pretrained vs random.

    ../../.venv/bin/python object_probe.py DEMO_OUT SHAPES_ROOT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from vidssl.eval.features import open_dataset

SHAPE_WORDS = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon")


def caption_attributes(caption: str) -> tuple[str, str]:
    """``"a pink square circles clockwise"`` → ``("square", "pink")``."""
    words = caption.split()
    return next(w for w in words if w in SHAPE_WORDS), words[1]


def load_split(run: Path, manifest, split: str):
    """Views-averaged features ``N×2D``, motion labels and the records of the cached ``split``."""
    for meta_path in (run / "features").glob("*/meta.json"):
        meta = json.loads(meta_path.read_text())
        if meta["split"] == split:
            arrays = np.load(meta_path.with_name("features.npz"))
            records = manifest.subset(split=split, fold=meta["fold"]).records
            return arrays["features"].mean(1), arrays["labels"], [records[i] for i in arrays["indices"]]
    raise SystemExit(f"no cached {split} features under {run}/features: run `vidssl demo` first")


def probe(train_x, train_y, test_x, test_y) -> float:
    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(max_iter=3000).fit(scaler.transform(train_x), train_y)
    return 100.0 * float((model.predict(scaler.transform(test_x)) == test_y).mean())


def main(run: Path, root: Path) -> None:
    manifest = open_dataset(root)
    captions = json.loads((root / "captions.json").read_text())
    train_x, train_motion, train_records = load_split(run, manifest, "train")
    test_x, test_motion, test_records = load_split(run, manifest, "test")
    half = train_x.shape[1] // 2  # pretrained first, random second (the demo's encoder order)
    targets = {"motion": (train_motion, test_motion)}
    for position, name in enumerate(("shape", "colour")):
        targets[name] = tuple(np.array([caption_attributes(captions[r.path])[position] for r in records])
                              for records in (train_records, test_records))
    for name, (train_y, test_y) in targets.items():
        scores = {encoder: probe(train_x[:, cols], train_y, test_x[:, cols], test_y)
                  for encoder, cols in (("pretrained", slice(0, half)), ("random", slice(half, None)))}
        print(f"{name:7s} ({len(set(train_y))} classes): pretrained {scores['pretrained']:.1f} %, "
              f"random {scores['random']:.1f} %")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
