"""View protocols: how a video becomes the clips an encoder sees at evaluation time.

A :class:`ViewProtocol` fixes K temporal clips (uniformly spaced starts,
:class:`vidssl.data.sampling.UniformClipsPlan`) × S spatial crops (left/centre/right, or BraVe's
diagonal), the random train view of augmented passes, and the input normalisation.

:func:`protocol_for` is the one place that decides which protocol an encoder is evaluated with:
``vidssl extract``, every ``vidssl eval`` protocol, fine-tuning and ``vidssl demo`` call it. An
encoder that carries an input contract (:class:`vidssl.models.contract.InputContract`) is fed the
way it was pretrained:

- the view protocol defaults to ``contract.eval_views`` (an explicit ``--views`` picks another clip
  geometry);
- the normalisation (mean/std, and the value range) ALWAYS comes from the contract;
- for the ``demo``/``demo_quick`` protocols the clip geometry (frames, stride, canvas, crop) comes
  from the contract too;
- a contract for a non-video modality is a :class:`~vidssl.errors.UserError`.

Without a contract (random-init encoders, files written before contracts) the named protocol is
used as it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch

from vidssl.errors import ConfigError, UserError

CropLayout = Literal["long_side", "diagonal"]


# ----------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class ViewProtocol:
    """How clips are taken from a video for feature extraction.

    Attributes:
        num_frames, stride: T frames, every ``stride``-th source frame.
        fps: sample the T frames at this rate instead of every ``stride``-th source frame (the seeds
            resample: BraVe to 25 fps, PySlowFast to 30 fps), so a clip spans the same seconds at any
            source frame rate; None: use ``stride``.
        canvas: (H, W) the loader resizes (short side) and centre-crops each frame to.
        crop_size: side of the square spatial crops taken from the canvas.
        temporal_clips: K uniformly spaced clips per video (test views).
        spatial_crops: S crops per clip (test views; 1 or 3 for ``"long_side"``).
        crop_layout: ``"long_side"``: left/centre/right along the long side, centred on the short
            side (GDT, SlowFast); ``"diagonal"``: both offsets linearly spaced and zipped (BraVe, A9).
        train_augment: key of :data:`TRAIN_AUGMENTS`, the random view of augmented train passes
            (SVM / linear train features) and of fine-tuning.
        train_passes: default N augmented passes over the train set (one random clip per video per
            pass) for the SVM / linear train features; 0 = use the K×S test views.
        mean, std: per-channel normalisation after scaling to [0, 1].
    """

    name: str
    num_frames: int
    stride: int
    canvas: tuple[int, int]
    crop_size: int
    temporal_clips: int = 10
    spatial_crops: int = 3
    crop_layout: CropLayout = "long_side"
    train_augment: str = "fgkvmem"
    train_passes: int = 0
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    fps: float | None = None

    @property
    def views_per_video(self) -> int:
        return self.temporal_clips * self.spatial_crops

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Protocols of the seeds (dimensions from the reference specs) and the embedded dataset's.
#: Temporal starts are ``round(linspace(0, len - span, K))`` for all of them (BraVe's rule; GDT's
#: ``int(delta·k/K)`` never reaches the last frame — a sub-clip difference).
PROTOCOLS: dict[str, ViewProtocol] = {
    # BraVe A9: 32 frames step 2, short side 256, 10 × 3 diagonal 224 crops, /255 only; train = 10 passes.
    # Every 2nd frame at 25 fps (12.5 frames/s, 2.56 s) whatever the source rate, as BraVe resamples.
    "brave": ViewProtocol("brave", 32, 2, (256, 340), 224, 10, 3, "diagonal", "brave", train_passes=10,
                          mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fps=12.5),
    # GDT/STiCA Part D: 32 frames at 30 fps, 128 crops, 10 × 3 left/centre/right. The seed jitters the
    # test short side in U(128,160) and colour-jitters test clips (a bug); we use a fixed 128 canvas.
    "gdt": ViewProtocol("gdt", 32, 1, (128, 170), 128, 10, 3, "long_side", "gdt", fps=30.0),
    # FGKVMemPred §2.8: 16 frames stride 4, 112 crops, 10 × 3 (the paper's 3 spatial crops; the
    # seed's code took random crops). Stride 4 at PySlowFast's TARGET_FPS 30 (7.5 frames/s, 2.13 s).
    "fgkvmem": ViewProtocol("fgkvmem", 16, 4, (128, 170), 112, 10, 3, "long_side", "fgkvmem", fps=7.5),
    # Embedded dataset (64×64 square videos, 25 fps), CPU-sized: 2 temporal clips × 1 centre crop (3 crops
    # of a square frame differ by a few pixels), train features from the same views (no augmented passes).
    "demo": ViewProtocol("demo", 8, 2, (64, 64), 56, 2, 1, "long_side", "demo", train_passes=0),
    # BEVT fine-tuning (bassl-fgkvmem-bevt.md §3.9): 32 frames every 2nd, 224 crops, ImageNet mean/std; K400
    # tests 4 × 3 crops, SSv2 1 × 3. Departures: the seed tests at a 224 short side (here the 256 canvas),
    # averages softmax probabilities (here logits) and samples SSv2 TSN-style (here every 2nd frame).
    "bevt_k400": ViewProtocol("bevt_k400", 32, 2, (256, 340), 224, 4, 3, "long_side", "bevt_k400",
                              mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    "bevt_ssv2": ViewProtocol("bevt_ssv2", 32, 2, (256, 340), 224, 1, 3, "long_side", "bevt_ssv2",
                              mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    # Fastest: 1 centre view (tests, `vidssl demo --quick`).
    "demo_quick": ViewProtocol("demo_quick", 8, 2, (64, 64), 56, 1, 1, "long_side", "demo", train_passes=1),
}

#: Protocols whose clip geometry follows the encoder's contract (the embedded dataset's, sized to the encoder).
CONTRACT_GEOMETRY = ("demo", "demo_quick")


def get_protocol(name: str, **overrides: Any) -> ViewProtocol:
    """Protocol ``name`` from :data:`PROTOCOLS`, optionally with fields replaced (e.g. ``temporal_clips=1``)."""
    if name not in PROTOCOLS:
        import difflib

        close = difflib.get_close_matches(name, PROTOCOLS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown view protocol '{name}'{hint}; known: {', '.join(PROTOCOLS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    protocol = dataclasses.replace(PROTOCOLS[name], **overrides) if overrides else PROTOCOLS[name]
    if protocol.crop_layout == "long_side" and protocol.spatial_crops not in (1, 3):
        raise ConfigError(f"the long_side crop layout takes 1 or 3 spatial crops, got {protocol.spatial_crops}")
    if protocol.crop_size > min(protocol.canvas):
        raise ConfigError(f"crop {protocol.crop_size} does not fit the {protocol.canvas[0]}x{protocol.canvas[1]} canvas")
    return protocol


# ----------------------------------------------------------------------------- the encoder's contract
@dataclass(frozen=True)
class ProtocolChoice:
    """The protocol an encoder is evaluated with, and why.

    Attributes:
        protocol: the resolved :class:`ViewProtocol` (normalisation from the contract when there is one).
        contract: the encoder's :class:`~vidssl.models.contract.InputContract`, or None.
        views_from: where the protocol name came from: ``"--views"``, ``"contract"`` or ``"default"``.
        notes: what the contract changed in a protocol the user named (for the report).
    """

    protocol: ViewProtocol
    contract: Any = None
    views_from: str = "default"
    notes: tuple[str, ...] = ()

    def record(self) -> dict[str, Any]:
        """What report.json / meta.json say about it: ``input_contract`` (dict or ``"none"``), ``views_from``, ``notes``."""
        return {"input_contract": self.contract.to_dict() if self.contract is not None else "none",
                "views_from": self.views_from, "notes": list(self.notes)}


def contract_of(encoder: Any):
    """The input contract of ``encoder`` (a module with ``input_contract``, a contract itself, or None)."""
    from vidssl.models.contract import InputContract

    if encoder is None or isinstance(encoder, InputContract):
        return encoder
    return getattr(encoder, "input_contract", None)


def contract_normalisation(contract) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The contract's ``(mean, std)`` for pixels scaled to [0, 1] (how the eval transforms scale them).

    A contract with value range [a, b] feeds ``x = a + (b - a)·x01``; ``(x - m)/s`` equals
    ``(x01 - (m - a)/(b - a)) / (s/(b - a))``. One-channel values are repeated for RGB.
    """
    low, high = contract.value_range
    if high <= low:
        raise UserError(f"input contract: value_range {contract.value_range} is empty")
    mean, std = tuple(contract.mean), tuple(contract.std)
    if len(mean) == 1:
        mean, std = mean * 3, std * 3
    if len(mean) != 3:
        raise UserError(f"input contract: a video encoder takes 3 (RGB) channels, the contract gives mean {mean}")
    scale = high - low
    return (tuple((m - low) / scale for m in mean), tuple(s / scale for s in std))


