"""From records to typed :class:`~vlp.data.batch.Batch` es: datasets, collation and resumable loaders.

* Datasets yield light :class:`Example` s (text + where its image is); nothing is decoded there.
* :class:`Collator` decodes each distinct image of a batch once, tokenises, masks, and skips (and
  counts) unreadable images and empty captions.
* :class:`PretrainLoader` orders, shards (DDP) and seeds everything from ``(seed, epoch, batch index)``,
  so a loader restored from :meth:`PretrainLoader.state_dict` yields exactly the batches an
  uninterrupted run would have yielded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from vlp.config import DataConfig
from vlp.data.batch import Batch, VisualInput
from vlp.data.images import ImageTransform, UnreadableImage, load_image, swap_left_right
from vlp.data.masking import IGNORE_INDEX, mask_tokens
from vlp.data.records import CaptionRecord, RegionFeatureRecord, VQARecord

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# Streams have no known length: the bad-example fraction is only judged mid-epoch after this many.
STREAM_MIN_SEEN_FOR_CHECK = 1000
# Shuffle buffer of a training stream (samples, i.e. images).
STREAM_SHUFFLE_BUFFER = 1000
# A fast tokenizer must not be called from two threads at once (its padding state is shared).
_TOKENIZER_LOCK = threading.Lock()


# --------------------------------------------------------------------------- examples and datasets


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


class QADataset(Dataset):
    """Map-style: VQA questions as (image, question) examples carrying soft answer targets.

    Questions with no answer in ``answer_vocab`` are left out (they would teach only "none of these").
    """

    def __init__(
        self,
        records: Sequence[VQARecord],
        answer_vocab: Sequence[str],
        *,
        registry: ImageRegistry | None = None,
        exclude_images: set[str] | None = None,
    ) -> None:
        from vlp.data.formats.vqa import answer_targets

        self.answer_vocab = list(answer_vocab)
        vocab_index = {answer: i for i, answer in enumerate(self.answer_vocab)}
        self.registry = registry if registry is not None else ImageRegistry()
        self.examples: list[Example] = []
        for record in records:
            targets = answer_targets(record, vocab_index)
            key = image_key(str(record.image_id), record.image_path, False)
            if not targets or (exclude_images and key in exclude_images):
                continue
            self.examples.append(
                Example(
                    text=record.question,
                    image_key=key,
                    image_group=self.registry.group(key),
                    image_path=record.image_path,
                    image_id=str(record.image_id),
                    answers=targets,
                )
            )

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]


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


class StreamPairDataset(IterableDataset):
    """(image, caption) examples from WebDataset shards: one caption per image per pass.

    A shard sample holds all captions of its image. Yielding them one after the other would fill a batch
    of 32 with 7-8 images (a small ITC batch and negative pool); instead each pass yields one caption per
    image, caption ``(offset(key) + epoch) % n`` of its n, so every caption is used once in n passes, and
    the samples go through the reader's shuffle buffer (``shuffle`` samples). A streamed batch then holds
    about as many distinct images as a map-style one.

    :meth:`set_epoch` reseeds the shuffle and moves to the next caption; :meth:`set_rank` makes the reader
    deal whole shards (or every n-th sample of a shard) to DDP ranks, so each rank reads only its share.
    """

    def __init__(self, urls: str | list[str], *, shuffle: int = 0, seed: int = 0) -> None:
        self.urls = urls
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank, self.world_size = 0, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_rank(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[Example]:
        from vlp.data.formats.webdataset import iter_webdataset

        records = iter_webdataset(
            self.urls,
            shuffle=self.shuffle,
            seed=mix_seed(self.seed, self.epoch),
            rank=self.rank,
            world_size=self.world_size,
        )
        for record in records:
            key = image_key(record.image_id, record.image_path, record.image_bytes is not None)
            group = stable_image_group(key)
            offset = stable_image_group(f"{self.seed}/{key}")
            yield Example(
                text=record.captions[(offset + self.epoch) % len(record.captions)],
                image_key=key,
                image_group=group,
                image_path=record.image_path,
                image_bytes=record.image_bytes,
                image_id=str(record.image_id),
            )


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. seed, epoch, rank, batch index)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


# --------------------------------------------------------------------------- skip accounting


_REASONS = {
    "unreadable_image": ("unreadable image", "unreadable images"),
    "empty_caption": ("empty caption", "empty captions"),
    "missing_regions": ("image without region features", "images without region features"),
}


@dataclass
class SkipStats:
    """Examples seen and skipped (by reason), and the first few offending items for messages."""

    seen: int = 0
    unreadable_image: int = 0
    empty_caption: int = 0
    missing_regions: int = 0
    samples: list[str] = field(default_factory=list)

    MAX_SAMPLES = 5

    @property
    def skipped(self) -> int:
        return self.unreadable_image + self.empty_caption + self.missing_regions

    def note(self, reason: str, count: int, detail: str) -> None:
        setattr(self, reason, getattr(self, reason) + count)
        if len(self.samples) < self.MAX_SAMPLES:
            self.samples.append(detail)

    def add(self, other: SkipStats) -> None:
        self.seen += other.seen
        for reason in _REASONS:
            setattr(self, reason, getattr(self, reason) + getattr(other, reason))
        self.samples.extend(other.samples[: max(0, self.MAX_SAMPLES - len(self.samples))])

    def summary(self) -> str:
        """E.g. ``skipped 3 of 1000 examples (2 unreadable images, 1 empty caption)``."""
        parts = []
        for reason, (one, many) in _REASONS.items():
            count = getattr(self, reason)
            if count:
                parts.append(f"{count} {one if count == 1 else many}")
        detail = f" ({', '.join(parts)})" if parts else ""
        return f"skipped {self.skipped} of {self.seen} examples{detail}"

    def report(self) -> str:
        """:meth:`summary` and the first few offending items (``...; first: unreadable image a.jpg: ...``)."""
        return self.summary() + (f"; first: {'; '.join(self.samples)}" if self.samples else "")

    def to_dict(self) -> dict:
        counts = {reason: getattr(self, reason) for reason in _REASONS}
        return {"seen": self.seen, **counts, "samples": list(self.samples)}

    @classmethod
    def from_dict(cls, state: dict) -> SkipStats:
        counts = {k: int(v) for k, v in state.items() if k == "seen" or k in _REASONS}
        return cls(**counts, samples=[str(s) for s in state.get("samples", [])][: cls.MAX_SAMPLES])


class TooManyBadExamples(ValueError):
    """More unreadable images / empty captions than ``data.max_bad_fraction`` allows."""


# --------------------------------------------------------------------------- collation


class RegionStore:
    """Region features by image id, also found by the file stem of an image path (LXMERT ids)."""

    def __init__(self, regions: dict[str, RegionFeatureRecord]) -> None:
        self.regions = regions

    def lookup(self, image_id: str, image_path: str) -> RegionFeatureRecord | None:
        found = self.regions.get(image_id)
        if found is None and image_path:
            found = self.regions.get(os.path.splitext(os.path.basename(image_path))[0])
        return found


@dataclass
class Collated:
    """What :meth:`Collator.collate` returns: the batch (None if every example was skipped), counts, and
    for each batch row the index of its input example and whether its image was flipped."""

    batch: Batch | None
    stats: SkipStats
    rows: list[int] = field(default_factory=list)
    flipped: list[bool] = field(default_factory=list)


class Collator:
    """Examples -> :class:`Batch`: distinct images once, tokens padded to the longest, MLM masking.

    ``answer_vocab`` turns on ``has_answer`` / ``answer_targets``; ``regions`` (or
    ``data_cfg.region_features``) switches the visual input from pixels to region features.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        data_cfg: DataConfig,
        train: bool,
        *,
        answer_vocab: Sequence[str] | None = None,
        regions: dict[str, RegionFeatureRecord] | RegionStore | None = None,
        mlm: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.cfg = data_cfg
        self.train = train
        self.mlm = mlm
        if data_cfg.max_text_len < 3:
            raise ValueError(f"data.max_text_len must be at least 3, got {data_cfg.max_text_len}")
        if mlm and tokenizer.mask_token_id is None:
            raise ValueError(f"the tokenizer ({type(tokenizer).__name__}) has no mask token; MLM needs one")
        if data_cfg.whole_word_mask and not getattr(tokenizer, "is_fast", False):
            raise ValueError("data.whole_word_mask needs a fast tokenizer (word ids come from it)")
        self.vocab_size = len(tokenizer)
        self.transform = ImageTransform(data_cfg.image_size, train=train, hflip=data_cfg.hflip)
        # JPEGs may decode at a reduced scale, keeping a margin above the size a train crop is resized to.
        self._draft = int(data_cfg.image_size * 1.5)
        if regions is None and data_cfg.region_features:
            from vlp.data.formats.regions import load_region_features

            regions = load_region_features(data_cfg.region_features)
        self.regions = RegionStore(regions) if isinstance(regions, dict) else regions
        self.answer_vocab = list(answer_vocab) if answer_vocab is not None else None
        self._answer_swap = self._answer_swap_map()

    def _answer_swap_map(self) -> dict[int, int | None]:
        """Answer class -> its left/right-swapped class (None: the swapped answer is not a class)."""
        if not self.answer_vocab:
            return {}
        index = {answer: i for i, answer in enumerate(self.answer_vocab)}
        swap = {}
        for i, answer in enumerate(self.answer_vocab):
            other = swap_left_right(answer)
            if other != answer:
                swap[i] = index.get(other)
        return swap

    def _can_flip(self, examples: list[Example]) -> bool:
        return all(
            self._answer_swap.get(a, a) is not None for ex in examples if ex.answers for a in ex.answers
        )

    def __call__(self, examples: Sequence[Example]) -> Batch | None:
        return self.collate(examples).batch

    def collate(self, examples: Sequence[Example], seed: int | None = None) -> Collated:
        """Build a batch; all randomness (crops, flips, masking) comes from ``seed``."""
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()))
        image_gen = torch.Generator().manual_seed(mix_seed(seed, 0))
        mask_gen = torch.Generator().manual_seed(mix_seed(seed, 1))
        stats = SkipStats(seen=len(examples))

        kept, rows = [], []
        for index, example in enumerate(examples):
            if not example.text or not example.text.strip():
                stats.note(
                    "empty_caption", 1, f"empty caption for image {example.image_path or example.image_id}"
                )
            else:
                kept.append(example)
                rows.append(index)

        by_image: dict[str, list[Example]] = {}
        for example in kept:
            by_image.setdefault(example.image_key, []).append(example)
        visual, slot, flipped = self._encode_images(by_image, image_gen, stats)
        rows = [row for row, example in zip(rows, kept, strict=True) if example.image_key in slot]
        kept = [example for example in kept if example.image_key in slot]
        if not kept:
            return Collated(None, stats)

        texts = [swap_left_right(ex.text) if ex.image_key in flipped else ex.text for ex in kept]
        batch = self._text_batch(texts, mask_gen)
        batch.visual = visual
        batch.image_index = torch.tensor([slot[ex.image_key] for ex in kept], dtype=torch.long)
        batch.image_group = torch.tensor([ex.image_group for ex in kept], dtype=torch.long)
        if self.answer_vocab is not None:
            self._fill_answers(batch, kept, flipped)
        return Collated(batch, stats, rows, [ex.image_key in flipped for ex in kept])

    # ---- one modality alone (retrieval galleries)

    def texts(self, texts: Sequence[str], seed: int = 0) -> Batch:
        """Texts alone, tokenised as in :meth:`collate` (no image fields set)."""
        return self._text_batch(list(texts), torch.Generator().manual_seed(mix_seed(seed, 1)))

    def images(self, examples: Sequence[Example], seed: int = 0) -> tuple[VisualInput, list[int], SkipStats]:
        """The distinct images of ``examples``, decoded and transformed as in :meth:`collate`; for each
        example its image's slot in the result (-1: unreadable, counted in the stats)."""
        by_image: dict[str, list[Example]] = {}
        for example in examples:
            by_image.setdefault(example.image_key, []).append(example)
        stats = SkipStats(seen=len(examples))
        generator = torch.Generator().manual_seed(mix_seed(seed, 0))
        visual, slot, _ = self._encode_images(by_image, generator, stats)
        return visual, [slot.get(example.image_key, -1) for example in examples], stats

    # ---- images

    def _encode_images(
        self, by_image: dict[str, list[Example]], generator: torch.Generator, stats: SkipStats
    ) -> tuple[VisualInput, dict[str, int], set[str]]:
        if self.regions is not None:
            return self._encode_regions(by_image, stats)
        pixels, slot, flipped = [], {}, set()
        for key, group in by_image.items():
            first = group[0]
            try:
                source = first.image_bytes if first.image_bytes is not None else first.image_path
                image = load_image(source, name=first.image_path or first.image_id, draft_size=self._draft)
            except UnreadableImage as err:
                stats.note("unreadable_image", len(group), str(err))
                logger.debug("skipping %d example(s): %s", len(group), err)
                continue
            tensor, did_flip = self.transform(image, generator)
            if did_flip and not self._can_flip(group):
                tensor, did_flip = tensor.flip(-1), False  # an answer would lose its meaning: undo the flip
            slot[key] = len(pixels)
            pixels.append(tensor)
            if did_flip:
                flipped.add(key)
        pixel_values = torch.stack(pixels) if pixels else None
        return VisualInput(pixel_values=pixel_values), slot, flipped

    def _encode_regions(
        self, by_image: dict[str, list[Example]], stats: SkipStats
    ) -> tuple[VisualInput, dict[str, int], set[str]]:
        found, slot = [], {}
        for key, group in by_image.items():
            first = group[0]
            record = self.regions.lookup(first.image_id, first.image_path)
            if record is None or len(record.features) == 0:
                detail = f"no region features for image id {first.image_id!r} ({first.image_path})"
                stats.note("missing_regions", len(group), detail)
                continue
            slot[key] = len(found)
            found.append(record)
        if not found:
            return VisualInput(), slot, set()
        dims = {r.features.shape[1] for r in found}
        if len(dims) != 1:
            raise ValueError(
                f"{self.cfg.region_features}: region feature sizes differ within a batch: {dims}"
            )
        n_images, n_regions, dim = len(found), max(len(r.features) for r in found), dims.pop()
        features = torch.zeros(n_images, n_regions, dim)
        boxes = torch.zeros(n_images, n_regions, 4)
        mask = torch.zeros(n_images, n_regions, dtype=torch.bool)
        labels = torch.full((n_images, n_regions), IGNORE_INDEX, dtype=torch.long)
        attributes = labels.clone()
        for i, record in enumerate(found):
            n = len(record.features)
            features[i, :n] = torch.as_tensor(record.features, dtype=torch.float32)
            scale = torch.tensor([record.image_w, record.image_h] * 2, dtype=torch.float32).clamp(min=1)
            boxes[i, :n] = (torch.as_tensor(record.boxes, dtype=torch.float32) / scale).clamp(0.0, 1.0)
            mask[i, :n] = True
            labels[i, :n] = torch.as_tensor(record.object_ids, dtype=torch.long)
            attributes[i, :n] = torch.as_tensor(record.attr_ids, dtype=torch.long)
        visual = VisualInput(
            region_features=features,
            region_boxes=boxes,
            region_mask=mask,
            region_labels=labels,
            region_attributes=attributes,
        )
        return visual, slot, set()

    # ---- text

    def _text_batch(self, texts: list[str], generator: torch.Generator) -> Batch:
        with _TOKENIZER_LOCK:
            encoded = self.tokenizer(
                texts,
                max_length=self.cfg.max_text_len,
                truncation=True,
                padding="longest",
                return_attention_mask=True,
                return_special_tokens_mask=True,
                return_tensors="pt",
            )
        input_ids = encoded["input_ids"].long()
        attention_mask = encoded["attention_mask"].bool()
        batch = Batch(
            visual=VisualInput(),
            image_index=torch.empty(0, dtype=torch.long),
            image_group=torch.empty(0, dtype=torch.long),
            input_ids=input_ids,
            attention_mask=attention_mask,
        )
        if self.mlm:
            special = encoded["special_tokens_mask"].bool() | ~attention_mask
            word_ids = None
            if self.cfg.whole_word_mask:
                rows = [[-1 if w is None else w for w in encoded.word_ids(i)] for i in range(len(texts))]
                word_ids = torch.tensor(rows, dtype=torch.long)
            batch.mlm_input_ids, batch.mlm_labels = mask_tokens(
                input_ids,
                special,
                mask_token_id=self.tokenizer.mask_token_id,
                vocab_size=self.vocab_size,
                probability=self.cfg.mlm_probability,
                whole_word_ids=word_ids,
                generator=generator,
            )
        return batch

    def _fill_answers(self, batch: Batch, examples: list[Example], flipped: set[str]) -> None:
        targets = torch.zeros(len(examples), len(self.answer_vocab))
        has_answer = torch.zeros(len(examples), dtype=torch.bool)
        for row, example in enumerate(examples):
            if example.answers is None:
                continue
            has_answer[row] = True
            for answer, score in example.answers.items():
                if example.image_key in flipped:
                    answer = self._answer_swap.get(answer, answer)
                targets[row, answer] = score
        batch.has_answer = has_answer
        batch.answer_targets = targets


