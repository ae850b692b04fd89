"""python run.py NAME VARIANT_JSON PRESET [overrides...]  -> prints probe acc pretrained vs random"""
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
torch.set_num_threads(int(os.environ.get("NT", "2")))
import lab
if os.environ.get("NCE"): import nce  # noqa: F401
if os.environ.get("REV"): import rev  # noqa: F401
from vidssl.data.module import StreamDataModule
from vidssl.methods.train import load_pretrain_config, pretrain
from vidssl.models import load_encoder, build_random_encoder

tag, variant, preset, *ov = sys.argv[1:]
variant = json.loads(variant)
vname = "v_" + "_".join(f"{k}{v}" for k, v in sorted(variant.items())).replace(" ", "").replace(",", "-").replace("[", "").replace("]", "") if variant else "v_base"
vids, labels, groups = lab.build(variant, vname)
tr = lab.split(groups)
cfg = load_pretrain_config(preset, ["data.root=/tmp/demo", "trainer.progress_bar=false", "data.num_workers=0", *ov])
m = cfg.method
trv = [v for v, t in zip(vids, tr) if t]; trl = labels[tr]
def make_dataset(self, stream):
    return lab.MemDataset(trv, trl, m.num_frames, m.stride, getattr(m, "rho", 2), seed=cfg.trainer.seed)
StreamDataModule.make_dataset = make_dataset  # decoded once, kept in memory
out = f"/tmp/h/runs/{tag}"
shutil.rmtree(out, ignore_errors=True)
t0 = time.time()
pretrain(cfg, out, log=lambda s: None)
t1 = time.time()
enc = load_encoder(f"{out}/encoder.safetensors")
enc = enc[0] if isinstance(enc, tuple) else enc
torch.manual_seed(0); rnd = build_random_encoder(m.backbone, **dict(m.backbone_kwargs))
rnd = rnd[0] if isinstance(rnd, tuple) else rnd
x = lab.eval_clips(vids, m.num_frames, m.stride, crop=m.crop_size)
res = {}
for name, e in (("pre", enc), ("rnd", rnd)):
    f = lab.feats(e, x)
    res[name] = lab.probe(f[tr], labels[tr], f[~tr], labels[~tr])
import csv
rows = list(csv.DictReader(open(f"{out}/metrics.csv")))
pa = [float(r["probe/acc_epoch"]) for r in rows if r.get("probe/acc_epoch")]
print(json.dumps({"tag": tag, "variant": variant, "ov": ov, "train_s": round(t1 - t0), **res,
                  "probe_epoch_acc": [round(a, 2) for a in pa[-3:]]}), flush=True)
