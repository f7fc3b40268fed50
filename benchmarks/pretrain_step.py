"""Median train-step time of pre-training variants, measured side by side in one process.

Each variant gets its own model (same seed) and optimizer; the steps of all variants are interleaved
round-robin so that machine noise hits them alike. Data loading is excluded: the batches are collated
once up front from the shapes world (written to --data if absent).

    .venv/bin/python benchmarks/pretrain_step.py --preset vilta-tiny --steps 20
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from vlp.config import load_config
from vlp.data.masking import replaceable_vocab_mask
from vlp.data.pipeline import build_pretrain_loaders
from vlp.data.synthetic import SynthConfig, write_shapes_world
from vlp.data.tokenizer import load_tokenizer
from vlp.models import build_model
from vlp.objectives.pretraining import PretrainingObjectives
from vlp.train.optim import build_optimizer
from vlp.train.schedules import ModeSchedule

VILTA_VARIANTS = {
    "MLM+ITM (baseline)": [
        "objectives.soft_labels.enabled=false",
        "objectives.itm.synthesized.per_positive=0",
    ],
    "+soft labels": ["objectives.soft_labels.enabled=true", "objectives.itm.synthesized.per_positive=0"],
    "+synthesized negatives": [
        "objectives.soft_labels.enabled=false",
        "objectives.itm.synthesized.per_positive=1",
    ],
    "ViLTA (both)": ["objectives.soft_labels.enabled=true", "objectives.itm.synthesized.per_positive=1"],
}
SEMVLP_VARIANTS = {
    "single-stream": ["objectives.mode_schedule.kind=single"],
    "two-stream": ["objectives.mode_schedule.kind=two"],
}


def _setup(preset: str, overrides: list[str]):
    config = load_config(preset, overrides)
    tokenizer = load_tokenizer(config.data.tokenizer)
    loader, _ = build_pretrain_loaders(config.data, tokenizer, seed=0)
    model_cfg = config.model
    answers = list(getattr(loader, "answer_vocab", None) or [])
    if answers and config.objectives.weights.get("qa", 0) > 0:  # as vlp.pretrain does
        model_cfg = dataclasses.replace(model_cfg, num_answers=len(answers))
    torch.manual_seed(0)
    model = build_model(model_cfg, vocab_size=len(tokenizer))
    replaceable = replaceable_vocab_mask(
        tokenizer, config.objectives.itm.synthesized.replaceable, size=model.vocab_size
    )
    schedule = ModeSchedule(config.objectives.mode_schedule) if config.model.arch == "semvlp" else None
    objectives = PretrainingObjectives(
        config.objectives,
        model,
        replaceable,
        mask_token_id=tokenizer.mask_token_id,
        mode_schedule=schedule,
    )
    optimizer = build_optimizer(objectives, config.train)  # the model's groups + the ITC temperature
    return loader, objectives, optimizer


def _step(objectives, optimizer, batch, step: int) -> float:
    start = time.perf_counter()
    loss = objectives(batch, step).total
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vilta-tiny")
    parser.add_argument("--data", default="runs/shapes", help="shapes world directory (written if absent)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="extra dotted overrides for every variant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = Path(args.data)
    if not (data / "dataset_shapes.json").is_file():
        write_shapes_world(SynthConfig(num_images=500, seed=0), data)
    common = [
        f"data.train={data / 'dataset_shapes.json'}",
        f"data.images_root={data / 'images'}",
        f"data.tokenizer={data / 'tokenizer'}",
        f"data.batch_size={args.batch_size}",
        *args.overrides,
    ]
    semvlp = args.preset.startswith("semvlp")
    if semvlp:  # the shapes world's VQA questions, for the QA objective
        vqa = data / "vqa"
        common.insert(
            3,
            f"data.vqa={vqa / 'v2_OpenEnded_mscoco_train2014_questions.json'},"
            f"{vqa / 'v2_mscoco_train2014_annotations.json'}",
        )
    variants = SEMVLP_VARIANTS if semvlp else VILTA_VARIANTS
    runs = {name: _setup(args.preset, common + extra) for name, extra in variants.items()}
    first = next(iter(runs.values()))
    batches = []
    for batch in first[0]:
        batches.append(batch)
        if len(batches) == args.warmup + args.steps:
            break

    times: dict[str, list[float]] = {name: [] for name in runs}
    for i, batch in enumerate(batches):
        for name, (_, objectives, optimizer) in runs.items():
            elapsed = _step(objectives, optimizer, batch, i)
            if i >= args.warmup:
                times[name].append(elapsed)

    base = statistics.median(next(iter(times.values())))
    print(
        f"preset {args.preset}, batch {args.batch_size}, {args.threads} threads, "
        f"{args.steps} timed steps per variant (median)"
    )
    print(f"{'variant':<26} {'step ms':>9} {'ratio':>7}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<26} {median * 1000:>9.1f} {median / base:>7.2f}")


if __name__ == "__main__":
    main()
