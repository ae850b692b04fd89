"""Supervised learnability: python sup.py VARIANT_JSON frames stride width steps [backbone].

Environment: LR (AdamW lr, default 3e-3), AUG=0 (centre crop only), PROBE=1 (also probe the
frozen features of the trained encoder, the check that the probe itself works).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np, torch, torch.nn.functional as F
torch.set_num_threads(2)
import lab
from vidssl.models import build_random_encoder
from vidssl.data import transforms as t
variant = json.loads(sys.argv[1]); frames, stride, width, steps = map(int, sys.argv[2:6])
backbone = sys.argv[6] if len(sys.argv) > 6 else "r3d18_fgkv_tiny"
vname = "v_" + "_".join(f"{k}{v}" for k, v in sorted(variant.items())).replace(" ", "").replace(",", "-").replace("[", "").replace("]", "") if variant else "v_base"
vids, labels, groups = lab.build(variant, vname)
tr = lab.split(groups)
torch.manual_seed(0)
enc = build_random_encoder(backbone, width=width)
head = torch.nn.Linear(enc.embed_dim, 10)
params = list(enc.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=float(os.environ.get("LR", "3e-3")), weight_decay=0.05)
ds = lab.MemDataset([v for v, k in zip(vids, tr) if k], labels[tr], frames, stride, 1)
aug = t.Compose([t.ToFloatClip(), t.RandomResizedCrop(32, scale=(0.4, 1.0), ratio=(0.75, 1.333)),
                 t.ColorJitter(0.6, 0.6, 0.6, 0.15, p=0.8), t.RandomGrayscale(0.2), t.Normalize(0.45, 0.225)])
if os.environ.get("AUG") == "0":
    aug = t.Compose([t.ToFloatClip(), t.CenterCrop(32), t.Normalize(0.45, 0.225)])
x = lab.eval_clips(vids, frames, stride)
xte, yte = x[~tr], labels[~tr]
rng = np.random.default_rng(0); t0 = time.time()
for step in range(1, steps + 1):
    idx = rng.choice(len(ds), 32, replace=False)
    ds.epoch = step
    b = [ds[i] for i in idx]
    clips = torch.stack([i["clips"]["clip_1"] for i in b]); y = torch.stack([i["label"] for i in b])
    enc.train(); loss = F.cross_entropy(head(enc(aug(clips))), y)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 50 == 0:
        enc.eval()
        with torch.no_grad():
            logits = torch.cat([head(enc(xte[i:i+64].flatten(0, 1))).view(-1, 2, 10).mean(1) for i in range(0, len(xte), 64)])
        acc = (logits.argmax(1).numpy() == yte).mean()
        print(f"step {step} loss {loss.item():.3f} test {acc:.3f} t {time.time()-t0:.0f}s", flush=True)
if os.environ.get("PROBE") == "1":  # the probe's sanity check: frozen features of this supervised encoder
    f = lab.feats(enc, x)
    print("frozen-feature logistic probe of the supervised encoder:", lab.probe(f[tr], labels[tr], f[~tr], labels[~tr]))
