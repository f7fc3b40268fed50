"""Pre-training loader throughput per ``data.num_workers`` setting, and whether it can keep up with a step.

For each setting the loader is built as pre-training builds it
(:func:`vlp.pretraining_setup.build_pretraining`, on the shapes world written to --data if absent) and
iterated alone, no model: batches/s, pairs/s and images/s (distinct images decoded and transformed, the
collator's work) after the first batch, whose wait (worker start-up included) is reported apart. The tiny
model's train step is timed by ``benchmarks/pretrain_step.py``'s own step, on batches collated up front.
``load/step`` is the loader's wall time per batch over the median step time: with ``num_workers=0`` the
loader adds that fraction to every step; with workers it overlaps the step and is the bottleneck only above
1 (the workers share the machine's cores with the step, so an overlapped step may still slow down).

    .venv/bin/python benchmarks/loader.py --batches 30 --workers 0 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from pretrain_step import setup_variant, shapes_data, timed_step  # the sibling script (run from benchmarks/)

from vlp.data.batch import Batch
from vlp.data.loader import PretrainLoader


def _batches(loader: PretrainLoader) -> Iterator[Batch]:
    """The loader's batches across epochs, endlessly."""
    while True:
        yield from loader


def time_loader(loader: PretrainLoader, n: int) -> dict:
    """Iterate ``n`` batches after a first one: its wait, and the throughput of the ``n`` after it."""
    batches = _batches(loader)
    start = time.perf_counter()
    next(batches)
    first = time.perf_counter() - start
    pairs = images = 0
    start = time.perf_counter()
    for _ in range(n):
        batch = next(batches)
        pairs += batch.size
        images += batch.visual.num_images
    elapsed = time.perf_counter() - start
    batches.close()  # shuts the DataLoader workers down
    return {
        "first_batch_s": first,
        "batches": n,
        "seconds": elapsed,
        "batches_per_s": n / elapsed,
        "pairs_per_s": pairs / elapsed,
        "images_per_s": images / elapsed,
        "images_per_batch": images / n,
        "load_ms_per_batch": 1000 * elapsed / n,
    }


def time_step(loader: PretrainLoader, objectives, optimizer, steps: int, warmup: int) -> float:
    """Median seconds of a train step on batches collated before the clock starts."""
    batches = _batches(loader)
    ready = [next(batches) for _ in range(warmup + steps)]
    batches.close()
    times = [timed_step(objectives, optimizer, batch, i, "fp32") for i, batch in enumerate(ready)]
    return statistics.median(times[warmup:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="vilta-tiny")
    parser.add_argument(
        "--data", default="runs/shapes-bench", help="shapes world directory (written if absent)"
    )
    parser.add_argument("--images", type=int, default=500, help="images of the shapes world, when written")
    parser.add_argument("--batches", type=int, default=30, help="timed loader batches per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="data.num_workers settings")
    parser.add_argument("--steps", type=int, default=10, help="timed train steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the main process")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/loader.json"))
    parser.add_argument("overrides", nargs="*", help="extra dotted overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    common = [*shapes_data(Path(args.data), args.batch_size, args.images), "train.seed=0", *args.overrides]

    # The step does not depend on the loader's workers: timed once, on in-process batches.
    loader, objectives, optimizer = setup_variant(args.preset, [*common, "data.num_workers=0"])
    step_s = time_step(loader, objectives, optimizer, args.steps, args.warmup)

    rows = []
    for workers in args.workers:
        loader, _, _ = setup_variant(args.preset, [*common, f"data.num_workers={workers}"])
        row = {"num_workers": workers, **time_loader(loader, args.batches)}
        row["images_per_s_per_worker"] = row["images_per_s"] / max(workers, 1)
        row["step_ms"] = 1000 * step_s
        row["load_over_step"] = row["load_ms_per_batch"] / row["step_ms"]
        rows.append(row)

    print(
        f"preset {args.preset}, batch {args.batch_size} pairs, {args.threads} threads, "
        f"{args.batches} loader batches, step median of {args.steps}"
    )
    print(
        f"{'workers':>7} {'first s':>8} {'batch/s':>8} {'pairs/s':>8} {'img/s':>8} {'img/s/wkr':>9} "
        f"{'load ms':>8} {'step ms':>8} {'load/step':>9}"
    )
    for r in rows:
        print(
            f"{r['num_workers']:>7} {r['first_batch_s']:>8.2f} {r['batches_per_s']:>8.1f} "
            f"{r['pairs_per_s']:>8.0f} {r['images_per_s']:>8.0f} {r['images_per_s_per_worker']:>9.0f} "
            f"{r['load_ms_per_batch']:>8.1f} {r['step_ms']:>8.1f} {r['load_over_step']:>9.3f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "preset": args.preset,
                "batch_size": args.batch_size,
                "threads": args.threads,
                "batches": args.batches,
                "steps": args.steps,
                "overrides": args.overrides,
                "torch": torch.__version__,
                "machine": platform.processor() or platform.machine(),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