def protocol_for(encoder: Any, views: str | None = None, *, default: str = "fgkvmem", **overrides: Any) -> ProtocolChoice:
    """The view protocol to evaluate ``encoder`` with (see the module docstring for the rules).

    Args:
        encoder: a module (its ``input_contract`` is read), an ``InputContract``, or None (no contract).
        views: a protocol name the user asked for (``--views``); None: the contract's ``eval_views``,
            else ``default``.
        default: the protocol without a contract (or with a contract that names none).
        overrides: fields of :class:`ViewProtocol` to replace (e.g. ``temporal_clips=1``; None = keep);
            they are applied last and may not set ``mean``/``std`` when there is a contract.
    """
    contract = contract_of(encoder)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if contract is None:
        name = views or default
        return ProtocolChoice(get_protocol(name, **overrides), None, "--views" if views else "default")
    if contract.modality != "video":
        raise UserError(f"the encoder's input contract is for '{contract.modality}' input; vidssl extract/eval "
                        "evaluate video encoders on RGB clips only")
    if {"mean", "std"} & set(overrides):
        raise UserError("the encoder's input contract fixes the normalisation (mean/std); it cannot be overridden")
    if views:
        name, views_from = views, "--views"
    elif contract.eval_views:
        name, views_from = contract.eval_views, "contract"
    else:
        name, views_from = default, "default"
    if name not in PROTOCOLS and views_from == "contract":
        raise UserError(f"the encoder's input contract names view protocol '{name}', unknown to this vidssl "
                        f"(known: {', '.join(PROTOCOLS)}); pass --views NAME")
    named = get_protocol(name)
    mean, std = contract_normalisation(contract)
    notes = []
    if views_from == "--views" and (named.mean, named.std) != (mean, std):
        notes.append(f"--views {name} normalises with mean {_short(named.mean)} / std {_short(named.std)}; the "
                     f"encoder's input contract wins: mean {_short(mean)} / std {_short(std)}")
    changes: dict[str, Any] = {"mean": mean, "std": std}
    if name in CONTRACT_GEOMETRY:
        changes.update(num_frames=contract.num_frames, canvas=(contract.canvas, contract.canvas),
                       crop_size=contract.crop_size)
        if contract.fps is not None:
            changes["fps"] = contract.fps
        elif contract.stride is not None:
            changes.update(stride=contract.stride, fps=None)
    return ProtocolChoice(get_protocol(name, **{**changes, **overrides}), contract, views_from, tuple(notes))


