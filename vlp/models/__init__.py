"""Models: ViLTA and SemVLP behind one protocol (see ``vlp.models.vilta`` / ``vlp.models.semvlp``).

``build_model`` builds either from a :class:`~vlp.config.ModelConfig`; ``parameter_table`` counts
parameters per component (``vlp model info``); checkpoints live in :mod:`vlp.models.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlp.config import ModelConfig
from vlp.models.info import parameter_table

ARCHS = ("vilta", "semvlp")
# `vlp model info` on a from-scratch preset whose vocabulary comes from a tokenizer not built yet.
NOMINAL_VOCAB = 1000

__all__ = ["ARCHS", "build_model", "construct_model", "parameter_table"]


def construct_model(
    model_cfg: ModelConfig,
    vocab_size: int = 0,
    *,
    load_weights: bool = True,
    hf_configs: dict[str, Any] | None = None,
) -> nn.Module:
    """The model class for ``model_cfg.arch``, built on the current default device."""
    if not model_cfg.init_std > 0:
        raise ValueError(f"model.init_std: expected a positive standard deviation, got {model_cfg.init_std}")
    if model_cfg.arch == "vilta":
        from vlp.models.vilta import ViLTA

        return ViLTA(model_cfg, vocab_size, load_weights=load_weights, hf_configs=hf_configs)
    if model_cfg.arch == "semvlp":
        from vlp.models.semvlp import SemVLP

        return SemVLP(model_cfg, vocab_size, load_weights=load_weights, hf_configs=hf_configs)
    raise ValueError(f"model.arch: expected one of {', '.join(ARCHS)}, got {model_cfg.arch!r}")


def build_model(model_cfg: ModelConfig, vocab_size: int = 0, meta_only: bool = False) -> nn.Module:
    """Build a model; pretrained directories named in the config are loaded (never downloaded).

    ``vocab_size``: the tokenizer's length; 0 = ``model.text.vocab_size`` or the pretrained directory.
    ``meta_only``: build the architecture on the meta device without reading any weights (parameter
    counting); a pretrained directory that does not exist is then replaced by the config fields.
    """
    if not meta_only:
        return construct_model(model_cfg, vocab_size)
    notes = []
    has_dir = bool(model_cfg.text.pretrained) and Path(model_cfg.text.pretrained).is_dir()
    if vocab_size <= 0 and model_cfg.text.vocab_size <= 0 and not has_dir:
        vocab_size = NOMINAL_VOCAB
        notes.append(f"vocab_size unknown (it comes from the tokenizer): counted with {NOMINAL_VOCAB}")
    with torch.device("meta"):
        model = construct_model(model_cfg, vocab_size, load_weights=False)
    model.load_report = notes + model.load_report
    return model
