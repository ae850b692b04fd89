# monkeypatch: BYOL pair loss -> InfoNCE over the batch (MoCo-style keys from the EMA target, in-batch negatives)
import torch, torch.nn.functional as F
from vidssl.methods.byol import BYOL
TAU = float(__import__("os").environ.get("TAU", "0.1"))
def pair_loss(self, online, target):
    q = F.normalize(self.predictor(online["z"]), dim=1); k = F.normalize(target["z"], dim=1)
    logits = q @ k.t() / TAU
    loss = F.cross_entropy(logits, torch.arange(len(q), device=q.device))
    return {"loss": loss, "sim": loss}
BYOL.pair_loss = pair_loss
