"""Training state on disk: atomic, resumable checkpoints and the run directory that holds them.

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

Safety: a run directory is held under an exclusive lock (``out/.lock``, see :func:`run_lock`) by the
process training in it; a checkpoint whose weights are not finite is never written; a full disk removes
the partial checkpoint and names the device; a checkpoint whose files cannot be read is reported by file
and the trainer falls back to the newest intact one; resuming compares the saved config with the new one
(:func:`vlp.train.resume.resume_config_changes`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor, nn

from vlp.files import fsync_dir, replace_text
from vlp.train.distributed import barrier
from vlp.weights import WeightFileError, read_safetensors, read_torch

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
MARKER = "latest"
META = "meta.json"
MODEL_FILE = "model.safetensors"
EXTRA_FILE = "extra.safetensors"
TRAINER_FILE = "trainer.pt"
CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or written, or that does not match the run resuming from it."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file that is missing or cannot be parsed (the trainer then tries an older checkpoint)."""


class RunDirectoryError(ValueError):
    """A run directory that cannot be used: held by another process, not a directory, not writable."""


# --------------------------------------------------------------------------- files


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Write and fsync ``path``; a full disk is a :class:`CheckpointError` naming the device and the file."""
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointError(f"no space left on {_mount_point(path.parent)} writing {path}") from None
        raise


def write_torch(path: Path, obj: Any) -> None:
    """``torch.save`` ``obj`` into ``path`` and fsync it; a full disk is a :class:`CheckpointError`."""
    buffer = io.BytesIO()  # serialised first, so that a write error surfaces as an OSError here
    torch.save(obj, buffer)
    _write_bytes(path, buffer.getbuffer())


def _write_json(path: Path, obj: Any) -> None:
    _write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8"))


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
    """Read a safetensors file written by :func:`tensors_to_bytes`, aliases restored; a file that is there
    but cannot be parsed (e.g. truncated) is a :class:`CorruptCheckpointError` naming it."""
    try:
        state, metadata = read_safetensors(path, what="checkpoint file")
    except WeightFileError as err:
        raise CorruptCheckpointError(str(err)) from None
    for alias, target in json.loads(metadata.get("aliases", "{}")).items():
        state[alias] = state[target]
    return state


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
        raise CorruptCheckpointError(f"{path} is not a complete checkpoint: {META} is missing")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptCheckpointError(f"{meta_path} is broken (not a JSON object: {err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), list):
        raise CorruptCheckpointError(f"{meta_path} is broken: expected an object with a 'files' list")
    missing = [name for name in meta["files"] if not (path / name).is_file()]
    if missing:
        listed = ", ".join(missing)
        raise CorruptCheckpointError(f"{path} is incomplete: {listed} (listed in {META}) is missing")
    return meta


def candidates(out_dir: str | Path) -> list[Path]:
    """The complete checkpoints of a run to resume from, in the order to try them: the newest
    (:func:`find_latest`) first, then the others, newest first."""
    latest = find_latest(out_dir)
    if latest is None:
        return []
    return [latest] + [p for p in reversed(list_checkpoints(out_dir)) if p != latest]


def read_saved_config(path: str | Path) -> dict | None:
    """The run config a checkpoint was written with (None for a checkpoint written without one)."""
    config_path = Path(path) / CONFIG_FILE
    if not config_path.is_file():
        return None
    try:
        with open(config_path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptCheckpointError(f"{config_path} is broken (not a JSON object: {err})") from None


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
    checkpoints (never the one ``latest`` names). Weights that are not all finite are refused (nothing is
    written); a full disk removes the partial checkpoint and keeps the previous one.
    """
    root = checkpoint_root(out_dir)
    name = f"step-{step:08d}"
    final = root / name
    tmp = root / f".tmp-{name}"
    if rank == 0:
        if model_state is None or trainer_state is None:
            raise ValueError("rank 0 must pass model_state and trainer_state to save_checkpoint")
        _check_finite({**model_state, **(extra_state or {})}, step)
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in root.glob(".trash-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        tmp.mkdir()
    barrier()
    try:
        _write_checkpoint_files(tmp, rank, world_size, model_state, extra_state, trainer_state, rank_state,
                                config_dict, step)  # fmt: skip
    except CheckpointError as err:  # a full disk: free what this checkpoint took, keep the previous one
        shutil.rmtree(tmp, ignore_errors=True)
        previous = find_latest(out_dir)
        kept = f"the previous checkpoint {previous} is kept" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"{err}; checkpoint step {step} was not written and {kept}") from None
    if rank == 0:
        if final.exists():  # the same step saved again: move the old copy aside first
            trash = root / f".trash-{name}"
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(final, trash)
        os.replace(tmp, final)
        fsync_dir(root)
        replace_text(root / MARKER, name + "\n", durable=True)
        _prune(out_dir, keep, protect=final)
    barrier()
    return final


