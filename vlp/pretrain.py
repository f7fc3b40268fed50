"""`vlp pretrain`: files -> records -> batches -> model -> objectives -> trainer -> checkpoint.

This module only wires the parts together; each part lives in its own package.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from vlp.config import Config, ConfigError, ModelConfig, config_to_dict
from vlp.data.masking import first_word_vocab_mask, replaceable_vocab_mask
from vlp.data.pipeline import RegionStore, build_pretrain_loaders
from vlp.data.tokenizer import load_tokenizer
from vlp.models import build_model
from vlp.models.checkpoint import check_vocabulary, load_into, save_pretrained
from vlp.objectives.pretraining import PretrainingObjectives
from vlp.train.checkpoint import refuse_existing_run, run_lock
from vlp.train.distributed import init_distributed
from vlp.train.loop import Trainer
from vlp.train.schedules import ModeSchedule

log = logging.getLogger(__name__)

TEACHER_FILE = "teacher.safetensors"


def _persist_teacher(objectives: PretrainingObjectives, out: Path, resume: bool, is_main: bool) -> None:
    """Store the frozen teacher once per run (the trainer's checkpoints leave frozen state outside the model
    out). The default teacher is the model as it stood at initialisation: a resumed run must read it back
    from the run directory rather than copy the (by now trained) model again."""
    if objectives.teacher is None:
        return
    path = out / TEACHER_FILE
    if resume and path.is_file():
        load_model(objectives.teacher, str(path))
    elif is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_model(objectives.teacher, str(path))


def _with_region_label_counts(
    model_cfg: ModelConfig, config: Config, regions: RegionStore | None
) -> ModelConfig:
    """``model_cfg`` with the MVM label heads sized from the region-feature file (largest object / attribute
    id + 1) where MVM classifies labels and the count is 0; a count set too small for the file is an error."""
    objectives = config.objectives
    if regions is None or objectives.weights.get("mvm", 0) <= 0 or not objectives.mvm.classify_labels:
        return model_cfg
    counts = {}
    for name, ids in (("num_region_labels", "object_ids"), ("num_region_attributes", "attr_ids")):
        found = max(
            (int(getattr(r, ids).max()) + 1 for r in regions.regions.values() if len(getattr(r, ids))),
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


def _check_qa_data(config: Config) -> None:
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


def pretrain(config: Config, out_dir: str | Path, resume: bool = False) -> dict:
    """Pre-train ``config.model`` on ``config.data`` with ``config.objectives``; returns final metrics.

    The final weights are written with ``save_pretrained`` to ``OUT/final`` (loadable with ``vlp.load``).
    The run directory is locked for the whole run, and a run refused (checkpoints there, no ``resume``) is
    refused before anything is written.
    """
    out = Path(out_dir)
    dist = init_distributed()
    with run_lock(out, enabled=dist.is_main):
        refuse_existing_run(out, resume)
        return _pretrain(config, out, resume, dist)


def _pretrain(config: Config, out: Path, resume: bool, dist) -> dict:
    torch.manual_seed(config.train.seed)
    _check_qa_data(config)

    tokenizer = load_tokenizer(config.data.tokenizer)
    train_loader, val_loader = build_pretrain_loaders(
        config.data, tokenizer, seed=config.train.seed, rank=dist.rank, world_size=dist.world_size
    )
    model_cfg = config.model
    answer_vocab = list(getattr(train_loader, "answer_vocab", None) or [])
    if answer_vocab and config.objectives.weights.get("qa", 0) > 0:
        model_cfg = dataclasses.replace(model_cfg, num_answers=len(answer_vocab))
    model_cfg = _with_region_label_counts(model_cfg, config, train_loader.collator.regions)
    model = build_model(model_cfg, vocab_size=len(tokenizer))
    if config.objectives.soft_labels.teacher:
        check_vocabulary(config.objectives.soft_labels.teacher, tokenizer, "objectives.soft_labels.teacher")
    if model_cfg.init_from:
        check_vocabulary(model_cfg.init_from, tokenizer, "model.init_from")
        fresh = load_into(model, model_cfg.init_from)
        log.info("initialised from %s; fresh: %s", model_cfg.init_from, ", ".join(fresh) or "nothing")

    synth = config.objectives.itm.synthesized
    replaceable = replaceable_vocab_mask(tokenizer, synth.replaceable, size=model.vocab_size)
    first_word = first_word_vocab_mask(tokenizer, synth.replaceable, size=model.vocab_size)
    schedule = ModeSchedule(config.objectives.mode_schedule) if model_cfg.arch == "semvlp" else None
    objectives = PretrainingObjectives(
        config.objectives,
        model,
        replaceable,
        mask_token_id=tokenizer.mask_token_id,
        mode_schedule=schedule,
        first_word_vocab=first_word,
    )
    _persist_teacher(objectives, out, resume, dist.is_main)

    trainer = Trainer(
        objectives,
        train_loader,
        config.train,
        out,
        val_loader=val_loader,
        config_dict=config_to_dict(config),
    )
    result = trainer.fit(resume=resume)
    if dist.is_main:
        final = out / "final"
        save_pretrained(
            model,
            final,
            tokenizer=tokenizer,
            extra_config={"vlp_config": config_to_dict(config), "answer_vocab": answer_vocab},
        )
        log.info("saved the pre-trained model to %s", final)
    return result
