"""Config overrides that point a preset's data at a shapes world a test wrote (``write_shapes_world``)."""

from __future__ import annotations

from pathlib import Path


def data_overrides(
    root: Path, batch_size: int = 8, max_val_images: int = 8, max_text_len: int | None = None
) -> list[str]:
    """``data.*`` overrides reading the captions, images and tokenizer under ``root``."""
    overrides = [
        f"data.train={root / 'dataset_shapes.json'}",
        f"data.images_root={root / 'images'}",
        f"data.tokenizer={root / 'tokenizer'}",
        f"data.batch_size={batch_size}",
        f"data.max_val_images={max_val_images}",
    ]
    if max_text_len is not None:
        overrides.append(f"data.max_text_len={max_text_len}")
    return overrides


def vqa_override(root: Path) -> str:
    """``data.vqa`` naming the shapes world's VQA questions and annotations (for the QA objective)."""
    vqa = root / "vqa"
    return (
        f"data.vqa={vqa / 'v2_OpenEnded_mscoco_train2014_questions.json'},"
        f"{vqa / 'v2_mscoco_train2014_annotations.json'}"
    )
