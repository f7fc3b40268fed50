"""Shared by the downstream quality tests: a small shapes world, a short pre-training of one family, and
fine-tuning runs on it (64 px images: smaller ones hide the shapes from a patch-8 tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vlp.config import load_config
from vlp.data.synthetic import SynthConfig, write_shapes_world
from vlp.pretrain import pretrain
from vlp.runs.finetune import FinetuneRequest, finetune

QUICK = ["train.progress=false", "train.log_every=25", "train.ckpt_every=0", "train.warmup_steps=15"]
PRETRAIN_STEPS = 150
FINETUNE_STEPS = 150
# task -> (data folder, images folder relative to the world or None for DATA/images)
DATA = {
    "vqa": ("vqa", "images"),
    "gqa": ("gqa", None),
    "nlvr2": ("nlvr2", None),
    "snli_ve": ("snli_ve", "snli_ve/flickr30k_images"),
    "retrieval": (".", None),
}


def shapes_world(root: Path) -> Path:
    write_shapes_world(SynthConfig(num_images=300, seed=0), root)
    return root


def pretrained(arch: str, shapes: Path, out: Path) -> Path:
    """``PRETRAIN_STEPS`` of MLM + ITM + ITC (SemVLP from scratch needs ITC to align the modalities;
    see the README's method notes)."""
    preset = {"vilta": "vilta-tiny-baseline", "semvlp": "semvlp-tiny"}[arch]
    extra = ["objectives.weights={mlm: 1.0, itm: 1.0, itc: 1.0}", "data.vqa="] if arch == "semvlp" else []
    config = load_config(
        preset,
        [
            f"data.train={shapes / 'dataset_shapes.json'}",
            f"data.images_root={shapes / 'images'}",
            f"data.tokenizer={shapes / 'tokenizer'}",
            f"train.max_steps={PRETRAIN_STEPS}",
            "train.val_every=0",
            *QUICK,
            *extra,
        ],
    )
    torch.manual_seed(0)
    pretrain(config, out)
    return out / "final"


def fine_tune(checkpoint: Path, shapes: Path, out: Path, task: str, *extra: str, steps: int = FINETUNE_STEPS):
    data, images = DATA[task]
    request = FinetuneRequest(
        task=task,
        init=str(checkpoint),
        out=str(out),
        data=str(shapes / data),
        images=str(shapes / images) if images else "",
        overrides=(f"train.max_steps={steps}", f"train.val_every={steps}", *QUICK, *extra),
    )
    return finetune(request)


def with_and_without_image(checkpoint: Path, shapes: Path, out: Path, task: str, metric: str) -> dict:
    """The best val ``metric`` fine-tuned normally and blind (the image replaced by zeros), and the
    majority baseline; printed, so the test log keeps the figures."""
    full = fine_tune(checkpoint, shapes, out / task, task)
    blind = fine_tune(checkpoint, shapes, out / f"{task}-blind", task, "task.question_only=true")
    figures = {
        "task": task,
        "score": full[f"best/{metric}"],
        "blind": blind[f"best/{metric}"],
        "majority": full["baseline/majority"],
    }
    print(json.dumps(figures))
    return figures
