"""Model checkpoints as Hugging Face-style directories: ``config.json`` + ``model.safetensors`` (+ tokenizer).

``config.json`` holds the :class:`~vlp.config.ModelConfig` (as built: fields a pretrained directory
decided are filled in), the vocabulary size, the architecture, a format version, the encoders' own
Hugging Face configs (so no pretrained directory is needed to load), the fingerprint of the tokenizer's
vocabulary (``vocab_hash``, when saved with one), the answer classes of a QA head trained in
pre-training (``answer_vocab``, index = class, when saved with one) and free-form ``extra``.
Tied tensors (an MLM decoder sharing the word embeddings) are stored once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vlp.config import config_from_dict, config_to_dict
from vlp.files import replace_atomically
from vlp.weights import read_safetensors

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def _storage_key(tensor: Tensor) -> tuple:
    storage = tensor.untyped_storage().data_ptr()
    return (storage, tensor.storage_offset(), tuple(tensor.shape), tensor.stride())


def shared_groups(state: dict[str, Tensor]) -> list[list[str]]:
    """Names of tensors that are views of the same memory (tied weights), in state order."""
    groups: dict[tuple, list[str]] = {}
    for name, tensor in state.items():
        groups.setdefault(_storage_key(tensor), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def save_pretrained(
    model: nn.Module,
    directory: str | Path,
    tokenizer: Any = None,
    extra_config: dict | None = None,
    task: dict | None = None,
    answer_vocab: Sequence[str] | None = None,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and (when given) the tokenizer files to ``directory``.

    ``task``: what a fine-tuned model needs besides its weights (task name, answer vocabulary, ...; see
    :mod:`vlp.tasks.model`), stored as ``config.json["task"]``. ``answer_vocab``: the answers of the
    model's own QA head (one per ``model.num_answers`` class), read back by :func:`read_answer_vocab`.
    """
    from safetensors.torch import save_file

    if answer_vocab is not None and len(answer_vocab) != model.config.num_answers:
        raise ValueError(
            f"answer_vocab lists {len(answer_vocab)} answers for a QA head of "
            f"model.num_answers={model.config.num_answers}"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    for names in shared_groups(state):
        for alias in names[1:]:
            del state[alias]
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    config = {
        "vlp_format_version": FORMAT_VERSION,
        "arch": model.arch,
        "vocab_size": model.vocab_size,
        "model": config_to_dict(model.config),
        "hf_configs": model.hf_configs(),
        "extra": extra_config or {},
    }
    if tokenizer is not None:
        from vlp.data.tokenizer import vocab_hash

        config["vocab_hash"] = vocab_hash(tokenizer)
    if answer_vocab is not None:
        config["answer_vocab"] = list(answer_vocab)
    if task is not None:
        config["task"] = task
    metadata = {"format": "pt", "vlp_format_version": str(FORMAT_VERSION)}
    replace_atomically(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata=metadata))
    replace_atomically(directory / CONFIG_NAME, lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's ``config.json`` as a dict, checked for the fields :func:`load` needs."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint config not found: {path}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from err
    version = config.get("vlp_format_version")
    if version is None:
        raise ValueError(f"{path}: not a vlp checkpoint (no 'vlp_format_version'; a plain HF model?)")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version} is newer than this vlp ({FORMAT_VERSION})")
    missing = [key for key in ("arch", "vocab_size", "model") if key not in config]
    if missing:
        raise ValueError(f"{path}: missing fields {missing}")
    return config


def read_answer_vocab(directory: str | Path) -> list[str] | None:
    """The answers of the checkpoint's QA head (index = class), None when it records none.

    Checkpoints written before this was a field of its own kept it in ``extra``; those are read too.
    """
    config = read_config(directory)
    answers = config.get("answer_vocab", config.get("extra", {}).get("answer_vocab") or None)
    return list(answers) if answers is not None else None


