"""Median train-step time of pre-training variants, measured side by side in one process.

Each variant gets its own model (same seed) and optimizer; the steps of all variants are interleaved
round-robin so that machine noise hits them alike. Data loading is excluded: the batches are collated
once up front from the shapes world (written to --data if absent). Each variant runs at every
``--precisions`` entry under the trainer's own context for it (:func:`vlp.train.precision.autocast`).
The ratio is against the first variant at the first precision. Writes ``--out`` (JSON) and, with
``--readme``, the table between the README's ``pretrain-step-<preset>`` markers.

    .venv/bin/python benchmarks/pretrain_step.py --preset vilta-tiny --steps 20 --precisions fp32 bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from vlp.config import load_config
from vlp.data.synthetic import SynthConfig, write_shapes_world
from vlp.files import replace_marked_block
from vlp.pretraining_setup import build_pretraining
from vlp.train.optim import build_optimizer
from vlp.train.precision import autocast

VILTA_VARIANTS = {
    "plain MLM+ITM": [  # one random negative per positive, no ITC, no hard negatives
        "objectives.weights={mlm: 1.0, itm: 1.0, text_mlm: 0.0}",
        "objectives.itm.random_negatives=1",
        "objectives.itm.hard_negatives=0",
        "objectives.soft_labels.enabled=false",
        "objectives.itm.synthesized.per_positive=0",
    ],
    "MLM+ITM+ITC (baseline)": [
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


def shapes_data(data: Path, batch_size: int, images: int = 500) -> list[str]:
    """The data overrides of a benchmark run on the shapes world in ``data`` (written there first, with
    ``images`` images, when absent)."""
    if not (data / "dataset_shapes.json").is_file():
        print(f"writing a shapes world of {images} images to {data} ...", flush=True)
        write_shapes_world(SynthConfig(num_images=images, seed=0), data)
    return [
        f"data.train={data / 'dataset_shapes.json'}",
        f"data.images_root={data / 'images'}",
        f"data.tokenizer={data / 'tokenizer'}",
        f"data.batch_size={batch_size}",
    ]


def setup_variant(preset: str, overrides: list[str]):
    config = load_config(preset, overrides)
    run = build_pretraining(config)  # seeded from train.seed: every variant starts from the same weights
    optimizer = build_optimizer(run.objectives, config.train)  # the model's groups + the ITC temperature
    return run.train_loader, run.objectives, optimizer


def timed_step(objectives, optimizer, batch, step: int, precision: str) -> float:
    start = time.perf_counter()
    with autocast(batch.input_ids.device, precision):
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
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument(
        "--out", default="", help="JSON (default benchmarks/results/pretrain_step_PRESET.json)"
    )
    parser.add_argument("--readme", default="", help="README to write the table into (between markers)")
    parser.add_argument("overrides", nargs="*", help="extra dotted overrides for every variant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = Path(args.data)
    common = [*shapes_data(data, args.batch_size), "train.seed=0", *args.overrides]
    semvlp = args.preset.startswith("semvlp")
    if semvlp:  # the shapes world's VQA questions, for the QA objective
        vqa = data / "vqa"
        common.insert(
            3,
            f"data.vqa={vqa / 'v2_OpenEnded_mscoco_train2014_questions.json'},"
            f"{vqa / 'v2_mscoco_train2014_annotations.json'}",
        )
    variants = SEMVLP_VARIANTS if semvlp else VILTA_VARIANTS
    runs = {name: setup_variant(args.preset, common + extra) for name, extra in variants.items()}
    first = next(iter(runs.values()))
    batches = []
    for batch in first[0]:
        batches.append(batch)
        if len(batches) == args.warmup + args.steps:
            break

    times: dict[tuple[str, str], list[float]] = {(n, p): [] for n in runs for p in args.precisions}
    for i, batch in enumerate(batches):
        for (name, precision), values in times.items():
            _, objectives, optimizer = runs[name]
            elapsed = timed_step(objectives, optimizer, batch, i, precision)
            if i >= args.warmup:
                values.append(elapsed)

    base = statistics.median(next(iter(times.values())))
    rows = [
        {"variant": name, "precision": precision, "step_ms": round(1000 * statistics.median(values), 1),
         "ratio": round(statistics.median(values) / base, 2)}
        for (name, precision), values in times.items()
    ]  # fmt: skip
    header = (
        f"preset {args.preset}, batch {args.batch_size}, {args.threads} threads, "
        f"{args.steps} timed steps per variant (median)"
    )
    table = [f"{'variant':<26} {'precision':>9} {'step ms':>9} {'ratio':>7}"] + [
        f"{r['variant']:<26} {r['precision']:>9} {r['step_ms']:>9.1f} {r['ratio']:>7.2f}" for r in rows
    ]
    print(header, *table, sep="\n")
    out = Path(args.out or f"benchmarks/results/pretrain_step_{args.preset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"preset": args.preset, "batch_size": args.batch_size, "threads": args.threads,
                               "steps": args.steps, "rows": rows}, indent=1) + "\n")  # fmt: skip
    print(f"wrote {out}")
    if args.readme:
        block = "\n".join(["```", header, *table, "```"])
        replace_marked_block(args.readme, f"pretrain-step-{args.preset}", block)
        print(f"wrote the table into {args.readme}")


if __name__ == "__main__":
    main()
