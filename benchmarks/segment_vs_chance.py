"""`vidssl segment` on the embedded movies' test split, against the true cuts and scenes, and against chance.

For every test movie of a movie demo (``vidssl data demo --movie``) it runs ``vidssl segment`` with a
scene model (``vidssl eval scenes`` writes one) and prints:

* shot cuts: F1 of the detected cut frames against the true ones, within ±1 frame;
* scene boundaries: F1 of the timeline's scene starts against the true ones, within ±2 frames;
* chance for the scene boundaries: as many boundaries as the timeline has, drawn uniformly among the
  detected cuts (2000 draws per movie), the same F1.

    python benchmarks/segment_vs_chance.py data/movies runs/bassl/scenes/scene_model --out /tmp/seg
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def match(predicted: list[int], true: list[int], tolerance: int) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of frame positions within ``tolerance``."""
    hits = sum(any(abs(p - t) <= tolerance for p in predicted) for t in true)
    false = sum(not any(abs(p - t) <= tolerance for t in true) for p in predicted)
    return hits, false, len(true) - hits


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / max(1, 2 * tp + fp + fn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("movies", type=Path, help="a movie demo folder (movies.json, videos/)")
    parser.add_argument("scene_model", type=Path, help="a scene model directory (vidssl eval scenes)")
    parser.add_argument("--out", type=Path, required=True, help="where vidssl segment writes its timelines")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    movies = [m for m in json.loads((args.movies / "movies.json").read_text()) if m["split"] == "test"]
    cuts_total, scenes_total, per_movie = np.zeros(3, int), np.zeros(3, int), []
    for movie in movies:
        name = movie["movie_id"]
        subprocess.run([sys.executable, "-m", "vidssl", "segment", str(args.movies / "videos" / f"{name}.mp4"),
                        "--checkpoint", str(args.scene_model), "--out", str(args.out), "--quiet"],
                       check=True, capture_output=True)
        timeline = json.loads((args.out / f"{name}.scenes.json").read_text())
        shots = movie["shots"]
        true_cuts = [shot["start"] for shot in shots][1:]
        true_scenes = [s["start"] for i, s in enumerate(shots) if i and s["scene"] != shots[i - 1]["scene"]]
        cuts = [shot["start"] for shot in timeline["shots"]][1:]
        starts = [scene["start_frame"] for scene in timeline["scenes"]][1:]
        cuts_total += match(cuts, true_cuts, 1)
        scene_counts = match(starts, true_scenes, 2)
        scenes_total += scene_counts
        chance = [f1(*match(list(rng.choice(cuts, size=min(len(starts), len(cuts)), replace=False)), true_scenes, 2))
                  for _ in range(args.draws)] if starts and cuts else [0.0]
        per_movie.append({"movie": name, "predicted_scenes": len(starts) + 1, "true_scenes": len(true_scenes) + 1,
                          "scene_f1": f1(*scene_counts), "chance_f1": float(np.mean(chance))})
    print(json.dumps({"shot_cut_f1": f1(*cuts_total), "cuts_tp_fp_fn": cuts_total.tolist(),
                      "scene_boundary_f1": f1(*scenes_total), "scenes_tp_fp_fn": scenes_total.tolist(),
                      "per_movie": per_movie}, indent=1))


if __name__ == "__main__":
    main()
