"""Precomputed detector regions in the LXMERT / bottom-up-attention tsv layout.

One image per line, tab-separated, no header, fields in this order::

    img_id  img_h  img_w  objects_id  objects_conf  attrs_id  attrs_conf  num_boxes  boxes  features

The array fields are base64 of the raw little-endian array bytes: ``objects_id`` and ``attrs_id`` int64
``[N]``, ``objects_conf`` and ``attrs_conf`` float32 ``[N]``, ``boxes`` float32 ``[N, 4]`` (x1, y1, x2,
y2 in pixels) and ``features`` float32 ``[N, D]``. Lines can be megabytes long, beyond the ``csv``
module's default field size limit, which is raised here.
"""

from __future__ import annotations

import base64
import binascii
import csv
import os
import sys
from collections.abc import Iterable, Iterator

import numpy as np

from vlp.data.formats.reading import FormatError, check_file
from vlp.data.records import RegionFeatureRecord

FIELDNAMES = (
    "img_id",
    "img_h",
    "img_w",
    "objects_id",
    "objects_conf",
    "attrs_id",
    "attrs_conf",
    "num_boxes",
    "boxes",
    "features",
)
# (tsv field, record attribute, on-disk dtype)
_ARRAYS = (
    ("objects_id", "object_ids", np.dtype("<i8")),
    ("objects_conf", "object_confs", np.dtype("<f4")),
    ("attrs_id", "attr_ids", np.dtype("<i8")),
    ("attrs_conf", "attr_confs", np.dtype("<f4")),
    ("boxes", "boxes", np.dtype("<f4")),
    ("features", "features", np.dtype("<f4")),
)


def _raise_field_size_limit() -> None:
    limit = sys.maxsize
    while True:  # the C long may be 32-bit
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 10


def _decode(text: str, dtype: np.dtype, path: str, where: str, name: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{path}: {where} field {name!r} is not base64") from None
    if len(raw) % dtype.itemsize:
        raise FormatError(
            f"{path}: {where} field {name!r} has {len(raw)} bytes, not a whole number of {dtype.name} values"
        )
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))


def _parse_int(text: str, path: str, where: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FormatError(f"{path}: {where} field {name!r} is {text!r}, expected an integer") from None


def _parse_row(row: list[str], path: str, line: int) -> RegionFeatureRecord:
    where = f"line {line}"
    if len(row) != len(FIELDNAMES):
        raise FormatError(
            f"{path}: {where} has {len(row)} tab-separated fields, expected {len(FIELDNAMES)}: "
            f"{' '.join(FIELDNAMES)}"
        )
    values = dict(zip(FIELDNAMES, row, strict=True))
    image_id = values["img_id"]
    where = f"line {line} (img_id {image_id})"
    num_boxes = _parse_int(values["num_boxes"], path, where, "num_boxes")
    arrays = {}
    for name, attribute, dtype in _ARRAYS:
        array = _decode(values[name], dtype, path, where, name)
        if name == "boxes":
            expected = num_boxes * 4
        elif name == "features":
            expected = None
        else:
            expected = num_boxes
        if expected is not None and array.size != expected:
            raise FormatError(
                f"{path}: {where} field {name!r} has {array.size} values, expected {expected} "
                f"for num_boxes={num_boxes}"
            )
        arrays[attribute] = array
    features = arrays["features"]
    if num_boxes == 0 or features.size % num_boxes:
        raise FormatError(
            f"{path}: {where} field 'features' has {features.size} values, not a positive "
            f"multiple of num_boxes={num_boxes}"
        )
    arrays["boxes"] = arrays["boxes"].reshape(num_boxes, 4)
    arrays["features"] = features.reshape(num_boxes, -1)
    return RegionFeatureRecord(
        image_id=image_id,
        image_h=_parse_int(values["img_h"], path, where, "img_h"),
        image_w=_parse_int(values["img_w"], path, where, "img_w"),
        **arrays,
    )


def read_region_tsv(path: str | os.PathLike) -> Iterator[RegionFeatureRecord]:
    """Stream the records of a region tsv in file order."""
    path = check_file(path)
    _raise_field_size_limit()
    with open(path, newline="", encoding="ascii", errors="strict") as handle:
        reader = csv.reader(handle, delimiter="\t")
        try:
            for row in reader:
                if row:
                    yield _parse_row(row, path, reader.line_num)
        except csv.Error as err:
            raise FormatError(f"{path}: line {reader.line_num} is not a valid tsv line ({err})") from None
        except UnicodeDecodeError as err:
            raise FormatError(f"{path}: not ASCII text after line {reader.line_num} ({err})") from None


def load_region_features(path: str | os.PathLike) -> dict[str, RegionFeatureRecord]:
    """All records of a region tsv by image id; an image id that appears twice is a ``FormatError``."""
    records: dict[str, RegionFeatureRecord] = {}
    for record in read_region_tsv(path):
        if record.image_id in records:
            raise FormatError(f"{os.fspath(path)}: img_id {record.image_id!r} appears more than once")
        records[record.image_id] = record
    return records


def _encode(array: np.ndarray, dtype: np.dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def write_region_tsv(records: Iterable[RegionFeatureRecord], path: str | os.PathLike) -> int:
    """Write ``records`` in the layout :func:`read_region_tsv` reads; returns the number written."""
    path = os.fspath(path)
    count = 0
    with open(path, "w", newline="", encoding="ascii") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        for record in records:
            num_boxes = len(record.boxes)
            if any(char in record.image_id for char in "\t\r\n") or not record.image_id:
                raise ValueError(
                    f"write_region_tsv: image id {record.image_id!r} is empty or has a tab/newline"
                )
            shapes = {name: np.shape(getattr(record, attribute)) for name, attribute, _ in _ARRAYS}
            if (
                num_boxes == 0
                or shapes["boxes"] != (num_boxes, 4)
                or len(shapes["features"]) != 2
                or shapes["features"][0] != num_boxes
                or any(
                    shapes[name] != (num_boxes,)
                    for name in ("objects_id", "objects_conf", "attrs_id", "attrs_conf")
                )
            ):
                raise ValueError(
                    f"write_region_tsv: image {record.image_id!r} has arrays of shapes {shapes}; "
                    "expected boxes [N, 4], features [N, D] and [N] ids/confidences, N >= 1"
                )
            writer.writerow(
                [
                    record.image_id,
                    int(record.image_h),
                    int(record.image_w),
                    _encode(record.object_ids, np.dtype("<i8")),
                    _encode(record.object_confs, np.dtype("<f4")),
                    _encode(record.attr_ids, np.dtype("<i8")),
                    _encode(record.attr_confs, np.dtype("<f4")),
                    num_boxes,
                    _encode(record.boxes, np.dtype("<f4")),
                    _encode(record.features, np.dtype("<f4")),
                ]
            )
            count += 1
    return count
