"""Reading tensor files into CPU tensors, with errors that name the file: safetensors files (one, or the
shards an ``.index.json`` lists) and torch pickles (``pytorch_model.bin``, ``trainer.pt``).

A missing file is a :class:`FileNotFoundError` (``"<what> not found: <path>"``); a file that is there but
cannot be parsed (truncated, overwritten, not the format its name says) is a :class:`WeightFileError`
naming it. What a file means (tied-weight aliases, which keys belong to which module) is for the caller.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


class WeightFileError(ValueError):
    """A tensor file that is there but cannot be read."""


def _existing(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _broken(path: Path, err: Exception) -> WeightFileError:
    return WeightFileError(f"{path} is broken ({type(err).__name__}: {err})")


def read_safetensors(
    path: str | os.PathLike, prefixes: tuple[str, ...] = (), what: str = "weight file"
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors of a safetensors file (only those whose names start with one of ``prefixes``, when
    given) and the file's metadata."""
    from safetensors import safe_open

    path = _existing(path, what)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys() if not prefixes or key.startswith(prefixes)}
    except Exception as err:  # safetensors raises its own error types (SafetensorError, ...)
        raise _broken(path, err) from None
    return tensors, metadata


def read_torch(path: str | os.PathLike, what: str = "torch file") -> Any:
    """A file written by ``torch.save``, loaded onto the CPU with ``weights_only=True``."""
    path = _existing(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or overwritten file: zip, pickle or EOF errors
        raise _broken(path, err) from None


def read_weights(
    path: str | os.PathLike, prefixes: tuple[str, ...] = (), what: str = "weight file"
) -> dict[str, Tensor]:
    """The tensors of a weight file, by its name: ``*.safetensors``, ``*.index.json`` (the safetensors
    shards it lists, beside it) or a torch state dict (``*.bin``, ``*.pt``); only those whose names start
    with one of ``prefixes``, when given."""
    path = _existing(path, what)
    if path.name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise _broken(path, err) from None
        out: dict[str, Tensor] = {}
        for shard in shards:
            out.update(read_safetensors(path.parent / shard, prefixes, what=f"shard listed in {path}")[0])
        return out
    if path.suffix == ".safetensors":
        return read_safetensors(path, prefixes, what)[0]
    state = read_torch(path, what)
    if not isinstance(state, dict):
        raise WeightFileError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return {key: value for key, value in state.items() if not prefixes or key.startswith(prefixes)}
