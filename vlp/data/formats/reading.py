"""Reading dataset files: the error every format reader raises for bad content, and the helpers they share.

A missing file is a ``FileNotFoundError`` naming the path; a file that is there but does not follow the
public layout is a ``FormatError`` naming the file, the record (index or id) and what was expected.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any


class FormatError(ValueError):
    """A dataset file whose content does not match the public release layout."""


def check_file(path: str | os.PathLike) -> str:
    """``path`` as a string; ``FileNotFoundError`` naming it when it is not an existing file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    return path


def load_json(path: str | os.PathLike) -> Any:
    """Parse a whole JSON file; a syntax error (or text that is not UTF-8) is a ``FormatError`` naming the
    file and position."""
    path = check_file(path)
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as err:
            raise FormatError(f"{path}: not valid JSON ({err})") from None
        except UnicodeDecodeError as err:
            raise FormatError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSON-lines file (numbers start at 1)."""
    path = check_file(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise FormatError(f"{path}: line {number} is not UTF-8 text ({err.reason})") from None
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise FormatError(f"{path}: line {number} is not valid JSON ({err})") from None
            if not isinstance(item, dict):
                raise FormatError(f"{path}: line {number} is a {type(item).__name__}, expected a JSON object")
            yield number, item


def field(item: Any, name: str, path: str, where: str, expected: type | tuple[type, ...] = object) -> Any:
    """``item[name]``, checked to be present and of the ``expected`` type.

    ``where`` names the record in messages, e.g. ``"images[3]"`` or ``"line 7"``.
    """
    if not isinstance(item, Mapping):
        raise FormatError(f"{path}: {where} is a {type(item).__name__}, expected a JSON object")
    if name not in item:
        raise FormatError(f"{path}: {where} has no field {name!r} (fields: {sorted(item)})")
    value = item[name]
    types = expected if isinstance(expected, tuple) else (expected,)
    # JSON true/false are Python bools, which are ints too: accept them only where bool is expected.
    if not isinstance(value, types) or (
        isinstance(value, bool) and bool not in types and object not in types
    ):
        names = " or ".join(t.__name__ for t in types)
        raise FormatError(f"{path}: {where} field {name!r} is {value!r}, expected {names}")
    return value


def optional_field(
    item: Any, name: str, path: str, where: str, expected: type | tuple[type, ...], default: Any
) -> Any:
    """Like :func:`field`, but ``default`` when the field is absent (present fields are type-checked)."""
    if isinstance(item, Mapping) and name not in item:
        return default
    return field(item, name, path, where, expected)
