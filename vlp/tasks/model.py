"""A task model is a backbone (ViLTA or SemVLP) plus a task head, saved as one checkpoint directory.

The head reads the pooled pair representation (``FusedFeatures.pooled``); for a task with several
image-text pairs per item (NLVR2: the statement with each image) it reads their concatenation. A
fine-tuned checkpoint is the backbone's ``save_pretrained`` directory (so ``vlp.load`` still loads the
backbone) whose ``config.json`` carries a ``task`` entry, plus ``task_head.safetensors``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vlp.config import FUSION_MODES, DataConfig
from vlp.data.batch import Batch
from vlp.files import replace_atomically
from vlp.models.checkpoint import load, read_config, save_pretrained
from vlp.objectives.base import ObjectiveOutput
from vlp.tasks.base import Prediction, Task, TaskBatch
from vlp.weights import read_safetensors

TASK_HEAD_FILE = "task_head.safetensors"


class TaskModel(nn.Module):
    """``backbone`` + ``task``'s head. ``fusion_mode``: the SemVLP mode (ignored for ViLTA);
    ``question_only``: the image is replaced by zeros (a baseline that cannot see it)."""

    def __init__(
        self, backbone: nn.Module, task: Task, *, fusion_mode: str = "single", question_only: bool = False
    ) -> None:
        super().__init__()
        if fusion_mode not in FUSION_MODES:
            raise ValueError(f"task.fusion_mode: expected one of {FUSION_MODES}, got {fusion_mode!r}")
        self.backbone = backbone
        self.pooled_size = backbone.heads.itm_head.in_features
        self.head = task.build_head(self.pooled_size * task.pairs_per_item)
        object.__setattr__(self, "task", task)  # plain object, not a module
        self.fusion_mode = fusion_mode
        self.question_only = question_only

    @property
    def arch(self) -> str:
        return self.backbone.arch

    def pair_representation(self, batch: Batch) -> Tensor:
        """The pooled representation ``[rows, P]`` of every image-text row of ``batch``."""
        backbone = self.backbone
        visual = batch.visual
        if self.question_only:  # the same input layout, no visual content
            blank = {
                name: torch.zeros_like(value)
                for name in ("pixel_values", "region_features")
                if (value := getattr(visual, name)) is not None
            }
            visual = dataclasses.replace(visual, **blank)
        text = backbone.embed_text(batch.input_ids, batch.attention_mask)
        images = backbone.embed_image(visual)
        mode = self.fusion_mode if backbone.arch == "semvlp" else None
        return backbone.fuse(text, images, batch.image_index, mode=mode).pooled

    def forward(self, batch: TaskBatch) -> Tensor:
        """Logits ``[items, classes]``."""
        return self.head(self.head_input(batch))

    def head_input(self, batch: TaskBatch) -> Tensor:
        """What the head reads: each item's pair representations, concatenated ``[items, pairs x P]``."""
        pooled = self.pair_representation(batch.batch)
        pairs = self.task.pairs_per_item
        if pooled.shape[0] != batch.size * pairs:
            raise ValueError(
                f"{self.task.name}: a batch of {batch.size} items has {pooled.shape[0]} image-text rows, "
                f"expected {pairs} per item"
            )
        return pooled.reshape(batch.size, -1)

    @torch.no_grad()
    def predict(self, batch: TaskBatch, top_k: int = 5) -> list[Prediction]:
        """The task's predictions for ``batch`` (call in eval mode)."""
        return self.task.predict(self(batch), batch.uids, top_k=top_k)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = self.backbone.parameter_groups()
        seen = {id(p) for params in groups.values() for p in params}
        groups["heads"] = groups.get("heads", []) + [
            p for p in self.head.parameters() if p.requires_grad and id(p) not in seen
        ]
        return groups

    # ---- what a checkpoint records besides the weights

    def task_entry(self, data: DataConfig) -> dict[str, Any]:
        return {
            "name": self.task.name,
            "state": self.task.state,
            "fusion_mode": self.fusion_mode,
            "question_only": self.question_only,
            "max_text_len": data.max_text_len,
        }


def backbone_image_size(backbone: nn.Module) -> int:
    """The image side the backbone's visual input expects (its one source: the model config)."""
    return int(backbone.config.vision.image_size)


def save_task_model(model: TaskModel, directory: str | Path, tokenizer: Any, data: DataConfig) -> Path:
    """Write the fine-tuned model: head weights first, then the backbone with its ``config.json`` last."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    head = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
    replace_atomically(directory / TASK_HEAD_FILE, lambda tmp: save_file(head, str(tmp)))
    return save_pretrained(model.backbone, directory, tokenizer=tokenizer, task=model.task_entry(data))


def read_task_entry(directory: str | Path) -> dict[str, Any]:
    """The ``task`` entry of a checkpoint; a clear error for a pre-trained checkpoint without one."""
    config = read_config(directory)
    entry = config.get("task")
    if not entry:
        raise ValueError(
            f"{Path(directory)} is a pre-trained checkpoint with no task (config.json has no 'task'): "
            "fine-tune it first with `vlp finetune TASK --init DIR ...`"
        )
    return entry


def load_task_model(directory: str | Path, device: str | torch.device = "cpu") -> tuple[TaskModel, dict]:
    """The fine-tuned model saved in ``directory`` (eval mode) and its ``task`` entry."""
    from vlp.tasks import get_task

    directory = Path(directory)
    entry = read_task_entry(directory)
    if entry.get("name") == "retrieval":
        raise ValueError(
            f"{directory} is fine-tuned for retrieval, which ranks pairs with the model's own ITC and ITM "
            "heads: use `vlp evaluate --task retrieval` or Predictor.retrieve()"
        )
    task = get_task(entry.get("name", ""))(entry.get("state") or {})
    backbone = load(directory)
    model = TaskModel(
        backbone,
        task,
        fusion_mode=entry.get("fusion_mode", "single"),
        question_only=bool(entry.get("question_only", False)),
    )
    path = directory / TASK_HEAD_FILE
    state = read_safetensors(path, what="task head weights")[0]
    own = model.head.state_dict()
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape] + [
        k for k in state if k not in own
    ]
    if bad:
        shapes = ", ".join(
            f"{k} file {list(state[k].shape) if k in state else 'absent'} vs head "
            f"{list(own[k].shape) if k in own else 'absent'}"
            for k in bad[:4]
        )
        raise ValueError(f"{path} does not fit the {task.name} head of this checkpoint: {shapes}")
    model.head.load_state_dict(state)
    return model.to(device).eval(), entry


class TaskStep(nn.Module):
    """The trainer's step module for fine-tuning: the task loss of a batch, by the task's name."""

    def __init__(self, model: TaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: TaskBatch, step: int) -> ObjectiveOutput:
        if batch.targets is None:
            raise ValueError(f"{self.model.task.name}: a training batch has no targets (unlabelled split?)")
        loss, metrics = self.model.task.loss(self.model(batch), batch.targets)
        name = self.model.task.name
        return ObjectiveOutput(losses={name: loss}, metrics=metrics).weighted({name: 1.0})
