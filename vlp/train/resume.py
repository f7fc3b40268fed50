"""Resuming a run: which config changes a checkpoint accepts, and restoring weights and learning rates.

A resumed run may change the keys in :data:`RESUME_CHANGEABLE` (applied from the new config and logged);
any other change of the config is refused with every differing key named, old and new value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from vlp.config import ConfigError
from vlp.train import state as ckpt

# Config keys a resumed run may change: they are applied from the new config (and logged). Any other
# change is refused. ``train.lr_mult_*`` and ``train.lr`` set the optimizer's base rates, ``max_steps``
# and ``warmup_steps`` the schedule; the rest only steer logging, evaluation, checkpoints and loading.
RESUME_CHANGEABLE = frozenset(
    {
        "train.lr", "train.lr_mult_encoders", "train.lr_mult_fusion", "train.lr_mult_heads",
        "train.max_steps", "train.warmup_steps", "train.clip_norm", "train.log_every", "train.val_every",
        "train.val_batches", "train.ckpt_every", "train.keep_checkpoints", "train.progress",
        "data.num_workers", "data.max_bad_fraction", "task.eval_batch_size", "task.max_val_examples",
    }
)  # fmt: skip


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict) or not tree:
        return {prefix.rstrip("."): tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, float | int) and isinstance(new, float | int) and not isinstance(old, bool):
        return old == new or (math.isnan(old) and math.isnan(new))
    return old == new


def resume_config_changes(saved: dict, current: dict) -> tuple[list[str], list[str]]:
    """Compare a checkpoint's config with the resuming run's: ``(applied, refused)``, each a list of
    ``"key: old -> new"`` for the keys whose values differ (see :data:`RESUME_CHANGEABLE`); a key only one
    side has (e.g. a new loss weight) counts as a change from or to ``(not set)``."""
    old = _flatten(saved)
    new = _flatten(json.loads(json.dumps(current, default=str)))  # as the checkpoint stored it
    applied, refused = [], []
    for key in sorted(old.keys() | new.keys()):
        before, after = (repr(side[key]) if key in side else "(not set)" for side in (old, new))
        if key not in old or key not in new or not _same(old[key], new[key]):
            (applied if key in RESUME_CHANGEABLE else refused).append(f"{key}: {before} -> {after}")
    return applied, refused


def check_resume_config(path: Path, config_dict: dict | None) -> list[str]:
    """The changes of ``config_dict`` (this run's config) to the one checkpoint ``path`` was written with,
    all of which resume can apply; any other change is a ``ConfigError`` naming each key with its old and
    new value. Nothing to compare (no saved or no current config): no changes."""
    saved = ckpt.read_saved_config(path)
    if saved is None or config_dict is None:
        return []
    applied, refused = resume_config_changes(saved, config_dict)
    if refused:
        raise ConfigError(
            f"--resume: {path / ckpt.CONFIG_FILE} was written with another config, and these keys cannot "
            f"change on resume: {'; '.join(refused)}. Resume with the old values, or start a new run in "
            "another directory (see 'What resume honours' in the README)"
        )
    return applied


def load_model_state(model: nn.Module, path: Path, state: dict[str, Tensor]) -> None:
    """``model``'s weights from ``state`` (read from checkpoint ``path``); a mismatch is one
    :class:`~vlp.train.state.CheckpointError` naming the first differing keys."""
    mine = model.state_dict()
    problems = {
        "missing": [k for k in mine if k not in state],
        "unexpected": [k for k in state if k not in mine],
        "shape mismatch": [
            f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
            for k, v in mine.items()
            if k in state and state[k].shape != v.shape
        ],
    }
    if any(problems.values()):
        shown = "; ".join(f"{name} {items[:3]}" for name, items in problems.items() if items)
        raise ckpt.CheckpointError(f"{path / ckpt.MODEL_FILE} does not match the model: {shown}")
    model.load_state_dict(state)


def apply_learning_rates(optimizer: Any, scheduler: Any, base_lrs: list[float]) -> None:
    """This run's base learning rates (``train.lr`` x multipliers) on the restored optimizer, at the
    restored point of the schedule (the optimizer's saved state would otherwise keep the old ones)."""
    scheduler.base_lrs = list(base_lrs)
    for group, base, factor in zip(optimizer.param_groups, base_lrs, scheduler.lr_lambdas, strict=True):
        group["initial_lr"] = base
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
