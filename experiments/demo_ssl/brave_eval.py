"""python brave_eval.py RUN_DIR DATA: SVM (BraVe protocol, geometry of the tiny narrow view) pretrained vs random."""
import sys, json
from pathlib import Path
import torch
torch.set_num_threads(2)
from vidssl.eval.features import load_eval_encoder, open_dataset, get_protocol, extract_features
from vidssl.eval.svm import evaluate_svm
from vidssl.config import load_yaml
run, data = sys.argv[1:3]
m = load_yaml(Path(run) / "config.yaml")["method"]
proto = get_protocol("brave", num_frames=m["num_frames"], stride=m["stride"], canvas=(m["canvas"], m["canvas"]),
                     crop_size=m["crop_size"], temporal_clips=2, spatial_crops=1, train_passes=2)
man = open_dataset(data)
pre, pinfo = load_eval_encoder(run)
rnd, rinfo = load_eval_encoder(backbone=pre.backbone_name, backbone_kwargs=dict(pre.backbone_kwargs or {}), seed=0)
out = {}
for name, (enc, info) in {"pre": (pre, pinfo), "rnd": (rnd, rinfo)}.items():
    kw = dict(cache_dir=None, device="cpu", batch_size=16, num_workers=2, seed=0, progress=False)
    tr = extract_features(enc, info, man, proto, "train", 1, passes=proto.train_passes, **kw)
    te = extract_features(enc, info, man, proto, "test", 1, **kw)
    res = evaluate_svm(tr.features, tr.labels, te.features, te.labels, C=[1e-4, 1e-2, 1.0], num_classes=10)
    out[name] = {f"C={r.C}" if hasattr(r, "C") else str(i): round(r.top1, 3) for i, r in enumerate(res)}
print(json.dumps({"run": run, **out}))
