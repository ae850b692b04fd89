"""In-memory variants of the embedded dataset for the demo experiments (see README.md here)."""
from pathlib import Path
import numpy as np, torch, cv2
from vidssl.data import demo as D

CANVAS = 40

def render(task, variant):
    size = task.size; width = size.resolution
    rng = np.random.default_rng([task.seed, 2, task.class_index, task.group, task.clip])
    n = int(round(D._uniform(rng, size.seconds) * D.FPS))
    bg = D._group_background(task.seed, task.group, width)
    speed = variant.get("speed", 1.0)
    # render a longer trajectory time-scaled: sample with speed factor
    traj = D.MOTIONS[task.class_name](rng, int(np.ceil(n * speed)) + 1, width)
    if speed != 1.0:
        idx = np.minimum((np.arange(n) * speed).round().astype(int), len(traj.angle) - 1)
        traj = D.Trajectory(traj.centre[idx], traj.angle[idx], traj.size[idx], traj.events, traj.wrap)
    if "size" in variant:
        traj = D.Trajectory(traj.centre, traj.angle, traj.size * variant["size"], traj.events, traj.wrap)
    if "bgk" in variant:
        img = bg.image; m = img.mean((0, 1), keepdims=True)
        bg = D.Background(m + variant["bgk"] * (img - m), bg.base_colour)
    seg = variant.get("segment")  # frames per appearance segment (None = one appearance)
    if not seg:
        digit, sprite = D._random_digit(rng)
        colour = D._contrasting_colour(rng, bg.base_colour)
        frames = D.render_frames(traj, sprite, colour, bg.image)
    else:
        frames = []
        t = 0
        while t < n:
            L = int(rng.integers(seg[0], seg[1] + 1))
            sl = slice(t, min(n, t + L))
            part = D.Trajectory(traj.centre[sl], traj.angle[sl], traj.size[sl], traj.events, traj.wrap)
            if variant.get("bgseg"):
                bg = D._make_background(np.random.default_rng([task.seed, 1, task.group, int(rng.integers(variant["bgseg"]))]), width)
                if "bgk" in variant:
                    img = bg.image; mm = img.mean((0, 1), keepdims=True)
                    bg = D.Background(mm + variant["bgk"] * (img - mm), bg.base_colour)
            digit, sprite = D._random_digit(rng)
            colour = D._contrasting_colour(rng, bg.base_colour)
            frames.append(D.render_frames(part, sprite, colour, bg.image))
            t += L
        frames = np.concatenate(frames)
    small = np.stack([cv2.resize(f, (CANVAS, CANVAS), interpolation=cv2.INTER_AREA) for f in frames])
    return small

def build(variant, name):
    out = Path(f"/tmp/h/{name}.npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        z = np.load(out, allow_pickle=True); return list(z["videos"]), z["labels"], z["groups"]
    size = D.DEMO_SIZES["default"]
    tasks = [D.DemoClip("", c, g, k, 0, size) for c in range(10) for g in range(1, size.num_groups + 1)
             for k in range(1, size.clips_per_group + 1)]
    import multiprocessing as mp
    with mp.get_context("fork").Pool(2) as pool:
        vids = pool.starmap(render, [(t, variant) for t in tasks])
    labels = np.array([t.class_index for t in tasks]); groups = np.array([t.group for t in tasks])
    arr = np.empty(len(vids), object); arr[:] = vids
    np.savez(out, videos=arr, labels=labels, groups=groups)
    return vids, labels, groups

def split(groups, fold=1):
    test = set(D.held_out_groups(25, fold))
    return np.array([g not in test for g in groups])

class MemDataset(torch.utils.data.Dataset):
    def __init__(self, vids, labels, frames, stride, rho, seed=0):
        self.v, self.l, self.f, self.s, self.rho, self.seed, self.epoch = vids, labels, frames, stride, rho, seed, 0
    def __len__(self): return len(self.v)
    def set_epoch(self, e): self.epoch = e
    def failures(self): return {}
    def note_batch(self, b): pass
    def __getitem__(self, i):
        epoch, i = divmod(int(i), len(self.v)) if int(i) >= len(self.v) else (self.epoch, int(i))  # StreamSampler's pass
        rng = np.random.default_rng((self.seed, epoch, int(i)))
        v = self.v[i]; span = (self.f - 1) * self.s + 1
        clips = []
        for _ in range(self.rho):
            st = int(rng.integers(0, max(1, len(v) - span + 1)))
            idx = (st + np.arange(self.f) * self.s) % len(v)
            clips.append(v[idx])
        return {"clips": {f"clip_{k + 1}": torch.from_numpy(c) for k, c in enumerate(clips)},
                "label": torch.tensor(int(self.l[i])), "index": torch.tensor(int(i)), "skipped": ()}

def eval_clips(vids, frames, stride, k=2, crop=32):
    span = (frames - 1) * stride + 1; out = []
    for v in vids:
        starts = np.linspace(0, max(0, len(v) - span), k).round().astype(int)
        cs = [v[(s + np.arange(frames) * stride) % len(v)] for s in starts]
        out.append(np.stack(cs))
    x = torch.from_numpy(np.stack(out))  # N,k,T,H,W,C
    o = (CANVAS - crop) // 2
    x = x[:, :, :, o:o + crop, o:o + crop]
    x = x.permute(0, 1, 5, 2, 3, 4).float().div(255).sub(0.45).div(0.225)  # N,k,C,T,H,W
    return x

@torch.no_grad()
def feats(enc, x):
    enc.eval(); N, k = x.shape[:2]; out = []
    for i in range(0, N * k, 64):
        out.append(enc(x.flatten(0, 1)[i:i + 64]))
    return torch.cat(out).view(N, k, -1).mean(1).numpy()

def probe(ftr, ytr, fte, yte):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    sc = StandardScaler().fit(ftr)
    clf = LogisticRegression(C=0.1, max_iter=2000).fit(sc.transform(ftr), ytr)
    return float((clf.predict(sc.transform(fte)) == yte).mean())
