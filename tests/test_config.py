"""vidssl.config: strict dataclass configs, overrides and presets."""

from __future__ import annotations

import doctest
from dataclasses import dataclass, field

import pytest

import vidssl.config as config
from vidssl.config import apply_overrides, from_dict, preset_names, preset_path, to_dict
from vidssl.errors import ConfigError


@dataclass
class Optim:
    lr: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    nesterov: bool = False
    milestones: list[int] = field(default_factory=lambda: [6, 10])


@dataclass
class Run:
    name: str = "x"
    steps: int | None = None
    optim: Optim = field(default_factory=Optim)


def test_docstring_examples():
    assert doctest.testmod(config).failed == 0


def test_overrides_are_coerced_to_the_annotated_types():
    cfg = apply_overrides(Run(), ["optim.lr=1e-4", "optim.betas=[0.5, 0.6]", "optim.nesterov=true",
                                  "optim.milestones=3,7", "steps=12"])
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (0.5, 0.6)
    assert cfg.optim.nesterov is True
    assert cfg.optim.milestones == [3, 7]
    assert cfg.steps == 12
    assert apply_overrides(cfg, ["steps=none"]).steps is None


def test_unknown_key_names_it_and_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.nesterv' \(did you mean 'optim\.nesterov'\?\)"):
        apply_overrides(Run(), ["optim.nesterv=1"])
    with pytest.raises(ConfigError, match="unknown config key 'optim.momentum'"):
        from_dict(Run, {"optim": {"momentum": 0.9}})


@pytest.mark.parametrize("override, message", [
    ("optim.lr", "must look like key=value"),
    ("=3", "empty key"),
    ("steps=1.5", "expected int"),
    ("optim.nesterov=maybe", "expected true/false"),
    ("optim.betas=[1, 2, 3]", "expected 2 values"),
])
def test_bad_overrides_say_what_is_wrong(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Run(), [override])


def test_round_trip_through_plain_dicts():
    cfg = apply_overrides(Run(), ["optim.lr=0.5"])
    assert from_dict(Run, to_dict(cfg)) == cfg


def test_presets_are_listed_and_unknown_ones_suggest():
    names = preset_names()
    assert "fgkvmem_kvmem_r3d18_demo_tiny" in names and all(not n.endswith(".yaml") for n in names)
    assert preset_path("fgkvmem_kvmem_r3d18_demo_tiny").is_file()
    with pytest.raises(ConfigError, match="did you mean 'fgkvmem_kvmem_r3d18_demo_tiny'"):
        preset_path("fgkvmem_kvmem_r3d18_demo_tin")
