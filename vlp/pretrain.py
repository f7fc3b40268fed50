"""`vlp pretrain`: the run :func:`vlp.pretraining_setup.build_pretraining` builds -> trainer -> checkpoint.

This module only runs it in its run directory (lock, frozen teacher, final weights).
"""

from __future__ import annotations

import logging
from pathlib import Path

from safetensors.torch import load_model, save_model

from vlp.config import Config, config_to_dict
from vlp.models.checkpoint import save_pretrained
from vlp.objectives.pretraining import PretrainingObjectives
from vlp.pretraining_setup import build_pretraining
from vlp.train.distributed import init_distributed
from vlp.train.loop import Trainer
from vlp.train.state import refuse_existing_run, run_lock

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
    The run directory is locked for the whole run, and a run refused (checkpoints there, no ``resume``) is
    refused before anything is written.
    """
    out = Path(out_dir)
    dist = init_distributed()
    with run_lock(out, enabled=dist.is_main):
        refuse_existing_run(out, resume)
        return _pretrain(config, out, resume, dist)


def _pretrain(config: Config, out: Path, resume: bool, dist) -> dict:
    run = build_pretraining(config, dist)
    _persist_teacher(run.objectives, out, resume, dist.is_main)
    trainer = Trainer(
        run.objectives,
        run.train_loader,
        config.train,
        out,
        val_loader=run.val_loader,
        config_dict=config_to_dict(config),
    )
    result = trainer.fit(resume=resume)
    if dist.is_main:
        final = out / "final"
        save_pretrained(
            run.model,
            final,
            tokenizer=run.tokenizer,
            extra_config={"vlp_config": config_to_dict(config)},
            answer_vocab=run.answer_vocab,
        )
        log.info("saved the pre-trained model to %s", final)
    return result
