"""How many memory slots does a KVMem / FGKVMemPred run's predictor use, and how many dimensions
do its representations span?

Loads a `vidssl pretrain` (or `vidssl demo`: ``OUT/pretrain``) run directory, draws 6 training
batches of its own views (first clip), and prints, for the online branch:

- the mean pairwise cosine of the projections ``z`` and of the memory's queries;
- the addressing: mean entropy (as ``exp(H)``, the number of slots a readout effectively mixes)
  and the number of distinct most-weighted slots over the 6×B clips;
- the effective rank (``vidssl.methods.base.collapse_stats``) of the pooled embedding, of ``z``
  and of the memory's prediction ``ẑ``.

BatchNorm layers use batch statistics (as in the training loss). ``--init`` measures the same
architecture freshly initialised under the run's seed instead of the last checkpoint.

    ../../.venv/bin/python memory_probe.py RUN_DIR [--init]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from vidssl.data.module import StreamDataModule, open_manifest
from vidssl.methods import METHODS
from vidssl.methods.base import collapse_stats
from vidssl.methods.resume import saved_config
from vidssl.models.heads import KeyValueMemory


def main(run: Path, init: bool) -> None:
    cfg = saved_config(run)
    cfg.data.num_workers = 0
    manifest = open_manifest(Path(cfg.data.root), cfg.data.format)
    torch.manual_seed(cfg.trainer.seed)
    method = METHODS[cfg.method.name](cfg, num_classes=manifest.num_classes)
    if not isinstance(getattr(method, "predictor", None), KeyValueMemory):
        raise SystemExit(f"{run}: a '{cfg.method.name}' run has no key-value memory predictor (KVMem / FGKVMemPred runs only)")
    if not init:
        state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
        method.load_state_dict(state)
    method.train()
    streams = method.data_streams()
    data = StreamDataModule(streams, seed=0, manifests={next(iter(streams)): manifest}, log=lambda _: None)
    data.setup("fit")
    memory = method.predictor
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("embedding", "z", "query", "prediction", "entropy", "slot")}
    with torch.no_grad():
        for i, batch in enumerate(data.train_dataloader()):
            if i == 6:
                break
            batch = batch[0] if isinstance(batch, tuple) else batch
            x = method.make_views(batch)[method.clip_names[0]]
            emb = method.encoder(x)
            z = method.projector(emb)
            query = memory.input_proj(z) if memory.input_proj is not None else z
            weights = memory.addressing(z)[:, 0]  # first head, B×S
            for key, value in (("embedding", emb), ("z", z), ("query", query), ("prediction", memory(z)),
                               ("entropy", -(weights * weights.clamp_min(1e-12).log()).sum(-1)),
                               ("slot", weights.argmax(-1))):
                parts[key].append(value)
    t = {k: torch.cat(v) for k, v in parts.items()}

    def mean_cos(v: torch.Tensor) -> float:
        v = F.normalize(v, dim=1)
        return float((v @ v.T).mean())

    print(f"{run} ({'initialisation' if init else 'last checkpoint'}), {len(t['z'])} clips")
    print(f"mean pairwise cosine: z {mean_cos(t['z']):.2f}, query {mean_cos(t['query']):.2f}")
    print(f"addressing: exp(entropy) {float(t['entropy'].exp().mean()):.1f} of {weights.shape[1]} slots, "
          f"{t['slot'].unique().numel()} distinct most-weighted slots")
    print("effective rank: " + ", ".join(f"{k} {float(collapse_stats(t[k])['effective_rank']):.1f}"
                                         for k in ("embedding", "z", "prediction")))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), "--init" in sys.argv[2:])