def _check_finite(state: dict[str, Tensor], step: int) -> None:
    bad = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(
            f"refusing to write checkpoint step {step}: NaN or infinite values in {shown}; the last "
            "checkpoint written stays the newest"
        )


def _write_checkpoint_files(
    tmp: Path,
    rank: int,
    world_size: int,
    model_state: dict[str, Tensor] | None,
    extra_state: dict[str, Tensor] | None,
    trainer_state: dict[str, Any] | None,
    rank_state: dict[str, Any] | None,
    config_dict: dict | None,
    step: int,
) -> None:
    """Every rank's ``rank-*.pt``, then (rank 0) the shared files and ``meta.json`` last."""
    write_torch(tmp / f"rank-{rank:05d}.pt", rank_state or {})
    barrier()
    if rank == 0:
        files = [f"rank-{r:05d}.pt" for r in range(world_size)]
        _write_bytes(tmp / MODEL_FILE, tensors_to_bytes(model_state))
        files.append(MODEL_FILE)
        if extra_state:
            _write_bytes(tmp / EXTRA_FILE, tensors_to_bytes(extra_state))
            files.append(EXTRA_FILE)
        write_torch(tmp / TRAINER_FILE, trainer_state)
        files.append(TRAINER_FILE)
        if config_dict is not None:
            _write_json(tmp / CONFIG_FILE, config_dict)
            files.append(CONFIG_FILE)
        _write_json(tmp / META, {"format": 1, "step": step, "world_size": world_size, "files": files})
        fsync_dir(tmp)


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
    try:
        return read_torch(path, what="checkpoint file")
    except (FileNotFoundError, WeightFileError) as err:
        raise CorruptCheckpointError(str(err)) from None


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


# --------------------------------------------------------------------------- the run directory

_held: dict[str, list] = {}  # resolved run directory -> [lock file, depth] held by this process


def prepare_out_dir(out_dir: str | Path, option: str = "--out") -> Path:
    """``out_dir``, created if needed; a :class:`RunDirectoryError` naming ``option`` when it is a file or
    cannot be written."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"{option} {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirectoryError(f"{option} {out}: cannot create the directory ({err.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"{option} {out}: the directory is not writable")
    return out


@contextlib.contextmanager
def run_lock(out_dir: str | Path, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on the run directory ``out_dir`` (created if needed) while the block runs.

    Another process holding it is a :class:`RunDirectoryError` saying who (pid, host, start time,
    command). Re-entrant within a process; the operating system releases it when the process dies.
    A directory created here is removed again when the block fails before writing anything into it.
    ``enabled=False`` (ranks other than the main one) does nothing.
    """
    if not enabled:
        yield
        return
    created = not Path(out_dir).exists()
    out = prepare_out_dir(out_dir)
    key = str(out.resolve())
    if key in _held:
        _held[key][1] += 1
    else:
        _held[key] = [_acquire(out / LOCK_FILE), 1]
    failed = True
    try:
        yield
        failed = False
    finally:
        _held[key][1] -= 1
        if _held[key][1] == 0:
            _held.pop(key)[0].close()  # closing the file releases the lock
            if failed and created and [p.name for p in out.iterdir()] == [LOCK_FILE]:
                (out / LOCK_FILE).unlink()
                out.rmdir()


def _acquire(path: Path):
    handle = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunDirectoryError(
            f"{path.parent} is in use by {holder} (lock {path}); wait for that run to finish or choose "
            "another --out"
        ) from None
    handle.seek(0)
    handle.truncate()
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}: {' '.join(sys.argv)}\n")
    handle.flush()
    return handle


def refuse_existing_run(out_dir: str | Path, resume: bool) -> Path | None:
    """The latest checkpoint in ``out_dir``; without ``resume``, one existing is an error (checked before a
    run writes anything there)."""
    latest = find_latest(out_dir)
    if latest is not None and not resume:
        raise RunDirectoryError(
            f"{out_dir} already holds checkpoints (latest: {latest.name}); pass --resume to continue that "
            "run, or choose another output directory"
        )
    return latest