# --------------------------------------------------------------------------- loaders


def _identity(item):
    return item


class _EpochBatches(Dataset):
    """Batch ``k`` of one epoch, collated with the seed of (seed, epoch, rank, k)."""

    def __init__(
        self, dataset: Dataset, collator: Collator, batches: list[list[int]], seeds: tuple[int, ...]
    ):
        self.dataset = dataset
        self.collator = collator
        self.batches = batches
        self.seeds = seeds

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> Collated:
        examples = [self.dataset[i] for i in self.batches[k]]
        return self.collator.collate(examples, seed=mix_seed(*self.seeds, k))


def distributed_context(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(rank, world_size)``: as given, else from an initialised ``torch.distributed``, else (0, 1)."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank() if rank is None else rank
            world_size = torch.distributed.get_world_size() if world_size is None else world_size
        else:
            rank, world_size = rank or 0, world_size or 1
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not valid for world size {world_size}")
    return rank, world_size


class PretrainLoader:
    """Batches of one dataset, resumable mid-epoch and sharded across DDP ranks.

    Iterating plays the current epoch from its start (or from a position given to
    :meth:`load_state_dict`); when the epoch runs out the loader moves to the next one. Every random
    choice derives from ``(seed, epoch, rank, batch index)``; the epoch's order from ``(seed, epoch)``
    only, identical on all ranks, each rank taking every ``world_size``-th example of it.

    Map-style datasets are collated by ``num_workers`` DataLoader processes; skipping to a restored
    position happens at the sampler, so the skipped batches are never loaded. Streams
    (``IterableDataset``) are read in this process and collated by ``num_workers`` threads; resuming
    reads past the consumed examples without decoding them. A stream with ``set_rank`` (WebDataset
    shards) splits itself across ranks by shard, so ranks may see slightly different numbers of
    batches per epoch; any other stream is dealt out by example.
    """

    def __init__(
        self,
        dataset: Dataset | IterableDataset,
        collator: Collator,
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        num_workers: int = 0,
        max_bad_fraction: float = 0.05,
        advance_epoch: bool = True,
        name: str = "train",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.collator = collator
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank, self.world_size = distributed_context(rank, world_size)
        self.num_workers = num_workers
        self.max_bad_fraction = max_bad_fraction
        self.advance_epoch = advance_epoch
        self.name = name
        self.is_stream = isinstance(dataset, IterableDataset)
        self.answer_vocab: list[str] | None = collator.answer_vocab
        self.epoch = 0
        self.batches_done = 0
        self._resume_from: int | None = None
        self._stats = SkipStats()
        if not self.is_stream and len(self) == 0:
            raise ValueError(
                f"{name} data: {len(dataset)} examples give no batch of data.batch_size={batch_size} "
                f"per rank over {self.world_size} rank(s); lower data.batch_size"
            )

    # ---- positions

    def _rank_indices(self, epoch: int) -> list[int]:
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
        else:
            order = torch.arange(n)
        if self.drop_last:
            order = order[: n - n % self.world_size]
        elif n % self.world_size:
            pad = self.world_size - n % self.world_size
            order = torch.cat([order, order.repeat(pad // max(n, 1) + 1)[:pad]])
        return order[self.rank :: self.world_size].tolist()

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        indices = self._rank_indices(epoch)
        batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __len__(self) -> int:
        """Batches per epoch on this rank (map-style datasets only)."""
        if self.is_stream:
            raise TypeError(f"{self.name} data is a stream: its number of batches is not known")
        per_rank = (
            len(self.dataset) // self.world_size
            if self.drop_last
            else -(-len(self.dataset) // self.world_size)
        )
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch`` (a position restored for this same epoch is kept)."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches_done = 0
            self._resume_from = None
            self._stats = SkipStats()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches_done": self.batches_done, "skipped": self._stats.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state["batches_done"]`` of ``state["epoch"]``; the next iteration starts there."""
        try:
            epoch, done = int(state["epoch"]), int(state["batches_done"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"loader state needs integer 'epoch' and 'batches_done', got {state!r}") from err
        if epoch < 0 or done < 0:
            raise ValueError(f"loader state {state!r} is out of range for {self.name} data")
        if not self.is_stream and done > len(self):
            raise ValueError(
                f"{self.name} data changed since the checkpoint: its position (after batch {done} of epoch "
                f"{epoch}) is out of range for an epoch of this data ({len(self)} batches); resume with the "
                "data (and data.batch_size) the run was started with, or start a new run"
            )
        self.epoch, self.batches_done, self._resume_from = epoch, done, done
        self._stats = SkipStats.from_dict(state.get("skipped", {}))

    # ---- iteration

    def __iter__(self) -> Iterator[Batch]:
        start = self._resume_from or 0
        if self._resume_from is None:
            self._stats = SkipStats()
        self._resume_from = None
        self.batches_done = start
        epoch = self.epoch
        seeds = (self.seed, epoch, self.rank)
        if self.is_stream:
            results, total = self._stream_results(epoch, start, seeds), None
        else:
            results, total = self._map_results(epoch, start, seeds), self._epoch_examples(epoch)
        try:
            for k, collated in results:
                self._stats.add(collated.stats)
                self._check(total)
                self.batches_done = k + 1
                if collated.batch is not None:
                    yield collated.batch
        except GeneratorExit:  # a partial pass (e.g. validation reads a few batches): report its skips too
            if self._stats.skipped:
                logger.warning(
                    "%s data, epoch %d, first %d batches: %s",
                    self.name, self.epoch, self.batches_done, self._stats.report(),
                )  # fmt: skip
            raise
        self._finish_epoch()

    def _epoch_examples(self, epoch: int) -> int:
        return sum(len(b) for b in self._epoch_batches(epoch))

    def _map_results(self, epoch: int, start: int, seeds: tuple[int, ...]) -> Iterator[tuple[int, Collated]]:
        source = _EpochBatches(self.dataset, self.collator, self._epoch_batches(epoch), seeds)
        positions = range(start, len(source))
        if self.num_workers == 0:
            return ((k, source[k]) for k in positions)
        # Forked workers and the tokenizer's own thread pool do not mix (it warns, then disables itself).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        loader = DataLoader(
            source, batch_size=None, sampler=positions, num_workers=self.num_workers, collate_fn=_identity
        )
        return zip(positions, loader, strict=True)

    def _stream_batches(self, epoch: int) -> Iterator[list[Example]]:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        # A stream that can split itself across ranks (by shard) does; any other is split by sample.
        self_splitting = hasattr(self.dataset, "set_rank")
        if self_splitting:
            self.dataset.set_rank(self.rank, self.world_size)
        chunk: list[Example] = []
        for i, example in enumerate(self.dataset):
            if not self_splitting and i % self.world_size != self.rank:
                continue
            chunk.append(example)
            if len(chunk) == self.batch_size:
                yield chunk
                chunk = []
        if chunk and not self.drop_last:
            yield chunk

    def _stream_results(
        self, epoch: int, start: int, seeds: tuple[int, ...]
    ) -> Iterator[tuple[int, Collated]]:
        """Stream batches: read in this process, collated by ``num_workers`` threads (in order)."""
        pending = (
            (k, chunk) for k, chunk in enumerate(self._stream_batches(epoch)) if k >= start
        )  # skipped batches are read but never decoded
        if self.num_workers == 0:
            for k, chunk in pending:
                yield k, self.collator.collate(chunk, seed=mix_seed(*seeds, k))
            return
        with ThreadPoolExecutor(max_workers=self.num_workers) as pool:
            queue: deque = deque()
            for k, chunk in pending:
                queue.append((k, pool.submit(self.collator.collate, chunk, mix_seed(*seeds, k))))
                if len(queue) >= 2 * self.num_workers:
                    k0, future = queue.popleft()
                    yield k0, future.result()
            while queue:
                k0, future = queue.popleft()
                yield k0, future.result()

    def _check(self, total: int | None) -> None:
        stats, limit = self._stats, self.max_bad_fraction
        if total is not None:
            too_many = stats.skipped > limit * total
        else:
            too_many = stats.seen >= STREAM_MIN_SEEN_FOR_CHECK and stats.skipped > limit * stats.seen
        if too_many:
            self._fail(total)

    def _fail(self, total: int | None) -> None:
        stats = self._stats
        of = f"{total} examples of the epoch" if total is not None else f"{stats.seen} examples seen"
        examples = "; ".join(stats.samples)
        raise TooManyBadExamples(
            f"{self.name} data, epoch {self.epoch}: {stats.summary()} so far, more than "
            f"data.max_bad_fraction={self.max_bad_fraction} of {of}. First problems: {examples}"
        )

    def _finish_epoch(self) -> None:
        stats = self._stats
        if stats.seen and stats.skipped > self.max_bad_fraction * stats.seen:
            self._fail(None)
        if stats.skipped:
            logger.warning("%s data, epoch %d: %s", self.name, self.epoch, stats.report())
        if self.advance_epoch:
            self.set_epoch(self.epoch + 1)
        else:
            self.batches_done = 0
            self._stats = SkipStats()


# --------------------------------------------------------------------------- building from the config


def _cap(records: list, cap: int) -> list:
    return records[:cap] if cap > 0 else records


def _split_vqa_paths(value: str) -> tuple[str, str | None]:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) not in (1, 2) or not parts[0]:
        raise ValueError(f"data.vqa must be '<questions json>,<annotations json>', got {value!r}")
    return parts[0], (parts[1] if len(parts) == 2 and parts[1] else None)


def build_pretrain_loaders(
    data_cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    *,
    seed: int,
    rank: int | None = None,
    world_size: int | None = None,
    answer_min_count: int = 9,
) -> tuple[PretrainLoader, PretrainLoader | None]:
    """The training loader and (Karpathy only) the validation loader described by ``data_cfg``.

    ``batch_size`` is per rank. With ``data.vqa`` set, the training data also holds VQA questions
    (their images outside the validation split) as QA examples; the loaders' ``answer_vocab`` lists
    the answer classes (answers chosen for at least ``answer_min_count`` questions).
    ``data.region_features`` switches both loaders to region features.
    """
    regions = None
    if data_cfg.region_features:
        from vlp.data.formats.regions import load_region_features

        regions = RegionStore(load_region_features(data_cfg.region_features))
    common = dict(
        seed=seed,
        rank=rank,
        world_size=world_size,
        num_workers=data_cfg.num_workers,
        max_bad_fraction=data_cfg.max_bad_fraction,
    )
    if data_cfg.format == "webdataset":
        if data_cfg.vqa:
            raise ValueError("data.vqa (QA examples) needs data.format=karpathy; it is set with webdataset")
        if data_cfg.max_train_images:
            logger.warning("data.max_train_images is ignored for webdataset streams")
        stream = StreamPairDataset(data_cfg.train, shuffle=STREAM_SHUFFLE_BUFFER, seed=seed)
        collator = Collator(tokenizer, data_cfg, train=True, regions=regions)
        return PretrainLoader(stream, collator, batch_size=data_cfg.batch_size, **common), None
    if data_cfg.format != "karpathy":
        raise ValueError(f"data.format must be 'karpathy' or 'webdataset', got {data_cfg.format!r}")

    from vlp.data.formats.karpathy import read_karpathy

    train_records = _cap(
        read_karpathy(data_cfg.train, data_cfg.images_root, data_cfg.train_split), data_cfg.max_train_images
    )
    if not train_records:
        raise ValueError(f"{data_cfg.train}: no images in split data.train_split={data_cfg.train_split!r}")
    all_val_records = read_karpathy(data_cfg.train, data_cfg.images_root, data_cfg.val_split)
    val_records = _cap(all_val_records, data_cfg.max_val_images)

    registry = ImageRegistry()
    parts: list[Dataset] = [PairDataset(train_records, registry=registry)]
    val_set = PairDataset(val_records) if val_records else None
    answer_vocab = None
    if data_cfg.vqa:
        from vlp.data.formats.vqa import build_answer_vocab, read_vqa

        questions, annotations = _split_vqa_paths(data_cfg.vqa)
        vqa_records = read_vqa(questions, annotations, data_cfg.images_root)
        answer_vocab = build_answer_vocab(vqa_records, min_count=answer_min_count)
        exclude = PairDataset(all_val_records).image_keys  # every validation image, capped or not
        parts.append(QADataset(vqa_records, answer_vocab, registry=registry, exclude_images=exclude))
    train_set = parts[0] if len(parts) == 1 else ConcatExamples(parts)

    train_collator = Collator(tokenizer, data_cfg, train=True, answer_vocab=answer_vocab, regions=regions)
    train = PretrainLoader(train_set, train_collator, batch_size=data_cfg.batch_size, **common)
    val = None
    if val_set is not None:
        val_collator = Collator(tokenizer, data_cfg, train=False, answer_vocab=answer_vocab, regions=regions)
        val = PretrainLoader(
            val_set,
            val_collator,
            batch_size=data_cfg.batch_size,
            shuffle=False,
            drop_last=False,
            advance_epoch=False,
            name="val",
            **common,
        )
    else:
        logger.warning(
            "%s: split data.val_split=%r is empty; no validation", data_cfg.train, data_cfg.val_split
        )
    return train, val
