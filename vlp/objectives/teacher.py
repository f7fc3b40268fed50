"""The frozen text-only teacher of ViLTA's soft labels (and of the synonym guard and ``synth_plausible``).

A teacher is any module called as ``teacher(input_ids, attention_mask, positions) -> logits [M, V]`` at the
``True`` positions: a language encoder with its MLM head. :func:`load_teacher` makes one

- from ``SoftLabelConfig.teacher == ""``: a deep copy of ``model.text_language_model()`` taken now (at
  initialisation, or from the checkpoint the run starts from);
- from a directory saved by vlp's ``save_pretrained``: that model's ``text_language_model()``;
- from a Hugging Face ``*ForMaskedLM`` directory (``config.json`` naming such an architecture).

The teacher is put in eval mode with ``requires_grad`` off; callers run it under ``torch.no_grad()``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import Tensor, nn


class MaskedLMTeacher(nn.Module):
    """Adapts a Hugging Face ``*ForMaskedLM`` model to the teacher call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, positions: Tensor) -> Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask.long()).logits
        return logits[positions]


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients, for good."""
    module.eval()
    module.requires_grad_(False)
    return module


def _is_hf_masked_lm(directory: Path) -> bool:
    config = directory / "config.json"
    if not config.is_file():
        return False
    try:
        tree = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    architectures = tree.get("architectures") if isinstance(tree, dict) else None
    if not isinstance(architectures, list):
        return False
    return any(isinstance(a, str) and a.endswith("ForMaskedLM") for a in architectures)


def load_hf_teacher(directory: str | Path) -> MaskedLMTeacher:
    """A Hugging Face ``*ForMaskedLM`` checkpoint from a local directory (never the network)."""
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(str(directory), local_files_only=True)
    return MaskedLMTeacher(model)


def load_vlp_teacher(directory: str | Path) -> nn.Module:
    """The text-only language model of a vlp checkpoint directory."""
    from vlp.models.checkpoint import load

    loaded = load(str(directory))
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    return model.text_language_model()


def load_teacher(path: str, model: nn.Module | None = None) -> nn.Module:
    """The frozen teacher: a copy of ``model``'s language model when ``path`` is empty, else the
    directory at ``path`` (vlp checkpoint or Hugging Face ``*ForMaskedLM``)."""
    if not path:
        if model is None:
            raise ValueError("objectives.soft_labels.teacher is empty and no model was given to copy")
        teacher = copy.deepcopy(model.text_language_model())
    else:
        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"objectives.soft_labels.teacher: {path} is not a directory (expected a vlp checkpoint "
                "or a Hugging Face *ForMaskedLM directory)"
            )
        if _is_hf_masked_lm(directory):
            teacher = load_hf_teacher(directory)
        else:
            try:
                teacher = load_vlp_teacher(directory)
            except (FileNotFoundError, KeyError, ValueError, OSError) as err:
                raise ValueError(
                    f"objectives.soft_labels.teacher: {path} is neither a Hugging Face *ForMaskedLM "
                    f"directory "
                    f"(config.json 'architectures') nor a loadable vlp checkpoint: {err}"
                ) from err
    return freeze(teacher)


@torch.no_grad()
def teacher_predict(
    teacher: nn.Module, input_ids: Tensor, attention_mask: Tensor, positions: Tensor
) -> Tensor:
    """The teacher's logits [M, V] at ``positions``, on the teacher's device, returned on the input's."""
    param = next(teacher.parameters(), None)
    device = param.device if param is not None else input_ids.device
    logits = teacher(input_ids.to(device), attention_mask.to(device), positions.to(device))
    return logits.to(input_ids.device)
