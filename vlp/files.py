"""Replacing a file (or a directory) atomically: a reader sees the old content or the new one, never a mix.

The new content is written into a temp file beside the target (same directory, so the same filesystem),
then renamed over it with ``os.replace``. A failed write removes the temp file and leaves the target as
it was. ``durable=True`` also fsyncs the file before the rename and the directory after it, so the new
content survives a power cut once the call returns (checkpoints and logs need that; results files do not).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory's entries (renames, new files) to disk; a no-op where it cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(
    path: str | os.PathLike, write: Callable[[Path], Any], *, durable: bool = False
) -> Path:
    """Call ``write(temp_path)`` and rename the temp file over ``path``; returns ``path`` as a Path.

    The parent directory is created. The temp file's name is unique to the call (a hidden name beside
    ``path``), so concurrent writers of the same target do not clobber each other's temp files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def replace_text(path: str | os.PathLike, text: str, *, durable: bool = False) -> Path:
    """Replace ``path`` by the UTF-8 ``text`` atomically."""
    return replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=durable)


def write_json(path: str | os.PathLike, value: Any, *, indent: int = 1) -> Path:
    """Write ``value`` as JSON (one trailing newline) atomically; returns the path."""
    return replace_text(path, json.dumps(value, indent=indent) + "\n")


def replace_dir(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(temp_dir)`` and put the directory it wrote in place of ``path`` (the old one, if any,
    is moved aside first and removed after); returns ``path`` as a Path. Leftovers of an interrupted
    replace (``.NAME.tmp``, ``.NAME.old``) are removed first."""
    path = Path(path)
    tmp, old = path.with_name(f".{path.name}.tmp"), path.with_name(f".{path.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    write(tmp)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def replace_marked_block(path: str | os.PathLike, marker: str, text: str) -> Path:
    """Replace what stands between ``<!-- marker -->`` and ``<!-- /marker -->`` in the text file ``path``
    (e.g. a generated table in the README) by ``text``; a ``ValueError`` naming the file when the markers
    are missing."""
    path = Path(path)
    content = path.read_text(encoding="utf-8")
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if start not in content or end not in content.split(start, 1)[1]:
        raise ValueError(f"{path}: no '{start}' ... '{end}' markers to write between")
    head, rest = content.split(start, 1)
    replace_text(path, head + start + "\n" + text.rstrip("\n") + "\n" + end + rest.split(end, 1)[1])
    return path
