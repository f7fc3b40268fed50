"""The data side: format readers -> records -> typed batches.

Public names of the data side are importable from here lazily (``from vlp.data import PairDataset``), so
importing a reader does not pull in torch-heavy modules.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_image": "vlp.data.images",
    "ImageTransform": "vlp.data.images",
    "UnreadableImage": "vlp.data.images",
    "swap_left_right": "vlp.data.images",
    "mask_tokens": "vlp.data.masking",
    "replaceable_vocab_mask": "vlp.data.masking",
    "Example": "vlp.data.examples",
    "PairDataset": "vlp.data.examples",
    "QADataset": "vlp.data.qa",
    "StreamPairDataset": "vlp.data.stream",
    "Collator": "vlp.data.collate",
    "PretrainLoader": "vlp.data.loader",
    "TooManyBadExamples": "vlp.data.skips",
    "build_pretrain_loaders": "vlp.data.build",
    "Batch": "vlp.data.batch",
    "VisualInput": "vlp.data.batch",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vlp.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
