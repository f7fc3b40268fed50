"""Everything a pre-training run trains with, built from its config: tokenizer, loaders, model, objectives.

``vlp pretrain`` (:mod:`vlp.pretrain`), the step benchmark and the tests build runs here, so they build
them one way. The model is sized by its data: a QA head with one class per answer of the QA examples,
MVM label heads from the region-feature file.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from vlp.config import Config, ConfigError, ModelConfig
from vlp.data.build import PretrainData, build_pretrain_loaders
from vlp.data.loader import PretrainLoader
from vlp.data.masking import first_word_vocab_mask, replaceable_vocab_mask
from vlp.data.tokenizer import load_tokenizer
from vlp.models import build_model
from vlp.models.checkpoint import check_vocabulary, load_into
from vlp.objectives.pretraining import PretrainingObjectives
from vlp.train.schedules import ModeSchedule

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from vlp.train.distributed import DistInfo

log = logging.getLogger(__name__)


@dataclass
class Pretraining:
    """What :func:`build_pretraining` builds."""

    tokenizer: PreTrainedTokenizerBase
    train_loader: PretrainLoader
    val_loader: PretrainLoader | None
    # The answers of the model's QA head (index = class) when the head was sized from the QA data;
    # None when the model has no such head.
    answer_vocab: list[str] | None
    model: nn.Module
    objectives: PretrainingObjectives


def build_pretraining(config: Config, dist: DistInfo | None = None) -> Pretraining:
    """The run ``config`` describes, for this process of ``dist`` (default: see :mod:`vlp.ranks`).

    Seeds torch with ``train.seed`` first, so the model's initialisation is a function of the config.
    A model initialised from ``model.init_from`` or a teacher must share the tokenizer's vocabulary.
    """
    torch.manual_seed(config.train.seed)
    check_qa_data(config)
    tokenizer = load_tokenizer(config.data.tokenizer)
    rank, world_size = (dist.rank, dist.world_size) if dist is not None else (None, None)
    data = build_pretrain_loaders(
        config.data, tokenizer, seed=config.train.seed, rank=rank, world_size=world_size
    )
    model_cfg = sized_model_config(config, data)
    model = build_model(model_cfg, vocab_size=len(tokenizer))
    if config.objectives.soft_labels.teacher:
        check_vocabulary(config.objectives.soft_labels.teacher, tokenizer, "objectives.soft_labels.teacher")
    if model_cfg.init_from:
        check_vocabulary(model_cfg.init_from, tokenizer, "model.init_from")
        fresh = load_into(model, model_cfg.init_from)
        log.info("initialised from %s; fresh: %s", model_cfg.init_from, ", ".join(fresh) or "nothing")
    return Pretraining(
        tokenizer=tokenizer,
        train_loader=data.train,
        val_loader=data.val,
        answer_vocab=data.answer_vocab if _sizes_qa_head(config, data) else None,
        model=model,
        objectives=build_objectives(config, model, tokenizer),
    )


def check_qa_data(config: Config) -> None:
    """The QA objective needs question-answer data (the answers size its head): say so before any data is
    read, rather than fail later on a missing head."""
    objectives = config.objectives
    if objectives.text_only or objectives.weights.get("qa", 0) <= 0:
        return
    if not config.data.vqa and not config.model.num_answers:
        raise ConfigError(
            f"objectives.weights.qa={objectives.weights['qa']} needs question-answer data: set "
            "data.vqa=QUESTIONS.json,ANNOTATIONS.json (VQAv2 files), or objectives.weights.qa=0"
        )


def _sizes_qa_head(config: Config, data: PretrainData) -> bool:
    return bool(data.answer_vocab) and config.objectives.weights.get("qa", 0) > 0


def sized_model_config(config: Config, data: PretrainData) -> ModelConfig:
    """``config.model`` sized by ``data``: ``num_answers`` from its answer vocabulary where the QA loss is
    on; the MVM label heads from its region features (largest object / attribute id + 1) where MVM
    classifies labels and the count is 0 (a count set too small for the file is an error)."""
    model_cfg = config.model
    if _sizes_qa_head(config, data):
        model_cfg = dataclasses.replace(model_cfg, num_answers=len(data.answer_vocab))
    objectives = config.objectives
    if data.regions is None or objectives.weights.get("mvm", 0) <= 0 or not objectives.mvm.classify_labels:
        return model_cfg
    counts = {}
    for name, ids in (("num_region_labels", "object_ids"), ("num_region_attributes", "attr_ids")):
        found = max(
            (int(getattr(r, ids).max()) + 1 for r in data.regions.regions.values() if len(getattr(r, ids))),
            default=0,
        )
        given = getattr(model_cfg, name)
        if given and found > given:
            raise ValueError(
                f"model.{name}={given} but {config.data.region_features} has {ids} up to {found - 1}: "
                f"set model.{name} to at least {found} (or 0 to take it from the file)"
            )
        counts[name] = given or found
    log.info("MVM label classification: %d object and %d attribute classes", *counts.values())
    return dataclasses.replace(model_cfg, **counts)


def build_objectives(
    config: Config, model: nn.Module, tokenizer: PreTrainedTokenizerBase
) -> PretrainingObjectives:
    """``config.objectives`` over ``model``: the synthesized negatives' replaceable words from
    ``tokenizer``, SemVLP's mode schedule."""
    synth = config.objectives.itm.synthesized
    schedule = ModeSchedule(config.objectives.mode_schedule) if model.arch == "semvlp" else None
    return PretrainingObjectives(
        config.objectives,
        model,
        replaceable_vocab_mask(tokenizer, synth.replaceable, size=model.vocab_size),
        mask_token_id=tokenizer.mask_token_id,
        mode_schedule=schedule,
        first_word_vocab=first_word_vocab_mask(tokenizer, synth.replaceable, size=model.vocab_size),
    )
