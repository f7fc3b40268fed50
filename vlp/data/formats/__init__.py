"""Readers (and a few writers) of the public dataset formats; each returns plain records.

The names below are re-exported lazily: ``from vlp.data.formats import read_gqa`` imports only
``vlp.data.formats.gqa`` (so ``import vlp.data.formats.karpathy`` stays cheap for the CLI).
"""

from __future__ import annotations

import importlib
from typing import Any

from vlp.data.formats.reading import FormatError

_EXPORTS = {
    "read_karpathy": "karpathy",
    "read_vqa": "vqa",
    "build_answer_vocab": "vqa",
    "answer_targets": "vqa",
    "read_gqa": "gqa",
    "read_nlvr2": "nlvr2",
    "read_snli_ve": "snli_ve",
    "read_region_tsv": "regions",
    "load_region_features": "regions",
    "write_region_tsv": "regions",
    "iter_webdataset": "webdataset",
    "write_shards": "webdataset",
}

__all__ = ["FormatError", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"vlp.data.formats.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'vlp.data.formats' has no attribute {name!r}")
