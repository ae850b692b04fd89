"""Typed configuration: dataclasses, YAML presets and ``key=value`` overrides.

Every configurable object in vidssl declares a dataclass. This module turns plain
dicts (from YAML presets or the command line) into those dataclasses *strictly*:
an unknown key is a :class:`~vidssl.errors.ConfigError` that names the key and
suggests the closest valid one, and values are coerced to the annotated type.

Example (nested dataclasses work the same way, with dotted keys such as ``optim.lr``):
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Optim:
    ...     lr: float = 0.1
    ...     betas: tuple[float, float] = (0.9, 0.999)
    >>> cfg = apply_overrides(Optim(), ["lr=0.5", "betas=[0.8, 0.9]"])
    >>> cfg.lr, cfg.betas
    (0.5, (0.8, 0.9))
    >>> apply_overrides(Optim(), ["lrr=1"])
    Traceback (most recent call last):
    ...
    vidssl.errors.ConfigError: unknown config key 'lrr' (did you mean 'lr'?)

Allowed values are declared next to each field with :func:`checked` (a range, choices or a
pattern) and enforced by :func:`from_dict`, so every command that builds a config refuses an
out-of-range value with a message naming the key:

    >>> @dataclass
    ... class Loader:
    ...     workers: int = checked(2, ge=0)
    >>> from_dict(Loader, {"workers": -1})
    Traceback (most recent call last):
    ...
    vidssl.errors.ConfigError: workers must be >= 0, got -1
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import yaml

from vidssl.errors import ConfigError

T = TypeVar("T")

PRESET_DIR = Path(__file__).parent / "presets"


def _suggest(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert ``value`` to ``annotation`` (a resolved type hint); raise ConfigError if impossible."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        names = [getattr(a, "__name__", str(a)).replace("NoneType", "none") for a in args]
        raise ConfigError(f"{where}: expected {' or '.join(names)}, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {list(args)}{_suggest(str(value), map(str, args))}")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_coerce(v, args[0], where) for v in value)
            if args and len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {list(value)!r}")
            return tuple(_coerce(v, a, where) for v, a in zip(value, args or [Any] * len(value)))
        inner = args[0] if args else Any
        return [_coerce(v, inner, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        inner = _dict_of_dataclass(annotation)
        if inner is not None:
            return {str(k): _coerce(v, inner, f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation in (int, float, str):
        if isinstance(value, str) and annotation is not str:
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                pass
        try:
            if annotation is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if annotation is float and isinstance(value, str):
                return float(value)  # yaml reads "1e-4" as a string
            if annotation is str and not isinstance(value, str):
                return str(value)
            return annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}") from None
    return value


def checked(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, choices: Iterable[Any] | None = None, pattern: str | None = None,
            also: Iterable[Any] = (), default_factory: Any = dataclasses.MISSING, why: str = "") -> Any:
    """A dataclass field whose value must satisfy ``ge``/``gt``/``le`` (numbers), ``choices`` or the
    regular expression ``pattern`` (strings); values in ``also`` are accepted as they are (e.g. -1 for
    "no limit"). ``why`` is added to the error message."""
    rule = {k: v for k, v in dict(ge=ge, gt=gt, le=le, pattern=pattern, why=why).items() if v not in (None, "")}
    if choices is not None:
        rule["choices"] = tuple(choices)
    rule["also"] = tuple(also)
    kwargs = {"default_factory": default_factory} if default_factory is not dataclasses.MISSING else {"default": default}
    return dataclasses.field(metadata={"vidssl_check": rule}, **kwargs)


def check_values(cfg: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` for the first field of dataclass ``cfg`` (not nested ones) whose value
    breaks its :func:`checked` declaration, and for a ``*crop_size`` larger than its ``*canvas``."""
    import re

    for f in dataclasses.fields(cfg):
        rule = f.metadata.get("vidssl_check")
        if not rule:
            continue
        value, key = getattr(cfg, f.name), f"{prefix}.{f.name}" if prefix else f.name
        if value is None or value in rule["also"]:
            continue
        why = f" ({rule['why']})" if rule.get("why") else ""
        also = " or " + " or ".join(map(str, rule["also"])) if rule["also"] else ""
        if "choices" in rule and value not in rule["choices"]:
            raise ConfigError(f"{key}: {value!r} is not one of {list(rule['choices'])}"
                              f"{_suggest(str(value), map(str, rule['choices']))}{why}")
        if "pattern" in rule and not re.fullmatch(rule["pattern"], str(value)):
            raise ConfigError(f"{key}: {value!r} is not valid{why}")
        for name, test, word in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                                 ("le", lambda v, b: v <= b, "<=")):
            if name in rule and isinstance(value, (int, float)) and not test(value, rule[name]):
                raise ConfigError(f"{key} must be {word} {rule[name]:g}{also}, got {value}{why}")
    for f in dataclasses.fields(cfg):  # a crop cannot be larger than the frame it is cut from
        if f.name.endswith("crop_size") and hasattr(cfg, f.name[: -len("crop_size")] + "canvas"):
            canvas_name = f.name[: -len("crop_size")] + "canvas"
            crop, canvas = getattr(cfg, f.name), getattr(cfg, canvas_name)
            if isinstance(crop, int) and isinstance(canvas, int) and crop > canvas:
                where = f"{prefix}." if prefix else ""
                raise ConfigError(f"{where}{f.name}={crop} is larger than {where}{canvas_name}={canvas} "
                                  "(the crop is cut from the canvas)")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (possibly nested) dict, rejecting unknown keys."""
    data = dict(data or {})
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in names:
            full_names = [f"{prefix}.{n}" if prefix else n for n in names]
            raise ConfigError(f"unknown config key '{where}'{_suggest(where, full_names)}")
        kwargs[key] = _coerce(value, hints[key], where)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from None
    check_values(obj, prefix)
    return obj


def to_dict(cfg: Any) -> Any:
    """Dataclass (nested) -> plain dict of YAML-safe values."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def all_keys(cls_or_cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key a dataclass accepts (used for 'did you mean' suggestions)."""
    cls = cls_or_cfg if isinstance(cls_or_cfg, type) else type(cls_or_cfg)
    keys = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}.{f.name}" if prefix else f.name
        keys.append(name)
        sub = getattr(cls_or_cfg, f.name, None) if not isinstance(cls_or_cfg, type) else None
        if dataclasses.is_dataclass(sub):
            keys.extend(all_keys(sub, name))
        elif dataclasses.is_dataclass(hints[f.name]):
            keys.extend(all_keys(hints[f.name], name))
    return keys


