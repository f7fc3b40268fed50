"""The data side: format readers -> records -> typed batches.

Public names of the pipeline are importable from here lazily (``from vlp.data import PairDataset``), so
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
    "Example": "vlp.data.pipeline",
    "PairDataset": "vlp.data.pipeline",
    "QADataset": "vlp.data.pipeline",
    "StreamPairDataset": "vlp.data.pipeline",
    "Collator": "vlp.data.pipeline",
    "PretrainLoader": "vlp.data.pipeline",
    "TooManyBadExamples": "vlp.data.pipeline",
    "build_pretrain_loaders": "vlp.data.pipeline",
    "Batch": "vlp.data.batch",
    "VisualInput": "vlp.data.batch",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vlp.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
