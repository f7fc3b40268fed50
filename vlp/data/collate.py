"""Examples -> a typed :class:`~vlp.data.batch.Batch`: each distinct image decoded once, texts tokenised
and masked, unreadable images and empty captions skipped and counted.

The collator knows nothing of any one objective's targets: those come from a :class:`BatchTargets`
hook (question answering's is :class:`vlp.data.qa.AnswerTargets`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

from vlp.config import DataConfig
from vlp.data.batch import Batch, VisualInput
from vlp.data.examples import Example
from vlp.data.images import ImageTransform, UnreadableImage, load_image, swap_left_right
from vlp.data.masking import IGNORE_INDEX, mask_tokens
from vlp.data.records import RegionFeatureRecord
from vlp.data.region_store import RegionStore, region_store
from vlp.data.seeding import mix_seed
from vlp.data.skips import SkipStats

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# A fast tokenizer must not be called from two threads at once (its padding state is shared).
_TOKENIZER_LOCK = threading.Lock()


class BatchTargets(Protocol):
    """Targets some examples carry besides their text and image, added to the batch they are collated in."""

    def can_flip(self, examples: Sequence[Example]) -> bool:
        """Whether the targets of ``examples`` (which share one image) stay right if the image is mirrored."""
        ...

    def fill(self, batch: Batch, examples: Sequence[Example], flipped: set[str]) -> None:
        """Set the target fields of ``batch`` (row ``b`` is ``examples[b]``; ``flipped``: the keys of the
        images collated mirrored)."""
        ...


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

    ``targets`` adds what some examples carry besides text and image (e.g. answers); ``regions`` (or
    ``data_cfg.region_features``) switches the visual input from pixels to region features.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        data_cfg: DataConfig,
        train: bool,
        *,
        targets: BatchTargets | None = None,
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
        if regions is None:
            regions = region_store(data_cfg)
        self.regions = RegionStore(regions) if isinstance(regions, dict) else regions
        self.targets = targets

    def _can_flip(self, examples: list[Example]) -> bool:
        return self.targets is None or self.targets.can_flip(examples)

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
        if self.targets is not None:
            self.targets.fill(batch, kept, flipped)
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
                tensor, did_flip = tensor.flip(-1), False  # a target would lose its meaning: undo the flip
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
