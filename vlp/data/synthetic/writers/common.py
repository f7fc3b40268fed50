"""File helpers shared by the shapes-world writers: JSON output, hard links and COCO image paths.

JSON is written with the C encoder and ``\n`` line ends, so that the same values always give the same
bytes; the GQA and SNLI-VE image folders hard-link the rendered COCO images instead of copying them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from vlp.data.synthetic.scenes import Scene


def dump_json(value: object, path: Path, lines: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        if lines:
            for item in value:  # type: ignore[attr-defined]
                f.write(json.dumps(item) + "\n")
        else:
            f.write(json.dumps(value))  # dumps uses the C encoder; dump streams through the Python one


def link_file(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (a copy where links are not possible)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def coco_path(out: Path, scene: Scene) -> Path:
    return out / "images" / scene.coco_folder / scene.coco_filename
