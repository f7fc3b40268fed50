"""SNLI-VE as released (``snli_ve_train.jsonl``, ``snli_ve_dev.jsonl``, ``snli_ve_test.jsonl``).

Each line is an SNLI pair whose premise is a Flickr30k caption, with the image it describes::

    {"Flickr30K_ID": "3416050480", "gold_label": "entailment", "sentence1": "<premise caption>",
     "sentence2": "<hypothesis>", "pairID": "3416050480.jpg#4r1e", "captionID": ..., ...}

The image is ``<images_root>/<Flickr30K_ID>.jpg`` (the ``flickr30k_images`` folder).
"""

from __future__ import annotations

import os

from vlp.data.formats.reading import FormatError, field, iter_jsonl
from vlp.data.records import SNLIVERecord

LABELS = ("entailment", "neutral", "contradiction")


def read_snli_ve(jsonl_path: str | os.PathLike, images_root: str | os.PathLike) -> list[SNLIVERecord]:
    """One record per hypothesis, in file order; a label outside :data:`LABELS` is a ``FormatError``."""
    path = os.fspath(jsonl_path)
    root = os.fspath(images_root)
    records = []
    for number, item in iter_jsonl(path):
        pair_id = field(item, "pairID", path, f"line {number}", str)
        where = f"line {number} (pairID {pair_id})"
        image_id = str(field(item, "Flickr30K_ID", path, where, (str, int)))
        label = field(item, "gold_label", path, where, str)
        if label not in LABELS:
            raise FormatError(
                f"{path}: {where} field 'gold_label' is {label!r}, expected one of {list(LABELS)}"
            )
        records.append(
            SNLIVERecord(
                pair_id=pair_id,
                image_id=image_id,
                image_path=os.path.join(root, f"{image_id}.jpg"),
                hypothesis=field(item, "sentence2", path, where, str),
                label=label,
                premise=field(item, "sentence1", path, where, str),
            )
        )
    return records
