"""NLVR2 statements as released (``nlvr2/data/train.json``, ``dev.json``, ``test1.json``: JSON lines).

Each line::

    {"identifier": "dev-850-0-0", "sentence": "...", "label": "True", "left_url": ..., "right_url": ...,
     "directory": 83}            # "directory" on train lines only

The identifier is ``<split>-<set>-<pair>-<sentence>``; the pair's images are
``<split>-<set>-<pair>-img0.png`` (left) and ``-img1.png`` (right), found under
``<images_root>/train/<directory>/`` for train and ``<images_root>/<split>/`` (dev, test1) otherwise.
"""

from __future__ import annotations

import os

from vlp.data.formats.reading import FormatError, field, iter_jsonl, optional_field
from vlp.data.records import NLVR2Record

_LABELS = {"true": True, "false": False}


def _parse_label(value: object, path: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _LABELS:
        return _LABELS[value.lower()]
    raise FormatError(f'{path}: {where} field \'label\' is {value!r}, expected "True" or "False"')


def read_nlvr2(jsonl_path: str | os.PathLike, images_root: str | os.PathLike) -> list[NLVR2Record]:
    """One record per statement, in file order; ``label`` is ``None`` where the line has none."""
    path = os.fspath(jsonl_path)
    root = os.fspath(images_root)
    records = []
    for number, item in iter_jsonl(path):
        identifier = field(item, "identifier", path, f"line {number}", str)
        where = f"line {number} ({identifier})"
        parts = identifier.split("-")
        if len(parts) != 4 or not all(parts):
            raise FormatError(
                f"{path}: {where} identifier {identifier!r} is not "
                "<split>-<set>-<pair>-<sentence>, e.g. 'dev-850-0-0'"
            )
        split, stem = parts[0], "-".join(parts[:3])
        directory = optional_field(item, "directory", path, where, (int, str), None)
        if directory is not None:
            folder = os.path.join(root, split, str(directory))
        elif split == "train":
            raise FormatError(
                f"{path}: {where} has no field 'directory' (train images are in "
                "<images_root>/train/<directory>/)"
            )
        else:
            folder = os.path.join(root, split)
        label = item.get("label")
        records.append(
            NLVR2Record(
                identifier=identifier,
                sentence=field(item, "sentence", path, where, str),
                left_image_path=os.path.join(folder, f"{stem}-img0.png"),
                right_image_path=os.path.join(folder, f"{stem}-img1.png"),
                label=None if label is None else _parse_label(label, path, where),
            )
        )
    return records
