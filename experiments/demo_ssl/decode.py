"""python decode.py DATA_ROOT NAME: decode a generated demo dataset to /tmp/h/NAME.npz (40² frames) for run.py.

run.py then trains on it with VARIANT {"decoded": N} when NAME is v_decodedN."""
import sys, numpy as np, av, cv2
from pathlib import Path
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lab
from vidssl.data import demo as D
root = Path(sys.argv[1]); name = sys.argv[2]
size = D.DEMO_SIZES["default"]
vids, labels, groups = [], [], []
for c, cname in enumerate(D.CLASS_NAMES):
    files = sorted((root / cname).glob("*.mp4")) or sorted((root / cname).glob("*.avi"))
    for f in files:
        with av.open(str(f)) as con:
            fr = [cv2.resize(x.to_ndarray(format="rgb24"), (40, 40), interpolation=cv2.INTER_AREA) for x in con.decode(video=0)]
        vids.append(np.stack(fr)); labels.append(c)
        g = int(f.stem.split("_g")[1].split("_")[0]); groups.append(g)
arr = np.empty(len(vids), object); arr[:] = vids
np.savez(f"/tmp/h/{name}.npz", videos=arr, labels=np.array(labels), groups=np.array(groups))
print(len(vids), np.bincount(labels), sorted(set(groups))[:5])