def parse_override(text: str) -> tuple[str, str]:
    """``"optim.lr=0.1"`` -> ``("optim.lr", "0.1")``."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value (e.g. optim.lr=0.1)")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    return key, value


def _dict_of_dataclass(annotation: Any) -> type | None:
    """The value dataclass of a ``dict[str, SomeDataclass]`` annotation, else None."""
    if typing.get_origin(annotation) is dict:
        args = typing.get_args(annotation)
        if len(args) == 2 and dataclasses.is_dataclass(args[1]):
            return args[1]
    return None


def _field_annotation(cfg: Any, parts: list[str]) -> Any:
    """The annotation of dotted key ``parts`` in (nested) dataclass ``cfg``, reading entries of
    ``dict[str, Dataclass]`` fields as ``field.NAME.key``; None if the key does not exist."""
    cls: Any = type(cfg)
    i = 0
    while i < len(parts):
        if not dataclasses.is_dataclass(cls) or parts[i] not in _hints(cls):
            return None
        annotation = _hints(cls)[parts[i]]
        inner = _dict_of_dataclass(annotation)
        if inner is not None and i + 1 < len(parts):
            cls, i = inner, i + 2  # skip the entry name
            if i == len(parts):
                return inner
            continue
        cls, i = annotation, i + 1
    return cls


def apply_overrides(cfg: T, overrides: Iterable[str], build: Callable[[dict], T] | None = None,
                    shorthands: Iterable[str] = ()) -> T:
    """Return a copy of ``cfg`` with dotted ``key=value`` overrides applied and type-checked.

    The one override parser of vidssl (pretraining, fine-tuning and the CLI use it):

    - every key is checked; an unknown key is a ``ConfigError`` with the closest valid key;
    - a mapping value (``method.backbone_kwargs="{width: 8}"``) is read as YAML;
    - entries of a ``dict[str, Dataclass]`` field take ``field.NAME.key=value``
      (e.g. ``streams.image.root=/data/imagenet``), creating entry NAME when needed;
    - a bare key that is valid under one of ``shorthands`` (e.g. ``max_steps`` under ``trainer``)
      is read as that one;
    - ``build(plain_dict)`` rebuilds the config (default: ``from_dict(type(cfg), ...)``).
    """
    data = to_dict(cfg)
    valid = all_keys(cfg)
    for text in overrides:
        key, value = parse_override(text)
        if key not in valid:
            for prefix in shorthands:
                if f"{prefix}.{key}" in valid:
                    key = f"{prefix}.{key}"
                    break
        parts = key.split(".")
        annotation = _field_annotation(cfg, parts) if key not in valid else None
        if key not in valid and annotation is None:
            raise ConfigError(f"unknown config key '{key}'{_suggest(key, valid)}")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node
            if node is None:
                raise ConfigError(f"unknown config key '{key}'{_suggest(key, valid)}")
        current = node.get(parts[-1]) if isinstance(node, dict) else None
        if isinstance(current, dict) or typing.get_origin(annotation) is dict:
            if value.strip().startswith("{"):
                try:  # a mapping value such as method.backbone_kwargs="{width: 8}"
                    value = yaml.safe_load(value)
                except yaml.YAMLError:
                    raise ConfigError(f"{key}: cannot read {value!r} as a mapping (write it like {{width: 8}})") from None
        node[parts[-1]] = value
    return build(data) if build is not None else from_dict(type(cfg), data)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must contain a mapping at the top level")
    return data


def preset_names() -> list[str]:
    """Names of the YAML presets shipped with vidssl (``src/vidssl/presets/*.yaml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """Path of a preset by name, or a YAML file path given directly."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return Path(name)
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset '{name}'{_suggest(name, preset_names())}; see `vidssl pretrain --list-presets`")
    return path


def save_yaml(data: Any, path: str | Path) -> None:
    """Write ``data`` (dataclass or dict) as YAML, atomically."""
    from vidssl.io import atomic_write

    text = yaml.safe_dump(to_dict(data), sort_keys=False)
    # a temporary name per process: every rank of a torchrun group may write the same file at once
    atomic_write(path, lambda tmp: tmp.write_text(text), len(text), Path(path).name)
