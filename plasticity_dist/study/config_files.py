"""Reading a config: YAML files (with `inherit:`) plus `key.sub=value` overrides, built into the typed
sections of config.py and validated before any work; and writing one back as plain data or YAML."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from plasticity_dist.study.config import ExperimentConfig
from plasticity_dist.study.errors import ConfigError


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp` and build dataclasses and lists from plain data."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _convert(value, inner, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        (item_type,) = typing.get_args(tp)
        return [_convert(item, item_type, f"{key}[{i}]") for i, item in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping of {_type_name(tp)} fields, got {value!r}")
        return _build(tp, value, key)
    if tp in (int, float) and not isinstance(value, bool):
        value = _as_number(value, tp, key)
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}")
    return value


def _as_number(value: Any, tp: type, key: str) -> Any:
    """Accept `5e9`-style numbers (YAML reads them as strings or floats) for int and float fields."""
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        raise ConfigError(f"config key {key!r}: expected {tp.__name__}, got {value!r}") from None
    if tp is int and isinstance(number, float) and number.is_integer():
        return int(number)
    if tp is float and isinstance(number, int):
        return float(number)
    return number


def _check_bounds(value: Any, metadata: typing.Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    if "choices" in metadata and value not in metadata["choices"]:
        allowed = ", ".join(str(choice) for choice in metadata["choices"])
        raise ConfigError(f"config key {key!r}: {value!r} is not allowed; allowed: {allowed}")
    if "min" in metadata and value < metadata["min"]:
        raise ConfigError(f"config key {key!r}: {value!r} is below the minimum {metadata['min']}")


def _unknown_key(name: str, allowed: list[str], prefix: str) -> ConfigError:
    """The error for a key `name` that is not a field of the section at `prefix`, naming the nearest field."""
    where = f"{prefix}." if prefix else ""
    near = difflib.get_close_matches(name, allowed, n=1)
    hint = f" did you mean {where}{near[0]}?" if near else ""
    return ConfigError(f"unknown config key {where}{name};{hint} allowed: {', '.join(allowed)}")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _unknown_key(str(unknown[0]), list(fields), prefix)
    values = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        values[name] = _convert(value, hints[name], key)
        _check_bounds(values[name], fields[name].metadata, key)
    try:
        section = cls(**values)
    except TypeError as error:
        missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        raise ConfigError(f"config key {prefix!r} lacks required field(s): {', '.join(missing)}") from error
    if hasattr(section, "check"):
        section.check()
    return section


def _parse_override(override: str) -> tuple[list[str], Any]:
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form key.sub=value")
    try:
        return key.split("."), yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"override {override!r}: the value is not valid YAML ({problem})") from None


def _apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part!r} is not a section")
    node[path[-1]] = value


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        both_sections = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both_sections else value
    return merged


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file as plain data; `inherit: other.yaml` (relative to the file) is merged underneath."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    parent_path = (path.parent / str(parent)).resolve()
    if parent_path in seen:
        raise ConfigError(f"config file {path}: 'inherit' forms a cycle through {parent_path}")
    return _merge(_read_yaml(parent_path, (*seen, parent_path)), data)


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML config (or the defaults), apply `key.sub=value` overrides, and validate.

    Lists (such as `curriculum.tasks`) are replaced whole by an override or an inheriting file.
    """
    data = _read_yaml(Path(path)) if path is not None else {}
    for override in overrides:
        _apply_override(data, *_parse_override(override))
    return _build(ExperimentConfig, data, "")


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_to_yaml(config: Any) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