def stored_vocab_hash(directory: str | Path) -> str | None:
    """The vocabulary fingerprint of a checkpoint directory: ``config.json["vocab_hash"]`` of a vlp
    checkpoint, else that of the tokenizer the directory holds (a Hugging Face model); None if neither."""
    from vlp.data.tokenizer import load_tokenizer, vocab_hash

    directory = Path(directory)
    try:
        return read_config(directory).get("vocab_hash")
    except (FileNotFoundError, ValueError):
        pass
    try:
        return vocab_hash(load_tokenizer(directory))
    except (FileNotFoundError, ValueError, OSError):
        return None


def check_vocabulary(directory: str | Path, tokenizer: Any, key: str) -> None:
    """Refuse a checkpoint (``key`` names the setting that points at it) whose tokenizer's vocabulary is
    not ``tokenizer``'s; a checkpoint that records none is only logged."""
    from vlp.data.tokenizer import vocab_hash

    stored = stored_vocab_hash(directory)
    if stored is None:
        log.warning("%s: %s records no tokenizer vocabulary; cannot check it matches", key, directory)
        return
    if stored != vocab_hash(tokenizer):
        raise ValueError(
            f"{key}: {directory} was trained with another tokenizer vocabulary than data.tokenizer "
            f"(vocab_hash {stored} vs {vocab_hash(tokenizer)}): its token ids would mean other words"
        )


def _read_weights(directory: Path) -> dict[str, Tensor]:
    return read_safetensors(directory / WEIGHTS_NAME, what="checkpoint weights")[0]


def load(directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved in ``directory`` (no pretrained directory needed) in eval mode."""
    from vlp.models import construct_model

    directory = Path(directory)
    config = read_config(directory)
    model_fields = {k: v for k, v in config["model"].items() if k != "task_heads"}  # removed; always []
    model_cfg = config_from_dict({"model": model_fields}).model
    if model_cfg.arch != config["arch"]:
        raise ValueError(f"{directory / CONFIG_NAME}: arch {config['arch']!r} disagrees with model.arch")
    model = construct_model(
        model_cfg, config["vocab_size"], load_weights=False, hf_configs=config.get("hf_configs", {})
    )
    missing = _load_state(model, _read_weights(directory), directory)
    if missing:
        described = _describe(missing, model.state_dict())
        raise ValueError(f"{directory / WEIGHTS_NAME}: missing tensors {described}")
    return model.to(device).eval()


def load_into(model: nn.Module, directory: str | Path) -> list[str]:
    """Load a (pre-training) checkpoint into ``model``, which may have extra (task) heads.

    Returns the modules of ``model`` the checkpoint did not cover (they keep their fresh initialisation),
    e.g. ``["heads.qa_head"]``, and logs them. Unexpected keys or shape mismatches are an error.
    """
    directory = Path(directory)
    config = read_config(directory)
    if config["arch"] != model.arch:
        raise ValueError(f"{directory}: a {config['arch']} checkpoint cannot load into a {model.arch} model")
    missing = _load_state(model, _read_weights(directory), directory)
    modules = sorted({".".join(name.split(".")[:2]) for name in missing})
    for module in modules:
        log.info("initialised fresh (not in %s): %s", directory, module)
    return modules


def _describe(names: list[str], state: dict[str, Tensor]) -> str:
    return ", ".join(f"{name} {list(state[name].shape)}" for name in names)


def _load_state(model: nn.Module, state: dict[str, Tensor], directory: Path) -> list[str]:
    """Copy ``state`` into ``model``; returns the model keys not covered. Tied aliases count as covered."""
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    mismatched = [name for name in state if name in own and state[name].shape != own[name].shape]
    if unexpected or mismatched:
        problems = []
        if unexpected:
            problems.append(f"unexpected keys: {_describe(unexpected, state)}")
        if mismatched:
            problems.append(
                "shape mismatches: "
                + ", ".join(
                    f"{n} checkpoint {list(state[n].shape)} vs model {list(own[n].shape)}" for n in mismatched
                )
            )
        raise ValueError(f"{directory / WEIGHTS_NAME} does not fit this model: " + "; ".join(problems))
    covered = set(state)
    for names in shared_groups(own):
        if covered.intersection(names):
            covered.update(names)
    model.load_state_dict(state, strict=False)
    return [name for name in own if name not in covered]
