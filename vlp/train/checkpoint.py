"""Atomic, resumable training checkpoints.

Layout under a run directory ``out``::

    out/checkpoints/
      latest                      text file naming the newest complete checkpoint (the commit point)
      step-00000100/
        model.safetensors         model weights (tied weights stored once, aliases in the metadata)
        extra.safetensors         extra trainable modules, keys "<name>.<param>" (only if any)
        trainer.pt                optimizer, LR scheduler, grad scaler, step, epoch, last metrics
        rank-00000.pt ...         per rank: RNG states (python, numpy, torch, cuda), loader position,
                                  the open logging window
        config.json               the run's config (if given)
        meta.json                 written last: step, world size, files

A checkpoint is written into ``.tmp-step-...`` next to its final place, every file is fsynced, the
directory is renamed into place (``os.replace``), and only then is ``latest`` replaced atomically. A
crash at any point leaves the previous ``latest`` and its checkpoint untouched; leftovers named ``.tmp-*``
are ignored by :func:`find_latest` and removed by the next save. Under several processes every rank writes
its own ``rank-*.pt``, so ``out`` must be on a filesystem all nodes share.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor, nn

from vlp.train.distributed import barrier

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
MARKER = "latest"
META = "meta.json"
MODEL_FILE = "model.safetensors"
EXTRA_FILE = "extra.safetensors"
TRAINER_FILE = "trainer.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not match the run resuming from it."""


# --------------------------------------------------------------------------- files


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_torch(path: Path, obj: Any) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def _write_json(path: Path, obj: Any) -> None:
    _write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8"))


def _replace_file_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    _write_bytes(tmp, text.encode("utf-8"))
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def tensors_to_bytes(state: dict[str, Tensor]) -> bytes:
    """safetensors bytes of ``state``; a tensor that appears under several names is stored once."""
    stored: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, tensor in state.items():
        tensor = tensor.detach()
        key = (
            tensor.device,
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tuple(tensor.stride()),
            tensor.dtype,
        )
        if tensor.numel() > 0 and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        # A private contiguous CPU copy: safetensors refuses tensors that share memory.
        stored[name] = tensor.to("cpu", copy=True).contiguous()
    return save_safetensors_bytes(stored, metadata={"aliases": json.dumps(aliases)})


def load_tensors(path: str | Path) -> dict[str, Tensor]:
    """Read a safetensors file written by :func:`tensors_to_bytes`, aliases restored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        state = {name: f.get_tensor(name) for name in f.keys()}
    for alias, target in json.loads(metadata.get("aliases", "{}")).items():
        state[alias] = state[target]
    return state


# --------------------------------------------------------------------------- RNG


def rng_state() -> dict[str, Any]:
    """This process's RNG states: python, numpy, torch CPU and (if in use) the current CUDA device."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# --------------------------------------------------------------------------- finding


def checkpoint_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / CHECKPOINT_DIR


def _step_of(path: Path) -> int | None:
    match = _STEP_DIR.match(path.name)
    return int(match.group(1)) if match else None


def _is_complete(path: Path) -> bool:
    return _step_of(path) is not None and (path / META).is_file()


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_root(out_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _is_complete(p)]
    return sorted(found, key=lambda p: _step_of(p) or 0)


