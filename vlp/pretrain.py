"""`vlp pretrain`: files -> records -> batches -> model -> objectives -> trainer -> checkpoint.

This module only wires the parts together; each part lives in its own package.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from vlp.config import Config, config_to_dict
from vlp.data.masking import replaceable_vocab_mask
from vlp.data.pipeline import build_pretrain_loaders
from vlp.data.tokenizer import load_tokenizer
from vlp.models import build_model
from vlp.models.checkpoint import load_into, save_pretrained
from vlp.objectives.pretraining import PretrainingObjectives
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


def pretrain(config: Config, out_dir: str | Path, resume: bool = False) -> dict:
    """Pre-train ``config.model`` on ``config.data`` with ``config.objectives``; returns final metrics.

    The final weights are written with ``save_pretrained`` to ``OUT/final`` (loadable with ``vlp.load``).
    """
    out = Path(out_dir)
    dist = init_distributed()
    torch.manual_seed(config.train.seed)

    tokenizer = load_tokenizer(config.data.tokenizer)
    train_loader, val_loader = build_pretrain_loaders(
        config.data, tokenizer, seed=config.train.seed, rank=dist.rank, world_size=dist.world_size
    )
    model_cfg = config.model
    answer_vocab = list(getattr(train_loader, "answer_vocab", None) or [])
    if answer_vocab and config.objectives.weights.get("qa", 0) > 0:
        model_cfg = dataclasses.replace(model_cfg, num_answers=len(answer_vocab))
    model = build_model(model_cfg, vocab_size=len(tokenizer))
    if model_cfg.init_from:
        fresh = load_into(model, model_cfg.init_from)
        log.info("initialised from %s; fresh: %s", model_cfg.init_from, ", ".join(fresh) or "nothing")

    synth = config.objectives.itm.synthesized
    replaceable = replaceable_vocab_mask(tokenizer, synth.replaceable, size=model.vocab_size)
    schedule = ModeSchedule(config.objectives.mode_schedule) if model_cfg.arch == "semvlp" else None
    objectives = PretrainingObjectives(
        config.objectives,
        model,
        replaceable,
        mask_token_id=tokenizer.mask_token_id,
        mode_schedule=schedule,
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
