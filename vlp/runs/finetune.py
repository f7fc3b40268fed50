"""`vlp finetune TASK`: a pre-trained checkpoint (or a preset from scratch) -> a fine-tuned task model.

Wiring only: split files -> records -> task items -> loaders; backbone + task head -> the one trainer,
which evaluates the task metric on the val split every ``train.val_every`` steps and keeps the best
model (by that metric, val only) in ``OUT/best`` next to the checkpoints; the last model goes to
``OUT/final``. Both are fine-tuned checkpoints that ``vlp evaluate`` / ``vlp predict`` / the API read.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from vlp.config import Config, ConfigError, ModeScheduleConfig, config_to_dict, load_config
from vlp.data.collate import Collator
from vlp.data.examples import ImageRegistry, PairDataset
from vlp.data.loader import PretrainLoader
from vlp.data.tokenizer import load_tokenizer
from vlp.files import write_json
from vlp.models import build_model
from vlp.models.checkpoint import load, read_config, save_pretrained
from vlp.objectives import PretrainingObjectives
from vlp.tasks import get_task, retrieval
from vlp.tasks.base import require_images
from vlp.tasks.data import TaskCollator, task_loader
from vlp.tasks.head_warmup import warm_up_head
from vlp.tasks.model import TaskModel, TaskStep, backbone_image_size, save_task_model
from vlp.train.distributed import init_distributed
from vlp.train.evaluate import RetrievalEvaluator, TaskEvaluator
from vlp.train.loop import Trainer
from vlp.train.schedules import ModeSchedule
from vlp.train.state import find_latest, run_lock

log = logging.getLogger(__name__)

BASELINES_FILE = "baselines.json"


@dataclass
class FinetuneRequest:
    """What the command line says (``--init none`` or "" = from scratch, which needs ``preset``)."""

    task: str
    init: str
    out: str
    data: str
    images: str = ""
    train_split: str = ""
    val_split: str = ""
    preset: str = ""
    overrides: tuple[str, ...] = ()
    resume: bool = False


def default_preset(task: str, checkpoint_config: dict) -> str:
    """``<task>-<arch>-<scale>``: base for a backbone of width 768 or more, tiny below."""
    width = checkpoint_config.get("model", {}).get("hidden_size", 0)
    return f"{task}-{checkpoint_config['arch']}-{'base' if width >= 768 else 'tiny'}"


def _backbone_and_config(request: FinetuneRequest):
    """The backbone, its tokenizer and the run's config (the architecture from the checkpoint)."""
    from_scratch = request.init in ("", "none")
    if from_scratch:
        if not request.preset:
            raise ConfigError(
                f"--init none fine-tunes from scratch and needs --config PRESET for the architecture "
                f"(e.g. {request.task}-vilta-tiny)"
            )
        config = load_config(request.preset, list(request.overrides))
        tokenizer = load_tokenizer(config.data.tokenizer)
        torch.manual_seed(config.train.seed)
        return build_model(config.model, vocab_size=len(tokenizer)), tokenizer, config
    checkpoint = read_config(request.init)
    config = load_config(request.preset or default_preset(request.task, checkpoint), list(request.overrides))
    backbone = load(request.init).train()
    config.model = copy.deepcopy(backbone.config)
    config.model.init_from = str(request.init)
    config.data.tokenizer = str(request.init)
    return backbone, load_tokenizer(request.init), config


def _task_fields(config: Config, request: FinetuneRequest, task_cls) -> None:
    task = config.task
    task.name = request.task
    task.data = str(request.data)
    task.images = str(request.images or Path(request.data) / "images")
    task.train_split = request.train_split or task.train_split or task_cls.train_split
    task.val_split = request.val_split or task.val_split or task_cls.val_split


def finetune(request: FinetuneRequest) -> dict:
    """Fine-tune and return the final metrics (``eval/<metric>``, ``best/<metric>``, baselines, ...).

    The run directory is locked for the whole run (the trainer's checks, then ``final`` and baselines)."""
    with run_lock(request.out, enabled=init_distributed().is_main):
        return _finetune(request)