def find_latest(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of the run in ``out_dir``, or None.

    The ``latest`` marker decides; if it is missing or names a directory that is gone or incomplete,
    the complete checkpoint with the highest step is used.
    """
    root = checkpoint_root(out_dir)
    marker = root / MARKER
    if marker.is_file():
        named = root / marker.read_text(encoding="utf-8").strip()
        if named.is_dir() and _is_complete(named):
            return named
        log.warning("checkpoint marker %s names %s, which is not a complete checkpoint", marker, named)
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    meta_path = path / META
    if not meta_path.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint: {META} is missing")
    with open(meta_path, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------- saving


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    model_state: dict[str, Tensor] | None = None,
    extra_state: dict[str, Tensor] | None = None,
    trainer_state: dict[str, Any] | None = None,
    rank_state: dict[str, Any] | None = None,
    config_dict: dict | None = None,
    keep: int = 0,
) -> Path:
    """Write checkpoint ``step`` atomically and return its directory; collective under several ranks.

    Every rank calls this with its own ``rank_state``; only rank 0's ``model_state``, ``extra_state``,
    ``trainer_state`` and ``config_dict`` are written. ``keep > 0`` keeps only the newest ``keep``
    checkpoints (never the one ``latest`` names).
    """
    root = checkpoint_root(out_dir)
    name = f"step-{step:08d}"
    final = root / name
    tmp = root / f".tmp-{name}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in root.glob(".trash-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        tmp.mkdir()
    barrier()
    _write_torch(tmp / f"rank-{rank:05d}.pt", rank_state or {})
    barrier()
    if rank == 0:
        if model_state is None or trainer_state is None:
            raise ValueError("rank 0 must pass model_state and trainer_state to save_checkpoint")
        files = [f"rank-{r:05d}.pt" for r in range(world_size)]
        _write_bytes(tmp / MODEL_FILE, tensors_to_bytes(model_state))
        files.append(MODEL_FILE)
        if extra_state:
            _write_bytes(tmp / EXTRA_FILE, tensors_to_bytes(extra_state))
            files.append(EXTRA_FILE)
        _write_torch(tmp / TRAINER_FILE, trainer_state)
        files.append(TRAINER_FILE)
        if config_dict is not None:
            _write_json(tmp / "config.json", config_dict)
            files.append("config.json")
        _write_json(tmp / META, {"format": 1, "step": step, "world_size": world_size, "files": files})
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again: move the old copy aside first
            trash = root / f".trash-{name}"
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(final, trash)
        os.replace(tmp, final)
        _fsync_dir(root)
        _replace_file_atomically(root / MARKER, name + "\n")
        _prune(out_dir, keep, protect=final)
    barrier()
    return final


def _prune(out_dir: str | Path, keep: int, protect: Path) -> None:
    if keep <= 0:
        return
    root = checkpoint_root(out_dir)
    for old in list_checkpoints(out_dir)[:-keep]:
        if old == protect:
            continue
        # Renamed first, so a half-deleted directory never looks like a checkpoint.
        trash = root / f".trash-{old.name}"
        os.replace(old, trash)
        shutil.rmtree(trash, ignore_errors=True)
    for leftover in root.glob(".trash-*"):
        shutil.rmtree(leftover, ignore_errors=True)


# --------------------------------------------------------------------------- loading


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def read_trainer_state(path: str | Path) -> dict[str, Any]:
    return _torch_load(Path(path) / TRAINER_FILE)


def read_rank_state(path: str | Path, rank: int, world_size: int) -> dict[str, Any]:
    """The RNG / loader state rank ``rank`` saved; the world size must match the saving run's."""
    path = Path(path)
    saved = read_meta(path).get("world_size", 1)
    if saved != world_size:
        raise CheckpointError(
            f"{path} was written by {saved} process(es) but this run has {world_size}: resume with the "
            "same number of processes (the data position and RNG states are per process)"
        )
    return _torch_load(path / f"rank-{rank:05d}.pt")


def read_extra_state(path: str | Path) -> dict[str, Tensor]:
    extra = Path(path) / EXTRA_FILE
    return load_tensors(extra) if extra.is_file() else {}


def load_model_weights(path: str | Path, model: nn.Module, strict: bool = True) -> nn.Module:
    """Load a checkpoint's ``model.safetensors`` into ``model`` (e.g. for fine-tuning or inference)."""
    state = load_tensors(Path(path) / MODEL_FILE)
    result = model.load_state_dict(state, strict=strict)
    if not strict and (result.missing_keys or result.unexpected_keys):
        log.info("loaded %s: missing %s, unexpected %s", path, result.missing_keys, result.unexpected_keys)
    return model
