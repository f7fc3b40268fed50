"""Karpathy splits of COCO / Flickr30k captions (``dataset_coco.json``, ``dataset_flickr30k.json``).

Layout::

    {"dataset": "coco",
     "images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "imgid": 0,
                 "split": "test", "cocoid": 391895, "sentids": [...],
                 "sentences": [{"raw": "A man ...", "tokens": [...], "imgid": 0, "sentid": 0}, ...]}, ...]}

Flickr30k entries have no ``filepath`` and no ``cocoid``. Splits in the files are train, restval, val and
test; the ``train`` split asked for here is train + restval (the usual 113k-image COCO training set).
"""

from __future__ import annotations

import logging
import os

from vlp.data.formats.reading import FormatError, field, load_json
from vlp.data.records import CaptionRecord

logger = logging.getLogger(__name__)

SPLITS = {
    "train": frozenset({"train", "restval"}),
    "val": frozenset({"val"}),
    "test": frozenset({"test"}),
    "all": None,  # every image
}


def read_karpathy(
    json_path: str | os.PathLike, images_root: str | os.PathLike, split: str
) -> list[CaptionRecord]:
    """One record per image of ``split`` (train | val | test | all), in file order.

    ``image_path`` is ``images_root/filepath/filename``; ``image_id`` is ``str(cocoid)`` when present, else
    the file name without its extension; ``captions`` are the stripped ``raw`` sentences, empty ones
    dropped. An image left with no caption is skipped and the number skipped is logged. ``split`` on
    each record is the image's own split in the file (so ``restval`` stays visible).
    """
    if split not in SPLITS:
        raise ValueError(f"read_karpathy: unknown split {split!r}; expected one of {sorted(SPLITS)}")
    path = os.fspath(json_path)
    data = load_json(path)
    images = field(data, "images", path, "the top-level object", list)
    wanted = SPLITS[split]
    root = os.fspath(images_root)

    records = []
    no_caption = 0
    for index, item in enumerate(images):
        where = f"images[{index}]"
        filename = field(item, "filename", path, where, str)
        where = f"images[{index}] ({filename})"
        image_split = field(item, "split", path, where, str)
        if wanted is not None and image_split not in wanted:
            continue
        filepath = item.get("filepath", "")
        if not isinstance(filepath, str):
            raise FormatError(f"{path}: {where} field 'filepath' is {filepath!r}, expected str")
        if "cocoid" in item:
            image_id = str(field(item, "cocoid", path, where, (int, str)))
        else:
            image_id = os.path.splitext(filename)[0]
        captions = []
        for number, sentence in enumerate(field(item, "sentences", path, where, list)):
            raw = field(sentence, "raw", path, f"{where} sentences[{number}]", str).strip()
            if raw:
                captions.append(raw)
        if not captions:
            no_caption += 1
            continue
        records.append(
            CaptionRecord(
                image_id=image_id,
                image_path=os.path.join(root, filepath, filename),
                captions=captions,
                split=image_split,
            )
        )
    if no_caption:
        logger.warning(
            "%s: skipped %d image(s) of split %r with no non-empty caption", path, no_caption, split
        )
    return records