def _finetune(request: FinetuneRequest) -> dict:
    task_cls = get_task(request.task)
    backbone, tokenizer, config = _backbone_and_config(request)
    _task_fields(config, request, task_cls)
    if backbone.config.visual_input == "regions":
        raise ConfigError("fine-tuning reads pixels: a SemVLP checkpoint on region features is not supported")
    if config.data.hflip and not task_cls.flip_safe:
        raise ConfigError(f"data.hflip: {request.task} cannot be trained on mirrored images; set it false")
    config.data.image_size = backbone_image_size(backbone)
    out = Path(request.out)
    dist = init_distributed()

    if request.task == retrieval.NAME:
        return _finetune_retrieval(request, backbone, tokenizer, config, out, dist)
    root, images = Path(config.task.data), require_images(Path(config.task.images))
    train_records = task_cls.read(root, images, config.task.train_split)
    val_records = task_cls.read(root, images, config.task.val_split)
    if config.task.max_val_examples > 0:
        val_records = val_records[: config.task.max_val_examples]
    task = task_cls.build(train_records, config.task)
    torch.manual_seed(config.train.seed)  # the head's initialisation
    model = TaskModel(
        backbone, task, fusion_mode=config.task.fusion_mode, question_only=config.task.question_only
    )
    registry = ImageRegistry()
    common = dict(rank=dist.rank, world_size=dist.world_size, seed=config.train.seed)
    train_items = task.items(train_records, registry, train=True)
    train_loader = task_loader(task, train_items, tokenizer, config.data, train=True, **common)
    val_loader = task_loader(
        task,
        task.items(val_records, registry),
        tokenizer,
        config.data,
        train=False,
        batch_size=config.task.eval_batch_size or config.data.batch_size,
        name="val",
        **common,
    )
    evaluator = TaskEvaluator(task, val_loader, val_records, dist.device, config.train.precision)
    resumed = request.resume and find_latest(out) is not None  # its head is in the checkpoint
    warmup = {} if resumed else _warm_up_head(model, train_items, tokenizer, config, dist.device)
    trainer = Trainer(
        TaskStep(model),
        train_loader,
        config.train,
        out,
        config_dict=config_to_dict(config),
        evaluator=evaluator,
        export=lambda directory: save_task_model(model, directory, tokenizer, config.data),
    )
    result = {**warmup, **trainer.fit(resume=request.resume)}
    baselines = task.baselines(train_records, val_records)
    if dist.is_main:
        save_task_model(model, out / "final", tokenizer, config.data)
        write_json(out / BASELINES_FILE, {"split": config.task.val_split, "metric": task.metric, **baselines})
    result.update({f"baseline/{name}": value for name, value in baselines.items()})
    return result


def _warm_up_head(model: TaskModel, items, tokenizer, config: Config, device: torch.device) -> dict:
    """``task.head_warmup_epochs`` of the head alone on frozen features (nothing when 0); its figures."""
    if not config.task.head_warmup_epochs:
        return {}
    return warm_up_head(
        model.to(device), items, TaskCollator(model.task, tokenizer, config.data, train=False), config.train,
        config.task.head_warmup_epochs, config.task.head_warmup_batch_size, device,
        feature_batch_size=config.task.eval_batch_size or config.data.batch_size,
    )  # fmt: skip


def _finetune_retrieval(request, backbone, tokenizer, config: Config, out: Path, dist) -> dict:
    """ITC + ITM on the training captions (the pre-training objectives), R@k on val selects the best."""
    if config.task.head_warmup_epochs:
        raise ConfigError(
            "task.head_warmup_epochs: retrieval fine-tunes the model's own ITC and ITM heads, there is no "
            "fresh task head to warm up; set it to 0"
        )
    root, images = Path(config.task.data), require_images(Path(config.task.images))
    train_records = retrieval.read_split(root, images, config.task.train_split, config.task.captions)
    val_records = retrieval.read_split(root, images, config.task.val_split, config.task.captions)
    if config.task.max_val_examples > 0:
        val_records = val_records[: config.task.max_val_examples]
    mode = config.task.fusion_mode if backbone.arch == "semvlp" else None
    schedule = ModeSchedule(ModeScheduleConfig(kind=mode)) if mode else None
    objectives = PretrainingObjectives(config.objectives, backbone, mode_schedule=schedule)
    train_loader = PretrainLoader(
        PairDataset(train_records),
        Collator(tokenizer, config.data, train=True, mlm=False),
        batch_size=config.data.batch_size, seed=config.train.seed, rank=dist.rank, world_size=dist.world_size,
        num_workers=config.data.num_workers, max_bad_fraction=config.data.max_bad_fraction,
    )  # fmt: skip
    eval_collator = Collator(tokenizer, config.data, train=False, mlm=False)
    evaluator = RetrievalEvaluator(
        val_records, eval_collator, k=config.task.rerank_k, itc_weight=config.task.rerank_itc_weight,
        mode=mode, dist=dist,
    )  # fmt: skip

    def export(directory: Path) -> None:
        save_pretrained(backbone, directory, tokenizer=tokenizer, task=retrieval.task_entry(config))

    trainer = Trainer(
        objectives, train_loader, config.train, out, config_dict=config_to_dict(config),
        evaluator=evaluator, export=export,
    )  # fmt: skip
    result = trainer.fit(resume=request.resume)
    chance_r1 = 100.0 / len(val_records)  # caption -> image R@1 of a random ranking, in percent
    if dist.is_main:
        export(out / "final")
        baselines = {"split": config.task.val_split, "metric": "rsum", "chance_r1": chance_r1}
        write_json(out / BASELINES_FILE, baselines)
    result["baseline/chance_r1"] = chance_r1
    return result
