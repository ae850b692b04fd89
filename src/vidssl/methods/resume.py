"""``--resume``: continue a run with the config it was started with, not today's command line.

A run directory holds its resolved ``config.yaml``. Resuming reads it (:func:`resume_config`);
``key=value`` overrides given at resume time go on top and are listed, but an override that
changes what the run learns from or what it learns — the data, the method/model, the seed that
draws the data — is refused (:func:`check_resume_changes`): the checkpoint's weights, optimiser
state and data position belong to the saved config. Changing how long or where the run goes
(``trainer.max_steps``, ``trainer.devices``, ``data.num_workers``, ``optim.*`` …) is allowed.

Why: with the README's resume example (which did not repeat ``data.root=``) the run silently
generated a new demo dataset and went on training on it (issue 16, case 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vidssl.config import load_yaml, to_dict
from vidssl.errors import ConfigError
from vidssl.methods.config import PretrainConfig, apply_pretrain_overrides, pretrain_config_from_dict

__all__ = ["resume_config", "check_resume_changes", "changed_keys", "LOCKED_PREFIXES", "ALLOWED_KEYS"]

#: Keys under these prefixes decide the data and the model: a resumed run must keep them.
LOCKED_PREFIXES = ("method.", "data.", "streams.", "trainer.seed",
                   "trainer.accumulate_grad_batches")  # the data position counts batches per optimiser step
#: Exceptions: how the same data is loaded, not which data.
ALLOWED_KEYS = ("data.num_workers",)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: value}
    return {prefix[:-1]: value}


def changed_keys(before: PretrainConfig | dict, after: PretrainConfig | dict) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose value differs: ``{key: (before, after)}``."""
    a, b = _flat(to_dict(before)), _flat(to_dict(after))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _locked(key: str) -> bool:
    if key.startswith(ALLOWED_KEYS):
        return False
    if key.startswith("streams.") and key.endswith(".num_workers"):
        return False
    return key.startswith(LOCKED_PREFIXES)


def check_resume_changes(saved: PretrainConfig | dict, cfg: PretrainConfig, where: Path) -> dict[str, tuple[Any, Any]]:
    """The changes of ``cfg`` against the run's saved config; a :class:`ConfigError` naming them when any
    changes the data or the model."""
    changes = changed_keys(saved, cfg)
    locked = {k: v for k, v in changes.items() if _locked(k)}
    if locked:
        listed = ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in list(locked.items())[:4])
        raise ConfigError(f"--resume cannot change the data or the model of the run in {where}: {listed}"
                          f"{' ...' if len(locked) > 4 else ''}; start a new run with another --out instead")
    return changes


def absolute_roots(cfg: PretrainConfig) -> PretrainConfig:
    """A copy of ``cfg`` whose data roots are absolute paths (``~`` expanded): a run's config.yaml
    names its data wherever a resume is started from."""
    import dataclasses

    def fix(data):
        return dataclasses.replace(data, root=str(Path(data.root).expanduser().absolute()))

    return dataclasses.replace(cfg, data=fix(cfg.data), streams={k: fix(v) for k, v in cfg.streams.items()})


def saved_config(out: str | Path) -> PretrainConfig:
    """The resolved config a run directory was started with (``OUT/config.yaml``)."""
    path = Path(out).expanduser() / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"--resume: {path} does not exist (is {out} a `vidssl pretrain` run directory?)")
    try:
        return absolute_roots(pretrain_config_from_dict(load_yaml(path)))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def resume_config(out: str | Path, overrides: list[str] | None = None,
                  preset_method: str | None = None) -> tuple[PretrainConfig, dict[str, tuple[Any, Any]]]:
    """The config to resume the run in ``out`` with: its saved ``config.yaml`` + ``overrides``.

    Returns ``(config, changes)`` where ``changes`` lists what the overrides changed. An override
    of the data or the model, or a ``--preset`` of another method (``preset_method``), is a
    :class:`ConfigError`.
    """
    saved = saved_config(out)
    if preset_method is not None and preset_method != saved.method.name:
        raise ConfigError(f"--resume: the run in {out} trains '{saved.method.name}', not '{preset_method}' "
                          "(drop --preset: a resumed run reads its own config.yaml)")
    cfg = absolute_roots(apply_pretrain_overrides(saved, list(overrides or [])))
    return cfg, check_resume_changes(saved, cfg, Path(out))
