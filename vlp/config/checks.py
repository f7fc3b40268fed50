"""Range checks of config fields and the error a config that fails them raises."""

from __future__ import annotations

import dataclasses
from typing import Any


class ConfigError(ValueError):
    """A config file or override that does not match the dataclasses below."""


# A range check of one field: (holds, field name, what was expected). A dataclass below lists its checks
# in a ``checks()`` method; :func:`validate` runs them all when a config is loaded.
Check = tuple[bool, str, str]

INT_GE_0, INT_GE_1 = "an integer >= 0", "an integer >= 1"


def one_of(value: str, options: tuple[str, ...], name: str) -> Check:
    return value in options, name, f"one of {' | '.join(options)}"


def fraction(value: float, name: str, *, closed: bool = True) -> Check:
    ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
    return ok, name, f"a value in [0, 1{']' if closed else ')'}"


def width_checks(cfg: Any) -> list[Check]:
    """Width, heads (dividing it), FFN size and dropout of a Transformer config."""
    hidden, heads = cfg.hidden_size, cfg.num_heads
    return [
        (hidden >= 1, "hidden_size", INT_GE_1),
        (heads >= 1 and hidden % max(heads, 1) == 0, "num_heads",
         f"an integer >= 1 that divides hidden_size ({hidden})"),
        (cfg.intermediate_size >= 1, "intermediate_size", INT_GE_1),
        fraction(cfg.dropout, "dropout", closed=False),
    ]  # fmt: skip


def validate(config: Any, prefix: str = "") -> None:
    """Run the range checks of ``config`` and of every config nested in it; a ``ConfigError`` names the first
    key out of range (``prefix`` + its name), what was expected and what it is."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, f"{prefix}{f.name}.")
    for ok, name, expected in config.checks() if hasattr(config, "checks") else ():
        if not ok:
            raise ConfigError(f"{prefix}{name}: expected {expected}, got {getattr(config, name)!r}")
