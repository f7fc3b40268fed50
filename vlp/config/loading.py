"""Building a :class:`~vlp.config.schema.Config` from YAML presets, dotted overrides or a saved dict."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from vlp.config.checks import ConfigError, validate
from vlp.config.schema import Config

PRESET_DIR = Path(__file__).parent.parent / "configs"


# --------------------------------------------------------------------------- building


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {_type_name(tp)} fields, got {value!r}")
        return _build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list of {_type_name(item)}, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    if tp in (int, float, str) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(
                f"unknown config key '{prefix}{key}'; valid keys here: {', '.join(prefix + n for n in names)}"
            )
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "weights":
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _resolve_preset(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        raise ConfigError(f"unknown preset '{name_or_path}'; presets: {', '.join(preset_names())}")
    return preset


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{key_node.start_mark.name}: key {key!r} appears twice in one mapping (lines "
                    f"{seen[key]} and {line}); YAML would silently keep the second: merge them into one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _load_yaml_tree(name_or_path: str, seen: tuple[str, ...] = ()) -> dict:
    path = _resolve_preset(name_or_path)
    if str(path) in seen:
        raise ConfigError(f"{path}: 'base' presets form a cycle: {' -> '.join(seen)}")
    try:
        with open(path, encoding="utf-8") as f:
            tree = yaml.load(f, Loader=_StrictLoader) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    base = tree.pop("base", None)
    if base is not None:
        tree = _deep_merge(_load_yaml_tree(base, seen + (str(path),)), tree)
    return tree


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a","b","c"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.path=value (e.g. train.lr=1e-4)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and raw and _looks_like_float(raw):
        value = float(raw)
    return key.strip().split("."), value


def _looks_like_float(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    tree = _deep_merge({}, tree)
    for text in overrides:
        path, value = parse_override(text)
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
        node[path[-1]] = value
    return tree


def _tie_image_size(tree: dict, config: Config) -> None:
    """``data.image_size`` := ``model.vision.image_size``, the one source; a different explicit value is an
    error (the images would not be the size the vision tower expects)."""
    vision = config.model.vision.image_size
    given = tree.get("data", {}).get("image_size") if isinstance(tree.get("data"), dict) else None
    if given is not None and given != vision and config.model.visual_input == "patches":
        raise ConfigError(
            f"data.image_size={given} but model.vision.image_size={vision}: the images must be the size the "
            "vision tower expects; set model.vision.image_size only (data.image_size follows it)"
        )
    config.data.image_size = vision


def _from_tree(tree: dict) -> Config:
    config = _build(Config, tree)
    _tie_image_size(tree, config)
    validate(config)
    return config


def load_config(preset: str | None = None, overrides: list[str] | None = None) -> Config:
    """Build a :class:`Config` from a preset name or YAML path plus dotted overrides, checked in full."""
    tree = _load_yaml_tree(preset) if preset else {}
    tree = apply_overrides(tree, overrides or [])
    return _from_tree(tree)


def config_from_dict(tree: dict) -> Config:
    return _from_tree(tree)


def config_to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def dump_config(config: Config, path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config_to_dict(config), f, sort_keys=False)