def _short(values) -> str:
    values = tuple(round(float(v), 4) for v in values)
    return f"{values[0]:g}" if len(set(values)) == 1 else "(" + ", ".join(f"{v:g}" for v in values) + ")"


# ----------------------------------------------------------------------------- views on the device
def eval_views(protocol: ViewProtocol) -> torch.nn.Module:
    """uint8 ``B×K×T×H×W×C`` -> float ``B×(K·S)×C×T×crop×crop`` (view ``k·S + s``), normalised."""
    from vidssl.data.transforms import eval_transform

    return eval_transform(protocol.crop_size, protocol.spatial_crops, protocol.crop_layout,
                          mean=protocol.mean, std=protocol.std)


def _brave_train_view(protocol: ViewProtocol):
    # BraVe A9 train clips: random crop (area [0.3, 1], aspect [0.5, 2]), flip 0.5, colour p 0.8,
    # colour drop p 0.2; no blur, no RandConv.
    from vidssl.data import transforms as T

    return [T.RandomResizedCrop(protocol.crop_size, scale=(0.3, 1.0), ratio=(0.5, 2.0)), T.RandomHorizontalFlip(0.5),
            T.BraveColorAugment(p=0.8), T.RandomGrayscale(0.2)]


def _gdt_train_view(protocol: ViewProtocol):
    # GDT fine-tuning (Part D): RandomResizedCrop (0.14, 1), flip 0.5, colour jitter 0.4/0.4/0.4 with p 0.8.
    from vidssl.data import transforms as T

    return [T.RandomResizedCrop(protocol.crop_size, scale=(0.14, 1.0)), T.RandomHorizontalFlip(0.5),
            T.ColorJitter(0.4, 0.4, 0.4, 0.0, p=0.8)]


