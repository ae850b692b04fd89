"""Self-supervised methods. ``METHODS`` maps a preset's ``method.name`` to its class (a plain dict)."""

from __future__ import annotations

from vidssl.methods.base import SSLMethod
from vidssl.methods.bevt import BEVT
from vidssl.methods.bassl import BaSSL, ShotSimCLR
from vidssl.methods.brave import Brave
from vidssl.methods.byol import BYOL
from vidssl.methods.fgkvmem import FGKVMemPred
from vidssl.methods.gdt import GDT
from vidssl.methods.gdt_text import GDTText
from vidssl.methods.stica import STiCA

METHODS: dict[str, type[SSLMethod]] = {
    "bevt": BEVT,
    "bassl": BaSSL,
    "brave": Brave,
    "byol": BYOL,
    "fgkvmem": FGKVMemPred,
    "gdt": GDT,
    "gdt_text": GDTText,
    "shot_simclr": ShotSimCLR,
    "stica": STiCA,
}

__all__ = ["METHODS", "SSLMethod", "BEVT", "BYOL", "Brave", "FGKVMemPred", "GDT", "GDTText", "STiCA"]
