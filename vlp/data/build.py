"""The pre-training data a config describes: the loaders, the answer vocabulary of its QA examples, and
the region features they read."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch.utils.data import Dataset

from vlp.config import DataConfig
from vlp.data.collate import Collator
from vlp.data.examples import ConcatExamples, ImageRegistry, PairDataset
from vlp.data.formats.vqa import build_answer_vocab, read_vqa
from vlp.data.loader import PretrainLoader
from vlp.data.qa import AnswerTargets, QADataset
from vlp.data.region_store import RegionStore, region_store
from vlp.data.stream import StreamPairDataset

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# Shuffle buffer of a training stream (samples, i.e. images).
STREAM_SHUFFLE_BUFFER = 1000


@dataclass
class PretrainData:
    """What :func:`build_pretrain_loaders` builds."""

    train: PretrainLoader
    val: PretrainLoader | None  # Karpathy data with a non-empty validation split only
    answer_vocab: list[str] | None  # the QA examples' answer classes (index = class); None: no QA data
    regions: RegionStore | None  # the region features both loaders read instead of pixels, if any


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
) -> PretrainData:
    """The training loader and (Karpathy only) the validation loader described by ``data_cfg``.

    ``batch_size`` is per rank. With ``data.vqa`` set, the training data also holds VQA questions
    (their images outside the validation split) as QA examples, and ``answer_vocab`` lists the answer
    classes (answers chosen for at least ``answer_min_count`` questions).
    ``data.region_features`` switches both loaders to region features.
    """
    regions = region_store(data_cfg)
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
        train = PretrainLoader(stream, collator, batch_size=data_cfg.batch_size, **common)
        return PretrainData(train, None, None, regions)
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
        questions, annotations = _split_vqa_paths(data_cfg.vqa)
        vqa_records = read_vqa(questions, annotations, data_cfg.images_root)
        answer_vocab = build_answer_vocab(vqa_records, min_count=answer_min_count)
        exclude = PairDataset(all_val_records).image_keys  # every validation image, capped or not
        parts.append(QADataset(vqa_records, answer_vocab, registry=registry, exclude_images=exclude))
    train_set = parts[0] if len(parts) == 1 else ConcatExamples(parts)

    targets = AnswerTargets(answer_vocab) if answer_vocab is not None else None
    train_collator = Collator(tokenizer, data_cfg, train=True, targets=targets, regions=regions)
    train = PretrainLoader(train_set, train_collator, batch_size=data_cfg.batch_size, **common)
    val = None
    if val_set is not None:
        val_collator = Collator(tokenizer, data_cfg, train=False, targets=targets, regions=regions)
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
    return PretrainData(train, val, answer_vocab, regions)
