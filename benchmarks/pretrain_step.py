"""Median train-step time of pre-training variants, measured side by side in one process.

Each variant gets its own model (same seed) and optimizer; the steps of all variants are interleaved
round-robin so that machine noise hits them alike. Data loading is excluded: the batches are collated
once up front from the shapes world (written to --data if absent).

    .venv/bin/python benchmarks/pretrain_step.py --preset vilta-tiny --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from vlp.config import load_config
from vlp.data.synthetic import SynthConfig, write_shapes_world
from vlp.pretraining_setup import build_pretraining
from vlp.train.optim import build_optimizer

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
    run = build_pretraining(config)  # seeded from train.seed: every variant starts from the same weights
    optimizer = build_optimizer(run.objectives, config.train)  # the model's groups + the ITC temperature
    return run.train_loader, run.objectives, optimizer


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
        "train.seed=0",
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