def _fgkvmem_train_view(protocol: ViewProtocol):
    # FGKVMemPred linear/fine-tune (§2.6): short side jittered in [128, 160], then a random 112 crop;
    # here a square random crop of area (128/160)²..1 of the canvas resized to the crop size (the same
    # scale range); grayscale 0.2 then ColorJitter(0.4, 0.4, 0.4, 0.1) always; flip 0.5.
    from vidssl.data import transforms as T

    return [T.RandomResizedCrop(protocol.crop_size, scale=((128 / 160) ** 2, 1.0), ratio=(1.0, 1.0)),
            T.RandomHorizontalFlip(0.5), T.RandomGrayscale(0.2), T.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0)]


def _demo_train_view(protocol: ViewProtocol):
    # The embedded dataset's classes include left/right and clockwise/anticlockwise motions: a
    # horizontal flip would turn one class into another, so there is none.
    from vidssl.data import transforms as T

    return [T.RandomResizedCrop(protocol.crop_size, scale=(0.4, 1.0)), T.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)]


def _bevt_k400_train_view(protocol: ViewProtocol):
    # BEVT K400 fine-tuning (§3.9): RandomResizedCrop (area 0.08-1, aspect 3/4-4/3), flip 0.5.
    from vidssl.data import transforms as T

    return [T.RandomResizedCrop(protocol.crop_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)), T.RandomHorizontalFlip(0.5)]


def _bevt_ssv2_train_view(protocol: ViewProtocol, flip_p: float = 0.0):
    # BEVT SSv2 fine-tuning (§3.9; the seed's swin_base_patch244_window1677_bevt_finetune_ssv2.py): the K400
    # crop, no flip, imgaug's RandAugment(n=4, m=7) on the 224 crop, Normalize, then timm's
    # RandomErasing(probability=0.25) with its defaults (1 box, area 0.02-1/3, aspect 0.3-3.3, filled with 0).
    # Departures:
    # - the seed's RandAugment works on uint8 frames; ours works on the [0, 1] floats (see
    #   vidssl.data.transforms.randaugment);
    # - imgaug's RandAugment mirrors half the clips by itself, despite the config's flip_ratio=0, and SSv2
    #   labels name directions. We don't mirror; the "bevt_ssv2_seed" view does, as the seed did;
    # - the erasing runs just before Normalize instead of after it. It writes mean + std·z, which Normalize
    #   turns into the seed's z (0 here), so the clips that come out are the same.
    from vidssl.data import transforms as T

    return [T.RandomResizedCrop(protocol.crop_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
            T.RandAugment(num_ops=4, magnitude=7, flip_p=flip_p),
            T.RandomErasing(p=0.25, mean=protocol.mean, std=protocol.std)]


def _bevt_ssv2_seed_train_view(protocol: ViewProtocol):
    # The seed's SSv2 train view including the flip imgaug's RandAugment adds (p 0.5), as the seed trained.
    return _bevt_ssv2_train_view(protocol, flip_p=0.5)


#: Random train views by name (each a list of float ``B×C×T×H×W`` transforms).
TRAIN_AUGMENTS: dict[str, Callable[[ViewProtocol], list]] = {
    "brave": _brave_train_view,
    "gdt": _gdt_train_view,
    "fgkvmem": _fgkvmem_train_view,
    "demo": _demo_train_view,
    "bevt_k400": _bevt_k400_train_view,
    "bevt_ssv2": _bevt_ssv2_train_view,
    "bevt_ssv2_seed": _bevt_ssv2_seed_train_view,
}


def build_train_augment(protocol: ViewProtocol) -> torch.nn.Module:
    """uint8 ``B×T×H×W×C`` -> float ``B×C×T×crop×crop``: the protocol's random train view, normalised."""
    from vidssl.data import transforms as T

    if protocol.train_augment not in TRAIN_AUGMENTS:
        raise ConfigError(f"unknown train augmentation '{protocol.train_augment}'; known: {', '.join(TRAIN_AUGMENTS)}")
    return T.Compose([T.ToFloatClip(), *TRAIN_AUGMENTS[protocol.train_augment](protocol),
                      T.Normalize(protocol.mean, protocol.std)])
