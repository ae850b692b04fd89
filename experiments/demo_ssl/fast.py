"""Plain-PyTorch pretext lab: python fast.py LOSS STEPS [key=value ...] -> JSON line (probe pre vs rnd).

LOSS: sup | nce | rev2 (own reversed clip as the only negative) | nce_rev (in-batch + reversed)
Fast iteration on pretext design outside Lightning; the winner is ported into vidssl.methods.
"""
import json, os, sys, time, copy
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(2)
import lab
from vidssl.models import build_random_encoder
from vidssl.data import transforms as t

loss_name, steps = sys.argv[1], int(sys.argv[2])
kw = dict(a.split("=", 1) for a in sys.argv[3:])
B = int(kw.get("bs", 32)); lr = float(kw.get("lr", 1e-3)); tau = float(kw.get("tau", 0.1))
width = int(kw.get("width", 8)); frames = int(kw.get("frames", 8)); stride = int(kw.get("stride", 3))
seed = int(kw.get("seed", 0)); aug_on = kw.get("aug", "1") == "1"; wrev = float(kw.get("wrev", 1.0)); diff = kw.get("diff", "0") == "1"
variant = {"size": 1.4, "speed": 2.0, "bgk": 0.5}
vids, labels, groups = lab.build(variant, "v_bgk0.5_size1.4_speed2.0")
tr = lab.split(groups)
torch.manual_seed(seed)
enc = build_random_encoder("r3d18_fgkv_tiny", width=width, residual_frames=diff)
rnd = copy.deepcopy(enc)
D = enc.embed_dim
proj = nn.Sequential(nn.Linear(D, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 128))
head = nn.Linear(D, 10)
params = list(enc.parameters()) + list(proj.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
ds = lab.MemDataset([v for v, k in zip(vids, tr) if k], labels[tr], frames, stride, 2)
aug = t.Compose([t.ToFloatClip(), t.RandomResizedCrop(32, scale=(0.4, 1.0), ratio=(0.75, 1.333)),
                 t.ColorJitter(0.6, 0.6, 0.6, 0.15, p=0.8), t.RandomGrayscale(0.2), t.Normalize(0.45, 0.225)])
if not aug_on:
    aug = t.Compose([t.ToFloatClip(), t.CenterCrop(32), t.Normalize(0.45, 0.225)])
x = lab.eval_clips(vids, frames, stride)
rng = np.random.default_rng(seed); t0 = time.time(); hist = []
def emb(v):
    return F.normalize(proj(enc(v)), dim=1)
for step in range(1, steps + 1):
    idx = rng.choice(len(ds), B, replace=False); ds.epoch = step
    b = [ds[i] for i in idx]
    c = torch.stack([torch.stack([i["clips"]["clip_1"], i["clips"]["clip_2"]]) for i in b])  # B,2,T,H,W,C
    y = torch.stack([i["label"] for i in b])
    enc.train(); proj.train()
    a, p = aug(c[:, 0]), aug(c[:, 1])  # B,C,T,H,W
    if loss_name == "sup":
        loss = F.cross_entropy(head(enc(a)), y)
    else:
        za, zp = emb(a), emb(p)
        target = torch.arange(B)
        if loss_name == "nce":
            loss = F.cross_entropy(za @ zp.t() / tau, target) + F.cross_entropy(zp @ za.t() / tau, target)
        elif loss_name in ("rev2", "nce_rev"):
            zr = emb(p.flip(2))
            pos = (za * zp).sum(1); neg = (za * zr).sum(1)
            l2 = F.cross_entropy(torch.stack([pos, neg], 1) / tau, torch.zeros(B, dtype=torch.long))
            loss = wrev * l2
            if loss_name == "nce_rev":
                loss = loss + F.cross_entropy(za @ torch.cat([zp, zr]).t() / tau, target)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 50 == 0:
        hist.append(round(loss.item(), 3))
f = lab.feats(enc, x); fr = lab.feats(rnd, x)
res = {"loss": loss_name, "steps": steps, "kw": kw, "s": round(time.time() - t0),
       "pre": round(lab.probe(f[tr], labels[tr], f[~tr], labels[~tr]), 3),
       "rnd": round(lab.probe(fr[tr], labels[tr], fr[~tr], labels[~tr]), 3), "hist": hist}
print(json.dumps(res), flush=True)
open("/tmp/h/fast.jsonl", "a").write(json.dumps(res) + "\n")
