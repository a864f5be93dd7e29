"""Config dataclasses: presets, YAML files and flags, in that order of precedence.

Each component has one dataclass config. ``build_config(Cls, preset, yaml_path, flags)``
starts from the preset (or the dataclass defaults), applies the YAML file, then every
flag that was given (``None`` means "not given"). An unknown key is an error that lists
the valid ones; a value of the wrong type is an error naming the field.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from aimusic.errors import ConfigError

C = TypeVar("C")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _coerce(cls: type, name: str, value: Any, source: str) -> Any:
    """Check ``value`` against the annotated type of ``cls.name`` (int -> float allowed)."""
    hints = typing.get_type_hints(cls)
    t = hints[name]
    origin = typing.get_origin(t)
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if t in (int, str, bool, float):
        if isinstance(value, t) and not (t is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"{source}: {name} must be {t.__name__}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {name} must be a list, got {value!r}")
        return tuple(value) if origin is tuple else list(value)
    return value  # unions, Optionals: trust the value


def update_config(cfg: C, values: Mapping[str, Any], source: str) -> C:
    """A copy of ``cfg`` with ``values`` set; unknown keys raise, listing the valid ones."""
    cls = type(cfg)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"{source}: unknown {cls.__name__} key(s) {', '.join(unknown)}; "
            f"valid keys: {', '.join(names)}"
        )
    checked = {k: _coerce(cls, k, v, source) for k, v in values.items()}
    return dataclasses.replace(cfg, **checked)  # type: ignore[type-var]


def config_from_dict(cls: type[C], values: Mapping[str, Any], source: str = "config") -> C:
    """Rebuild a config saved in an artifact; fields missing from old files keep defaults."""
    return update_config(cls(), values, source)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: must be a mapping of field: value")
    return data


def build_config(
    presets: Mapping[str, Callable[[], C]],
    preset: str,
    yaml_path: str | os.PathLike | None = None,
    flags: Mapping[str, Any] | None = None,
) -> C:
    """Preset, then YAML file, then flags that are not None."""
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(presets)}")
    cfg = presets[preset]()
    if yaml_path is not None:
        cfg = update_config(cfg, load_yaml(yaml_path), str(yaml_path))
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    if given:
        cfg = update_config(cfg, given, "command-line flags")
    return cfg
