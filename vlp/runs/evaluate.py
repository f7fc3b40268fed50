"""`vlp evaluate`: a fine-tuned checkpoint on one split -> official metrics, result file, example sheet.

Wiring only: the checkpoint's task reads the split as released, the same task collator as fine-tuning
(eval transforms) batches it, :func:`vlp.train.evaluate.evaluate` predicts (sharded over torchrun ranks,
gathered) and scores; the main process writes the files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from vlp.config import DataConfig
from vlp.data.collate import Collator
from vlp.data.examples import ImageRegistry
from vlp.data.tokenizer import load_tokenizer
from vlp.files import write_json
from vlp.models.checkpoint import load, read_config
from vlp.sheets import SheetEntry, draw_contact_sheet
from vlp.tasks import get_task, retrieval
from vlp.tasks.base import require_images
from vlp.tasks.data import task_loader
from vlp.tasks.model import backbone_image_size, load_task_model
from vlp.train.distributed import all_gather_lists, init_distributed
from vlp.train.evaluate import Evaluation, evaluate

SHEET_EXAMPLES = 36


@dataclass
class EvaluateRequest:
    checkpoint: str
    data: str
    split: str
    images: str = ""
    task: str = ""  # "" = the checkpoint's task
    predictions: str = ""
    metrics: str = ""
    examples: str = ""
    batch_size: int = 64
    device: str = ""
    precision: str = "fp32"
    captions: str = ""  # retrieval: the Karpathy file (default: the one dataset_*.json in DATA)
    k: int = -1  # retrieval: ITC candidates re-ranked by ITM (0 = all; -1 = the checkpoint's, else 128)


@dataclass
class EvaluateOutcome:
    task: str
    split: str
    evaluation: Evaluation | retrieval.RetrievalResult
    records: int
    written: list[str]


def sheet_entries(task, records, predictions, count: int = SHEET_EXAMPLES, seed: int = 0) -> list[SheetEntry]:
    """``count`` records (a fixed random choice), each with its image(s), text and right/wrong mark."""
    chosen = list(records)
    random.Random(seed).shuffle(chosen)
    entries = []
    for record in chosen[:count]:
        images, lines, right = task.describe(record, predictions.get(task.uid(record)))
        entries.append(SheetEntry(images=list(images), lines=lines, correct=right))
    return entries


def run_evaluation(request: EvaluateRequest) -> EvaluateOutcome:
    dist = init_distributed(request.device or None)
    entry = read_config(request.checkpoint).get("task") or {}
    fine_tuned_for = entry.get("name")
    if request.task and fine_tuned_for and request.task != fine_tuned_for:
        raise ValueError(f"--task {request.task}: {request.checkpoint} is fine-tuned for {fine_tuned_for!r}")
    if retrieval.NAME in (request.task, fine_tuned_for):
        return _evaluate_retrieval(request, entry, dist)
    model, entry = load_task_model(request.checkpoint, dist.device)
    task_cls = get_task(entry["name"])
    root = Path(request.data)
    images = require_images(Path(request.images) if request.images else root / "images")
    records = task_cls.read(root, images, request.split)
    data_cfg = DataConfig(
        image_size=backbone_image_size(model.backbone),
        max_text_len=int(entry.get("max_text_len", DataConfig.max_text_len)),
        batch_size=request.batch_size,
    )
    tokenizer = load_tokenizer(request.checkpoint)
    items = model.task.items(records, ImageRegistry())
    loader = task_loader(
        model.task, items, tokenizer, data_cfg, train=False, seed=0,
        rank=dist.rank, world_size=dist.world_size, name=request.split,
    )  # fmt: skip
    result = evaluate(model, loader, records, dist.device, request.precision)
    written = []
    if dist.is_main:
        if request.predictions:
            write_json(request.predictions, model.task.result_file(result.predictions, records))
            written.append(request.predictions)
        if request.metrics:
            write_json(request.metrics, result.metrics)
            written.append(request.metrics)
        if request.examples:
            entries = sheet_entries(model.task, records, result.predictions)
            title = f"{entry['name']} {request.split}: {request.checkpoint}"
            draw_contact_sheet(entries, request.examples, title=title)
            written.append(request.examples)
    return EvaluateOutcome(entry["name"], request.split, result, len(records), written)


def _evaluate_retrieval(request: EvaluateRequest, entry: dict, dist) -> EvaluateOutcome:
    """Fine-tuned for retrieval, or zero-shot from pre-training (its ITC and ITM heads)."""
    backbone = load(request.checkpoint, dist.device)
    root = Path(request.data)
    images = require_images(Path(request.images) if request.images else root / "images")
    records = retrieval.read_split(root, images, request.split, request.captions)
    depth, itc_weight = retrieval.reranking(entry)
    k = request.k if request.k >= 0 else depth
    max_len = entry.get("max_text_len") or _pretraining_text_length(request.checkpoint)
    data_cfg = DataConfig(image_size=backbone_image_size(backbone), max_text_len=int(max_len))
    collator = Collator(load_tokenizer(request.checkpoint), data_cfg, train=False, mlm=False)
    mode = entry.get("fusion_mode", "single") if backbone.arch == "semvlp" else None
    result = retrieval.evaluate_split(
        backbone, records, collator, k=k, mode=mode, device=dist.device, rank=dist.rank,
        world_size=dist.world_size, gather=all_gather_lists, image_batch=request.batch_size,
        itc_weight=itc_weight,
    )  # fmt: skip
    written = []
    if dist.is_main:
        if request.predictions:
            files = retrieval.result_file(result.t2i, result.i2t, result.paths, result.captions)
            written.append(str(write_json(request.predictions, files)))
        if request.metrics:
            written.append(str(write_json(request.metrics, result.metrics)))
        if request.examples:
            title = f"retrieval {request.split} (k={result.metrics['k']}): {request.checkpoint}"
            draw_contact_sheet(retrieval.sheet_entries(result), request.examples, columns=3, title=title)
            written.append(request.examples)
    return EvaluateOutcome(retrieval.NAME, request.split, result, len(records), written)


def _pretraining_text_length(checkpoint: str) -> int:
    vlp_config = read_config(checkpoint).get("extra", {}).get("vlp_config", {})
    return int(vlp_config.get("data", {}).get("max_text_len", DataConfig.max_text_len))
