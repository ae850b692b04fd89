"""Patch for run.py (REV=1): InfoNCE with the time-reversed other clip as an extra hard negative (GDT-style)."""
# monkeypatch: ρBYOL compute_loss -> InfoNCE where the time-reversed other clip of the same video is an extra hard negative
import torch, torch.nn.functional as F
from vidssl.methods.byol import BYOL
TAU = 0.1
def compute_loss(self, views, batch):
    keys = [F.normalize(self.target_forward(v)["z"], dim=1) for v in views]
    rkeys = [F.normalize(self.target_forward(v.flip(2))["z"], dim=1) for v in views]
    total, first = 0.0, None
    for k, view in enumerate(views):
        emb = self.encoder(view); first = emb if first is None else first
        q = F.normalize(self.predictor(self.projector(emb)), dim=1)
        j = 1 - k
        logits = torch.cat([q @ keys[j].t(), q @ rkeys[j].t()], dim=1) / TAU
        total = total + F.cross_entropy(logits, torch.arange(len(q), device=q.device))
    return {"loss": total, "embedding": first}
BYOL.compute_loss = compute_loss
