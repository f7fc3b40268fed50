"""Examples: one (image, text) pair each, named by where its image is; nothing is decoded here.

Map-style datasets of examples over caption records, and the image identities that let datasets over the
same files agree on which examples share an image.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from vlp.data.records import CaptionRecord


@dataclass
class Example:
    """One (image, text) pair before decoding. ``answers`` ({class: score}) marks a QA example."""

    text: str
    image_key: str  # identity of the image: equal keys are the same image
    image_group: int  # dataset-wide integer id of the image
    image_path: str
    image_bytes: bytes | None = None
    image_id: str = ""
    answers: dict[int, float] | None = None


def image_key(image_id: str, image_path: str, has_bytes: bool) -> str:
    """The identity of an image: its normalised file path, or its id for images carried inside shards.

    A path (not the reader's id) lets caption and question datasets over the same files agree.
    """
    if has_bytes or not image_path:
        return f"id:{image_id}"
    return "path:" + os.path.normcase(os.path.abspath(image_path))


def stable_image_group(key: str) -> int:
    """A process-independent non-negative 63-bit integer for ``key`` (used for streams)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little") >> 1


class ImageRegistry:
    """Assigns each distinct image key an integer group, in order of first appearance."""

    def __init__(self) -> None:
        self._groups: dict[str, int] = {}

    def group(self, key: str) -> int:
        return self._groups.setdefault(key, len(self._groups))

    def __len__(self) -> int:
        return len(self._groups)

    def __contains__(self, key: str) -> bool:
        return key in self._groups


class PairDataset(Dataset):
    """Map-style: one example per (image, caption) pair of ``records``."""

    def __init__(self, records: Sequence[CaptionRecord], *, registry: ImageRegistry | None = None) -> None:
        self.records = list(records)
        self.registry = registry if registry is not None else ImageRegistry()
        self._pairs: list[tuple[int, int]] = []
        self._keys: list[str] = []
        self._groups: list[int] = []
        for r, record in enumerate(self.records):
            key = image_key(record.image_id, record.image_path, record.image_bytes is not None)
            self._keys.append(key)
            self._groups.append(self.registry.group(key))
            self._pairs.extend((r, c) for c in range(len(record.captions)))

    @property
    def image_keys(self) -> set[str]:
        return set(self._keys)

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> Example:
        r, c = self._pairs[index]
        record = self.records[r]
        return Example(
            text=record.captions[c],
            image_key=self._keys[r],
            image_group=self._groups[r],
            image_path=record.image_path,
            image_bytes=record.image_bytes,
            image_id=str(record.image_id),
        )


class ConcatExamples(Dataset):
    """Several map-style example datasets one after the other."""

    def __init__(self, parts: Sequence[Dataset]) -> None:
        self.parts = list(parts)
        self._offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> Example:
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self.parts[part][index - int(self._offsets[part])]
