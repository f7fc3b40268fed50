"""Median ``optimizer.step()`` time of AdamW implementations on a tiny model's parameters, side by side.

The three kinds (for-loop, foreach, fused) step copies of the same parameters with the same gradients,
interleaved round-robin so that machine noise hits them alike; their results are checked to agree.

    .venv/bin/python benchmarks/optimizer_step.py --preset vilta-tiny --steps 30
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from vlp.config import load_config
from vlp.models import build_model

KINDS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="vilta-tiny")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/optimizer_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = build_model(load_config(args.preset).model, vocab_size=1000)
    models = {kind: copy.deepcopy(base) for kind in KINDS}
    optimizers = {
        kind: torch.optim.AdamW(models[kind].parameters(), lr=1e-3, **KINDS[kind]) for kind in KINDS
    }
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(args.steps + 3):
        grads = [torch.randn_like(p) for p in base.parameters()]
        for kind in KINDS:
            for p, g in zip(models[kind].parameters(), grads, strict=True):
                p.grad = g.clone()
            start = time.perf_counter()
            optimizers[kind].step()
            times[kind].append(time.perf_counter() - start)
    reference = list(models["for-loop"].parameters())
    for kind in KINDS:
        drift = max(
            (a - b).abs().max().item() for a, b in zip(models[kind].parameters(), reference, strict=True)
        )
        assert drift < 1e-5, f"{kind} disagrees with the for-loop AdamW by {drift}"
    medians = {kind: 1000 * statistics.median(t[3:]) for kind, t in times.items()}
    params = sum(p.numel() for p in base.parameters())
    print(
        f"AdamW step, {args.preset} ({params / 1e6:.2f}M parameters), {args.threads} threads, "
        f"median of {args.steps}"
    )
    print("| kind | ms | vs for-loop |\n|---|---|---|")
    for kind, ms in medians.items():
        print(f"| {kind} | {ms:.2f} | {medians['for-loop'] / ms:.2f}x |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"preset": args.preset, "parameters": params, "threads": args.threads, "median_ms": medians},
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
