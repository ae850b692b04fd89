"""The input contract of an encoder: how it must be fed, saved with every encoder and checkpoint.

An encoder's BatchNorm statistics and weights only mean something for inputs prepared the way
pretraining prepared them. :class:`InputContract` records that: modality, value range,
per-channel mean/std, clip length and rate, crop, the input transform the backbone applies
(e.g. residual frames) and the view protocol the method evaluates with. ``vidssl extract`` and
every ``vidssl eval`` protocol read it instead of guessing from a protocol name (a BraVe encoder
fed ρBYOL's mean/std, or a ρBYOL encoder fed BraVe's /255-only views, was the bug it fixes).

Stored as JSON: in ``encoder.safetensors`` metadata (key ``input_contract``) and in checkpoints
(``hyper_parameters["encoder"]["contract"]``).

Example:
    >>> c = InputContract(modality="video", mean=(0.45,) * 3, std=(0.225,) * 3, num_frames=16, stride=4,
    ...                   crop_size=112, canvas=128, eval_views="fgkvmem")
    >>> InputContract.from_json(c.to_json()) == c
    True
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

from vidssl.errors import UserError

__all__ = ["InputContract"]


@dataclass(frozen=True)
class InputContract:
    """How an encoder's input is prepared.

    Attributes:
        modality: ``"video"`` (RGB frames), ``"flow"``, ``"audio"`` or ``"image"``.
        value_range: pixel values are scaled to this range before normalisation ((0, 1): /255).
        mean, std: per-channel normalisation after scaling (``(x - mean) / std``).
        num_frames: T of a pretraining clip.
        stride: source frames between clip frames (None when ``fps`` is set).
        fps: frame rate of the clip (None when ``stride`` is set).
        crop_size: side of the square crop the encoder saw.
        canvas: short side the frames were fitted to before cropping.
        input_transform: what the backbone does to its input first (``"residual_frames"`` or "").
        eval_views: the view protocol the method evaluates with (``vidssl.eval.features.PROTOCOLS``).
    """

    modality: Literal["video", "flow", "audio", "image"] = "video"
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    num_frames: int = 16
    stride: int | None = None
    fps: float | None = None
    crop_size: int = 112
    canvas: int = 128
    input_transform: str = ""
    eval_views: str = ""

    def __post_init__(self):
        object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != len(self.std):
            raise UserError(f"input contract: mean {self.mean} and std {self.std} differ in length")
        if any(s <= 0 for s in self.std):
            raise UserError(f"input contract: std must be > 0, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InputContract":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"input contract has unknown fields {sorted(unknown)} (written by a newer vidssl?)")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "InputContract":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"input contract is not valid JSON: {exc}") from None
        return cls.from_dict(data)
