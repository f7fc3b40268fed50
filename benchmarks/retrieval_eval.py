"""Retrieval evaluation: the time saved and the R@1 lost by ITC top-k + ITM re-ranking vs all pairs.

On the shapes world (1,000 images x 5,000 captions by default, written to --data if absent) with a tiny
model, both galleries are encoded once (timed apart); then, on those same galleries, the score matrices
are computed for each re-ranking depth k in --ks and for k = 0 (the exact cross-encoder: every pair
through the ITM head). The table gives per k the pairs scored, the seconds, the speed-up over the full
ranking and the R@1 both ways with its difference from the full ranking, in points. A from-scratch model
ranks at random, so --pretrain-steps N first pre-trains the preset briefly (ITC + ITM on). With
--full-fraction F < 1 the full ranking is timed on that fraction of the images and extrapolated (its
R@1 is then not available). The cost is ~linear in the pairs scored: at ~200 pairs/s (vilta-tiny,
2 CPU cores) the full 1,000 x 5,000 ranking takes hours, so on a small CPU time it on a fraction.

    .venv/bin/python benchmarks/retrieval_eval.py --preset vilta-tiny-baseline --pretrain-steps 200
    .venv/bin/python benchmarks/retrieval_eval.py --images 50 --ks 4,8 --data runs/bench_retrieval_small
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from vlp.config import DataConfig, load_config
from vlp.data.collate import Collator
from vlp.data.formats.karpathy import read_karpathy
from vlp.data.synthetic import SynthConfig, write_shapes_world
from vlp.data.tokenizer import load_tokenizer
from vlp.models import build_model
from vlp.tasks import retrieval
from vlp.tasks.retrieval import Gallery

CAPTIONS_PER_IMAGE = 5
DIRECTIONS = ("image_retrieval", "text_retrieval")  # caption queries, image queries
TARGET_SPEEDUP, TARGET_R1_POINTS = 20.0, 0.5  # the promise: >= 20x faster, R@1 within 0.5 point


def _shapes_world(data: Path, images: int) -> Path:
    """The cache's Karpathy file, (re)written when absent or holding fewer than ``images`` images."""
    karpathy = data / "dataset_shapes.json"
    if karpathy.is_file():
        if len(json.loads(karpathy.read_text(encoding="utf-8"))["images"]) >= images:
            return karpathy
    print(f"writing a shapes world of {images} images to {data} ...", flush=True)
    write_shapes_world(SynthConfig(num_images=max(images, 10), seed=0), data)
    return karpathy


def _model(args: argparse.Namespace, data: Path) -> tuple[nn.Module, Collator, str]:
    """The backbone, its evaluation collator and a line saying where it came from."""
    import vlp
    from vlp.models.checkpoint import read_config

    checkpoint, source = args.checkpoint, ""
    if not checkpoint and args.pretrain_steps > 0:
        from vlp.pretrain import pretrain

        config = load_config(args.preset, [
            f"data.train={data / 'dataset_shapes.json'}", f"data.images_root={data / 'images'}",
            f"data.tokenizer={data / 'tokenizer'}", f"train.max_steps={args.pretrain_steps}",
            "train.progress=false", "train.ckpt_every=0", "train.val_every=0",
        ])  # fmt: skip
        if not (config.objectives.weights.get("itc", 0) > 0 and config.objectives.weights.get("itm", 0) > 0):
            raise SystemExit(f"--preset {args.preset}: pre-training for retrieval needs ITC and ITM weights")
        out = Path(args.pretrain_out)
        if out.is_dir() and any(out.iterdir()):
            raise SystemExit(f"{out} already holds a pre-training run: reuse it with --checkpoint "
                             f"{out / 'final'}, or name another --pretrain-out")  # fmt: skip
        print(f"pre-training {args.preset} for {args.pretrain_steps} steps into {out} ...", flush=True)
        started = time.perf_counter()
        pretrain(config, out)
        args.pretrain_seconds = round(time.perf_counter() - started, 2)
        checkpoint = str(out / "final")
        source = f"{args.preset} pre-trained {args.pretrain_steps} steps ({args.pretrain_seconds:.0f} s)"
    if checkpoint:
        model, tokenizer = vlp.load(checkpoint), load_tokenizer(checkpoint)
        saved = read_config(checkpoint).get("extra", {}).get("vlp_config", {}).get("data", {})
        max_len = int(saved.get("max_text_len", DataConfig.max_text_len))
        source = source or f"checkpoint {checkpoint} (trained)"
    else:
        tokenizer = load_tokenizer(data / "tokenizer")
        config = load_config(args.preset)
        torch.manual_seed(0)
        model = build_model(config.model, vocab_size=len(tokenizer))
        max_len = config.data.max_text_len
        source = f"{args.preset} from scratch, untrained (random weights: recalls are meaningless)"
    data_cfg = DataConfig(image_size=int(model.config.vision.image_size), max_text_len=max_len)
    return model.eval(), Collator(tokenizer, data_cfg, train=False, mlm=False), source


def _first_images(gallery: Gallery, count: int) -> Gallery:
    g = gallery
    return Gallery("image", g.keys[:count], g.hidden[:count], g.mask[:count], g.embeddings[:count])


def _ranking(backbone: nn.Module, texts: Gallery, images: Gallery, k: int, args: argparse.Namespace,
             owner: list[int] | None) -> tuple[dict, tuple[Tensor, Tensor]]:  # fmt: skip
    """One timed ``score_matrices`` call (and, with ``owner``, its timed metrics); the row and top-1s."""
    mode = "single" if getattr(backbone, "arch", "") == "semvlp" else None
    started = time.perf_counter()
    t2i, i2t = retrieval.score_matrices(
        backbone, texts, images, k, mode, pairs_per_batch=args.pairs_per_batch
    )
    row: dict = {"k": k, "seconds": time.perf_counter() - started}
    if owner is not None:
        started = time.perf_counter()
        row["metrics"] = retrieval.score(t2i, i2t, owner)
        row["score_seconds"] = time.perf_counter() - started
    return row, (t2i.argmax(1), i2t.argmax(1))


def _r1(row: dict) -> dict[str, float] | None:
    metrics = row.get("metrics")
    return {d: metrics[d]["r1"] for d in DIRECTIONS} if metrics else None


def _fmt(value: float | None, spec: str, width: int = 7) -> str:
    return ("n/a" if value is None else format(value, spec)).rjust(width)


def _print_table(rows: list[dict]) -> None:
    print(f"{'k':>8} {'pairs':>10} {'seconds':>9} {'speed-up':>9} {'IR@1':>7} {'TR@1':>7} "
          f"{'dIR@1':>7} {'dTR@1':>7}")  # fmt: skip
    for row in rows:
        r1, diff = _r1(row) or {}, row.get("r1_diff_points") or {}
        name = str(row["k"]) if row["k"] else "0 (all)" + ("*" if row["extrapolated"] else "")
        print(
            f"{name:>8} {row['pairs']:>10,} {row['seconds']:>9.1f} {row.get('speedup', 1.0):>8.1f}x "
            + " ".join(_fmt(r1.get(d), ".2f") for d in DIRECTIONS) + " "
            + " ".join(_fmt(diff.get(d), "+.2f") for d in DIRECTIONS)
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="runs/bench_retrieval", help="shapes world (written if absent)")
    parser.add_argument("--images", type=int, default=1000, help="gallery images (5 captions each)")
    parser.add_argument("--ks", default="16,64,128", help="re-ranking depths, comma-separated")
    parser.add_argument("--preset", default="vilta-tiny", help="from-scratch model preset")
    parser.add_argument("--checkpoint", default="", help="a vlp checkpoint directory instead of the preset")
    parser.add_argument("--pretrain-steps", type=int, default=0, help=">0: pre-train the preset first")
    parser.add_argument("--pretrain-out", default="", help="pre-training run (default DATA/pretrain)")
    parser.add_argument("--full-fraction", type=float, default=1.0, help="<1: time k=0 on this image share")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs-per-batch", type=int, default=512)
    parser.add_argument("--json", default="benchmarks/results/retrieval_eval.json")
    args = parser.parse_args()  # fmt: skip
    ks = [int(k) for k in args.ks.split(",") if k.strip()]
    if any(k <= 0 for k in ks) or not 0 < args.full_fraction <= 1:
        raise SystemExit("--ks: positive depths; --full-fraction: in (0, 1]")
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    args.pretrain_out = args.pretrain_out or str(data / "pretrain")
    args.pretrain_seconds = None
    wall = time.perf_counter()

    karpathy = _shapes_world(data, args.images)
    records = read_karpathy(karpathy, data / "images", "all")[: args.images]
    if len(records) < args.images or any(len(r.captions) != CAPTIONS_PER_IMAGE for r in records):
        raise SystemExit(f"{karpathy}: expected {args.images} images with {CAPTIONS_PER_IMAGE} captions each")
    paths, captions, owner = retrieval.caption_index(records)
    backbone, collator, source = _model(args, data)

    with torch.no_grad():
        started = time.perf_counter()
        examples = retrieval.image_examples([(p, p, None) for p in paths])
        images = retrieval.encode_images(backbone, collator, examples, paths)
        image_s = time.perf_counter() - started
        started = time.perf_counter()
        texts = retrieval.encode_texts(backbone, collator, captions)
        text_s = time.perf_counter() - started
        print(f"encoded {len(images)} images in {image_s:.1f} s, {len(texts)} captions in {text_s:.1f} s")
        n_img, n_txt = len(images), len(texts)

        rows, top1 = [], []
        for k in ks:
            row, best = _ranking(backbone, texts, images, k, args, owner)
            rows.append({**row, "pairs": min(k, n_img) * n_txt + min(k, n_txt) * n_img})
            top1.append(best)
            print(f"k={k}: {rows[-1]['pairs']:,} pairs in {row['seconds']:.1f} s", flush=True)
        sub = max(1, round(args.full_fraction * n_img))
        full, full_top1 = _ranking(backbone, texts, _first_images(images, sub), 0, args,
                                   owner if sub == n_img else None)  # fmt: skip
        print(f"full: {sub * n_txt:,} pairs in {full['seconds']:.1f} s", flush=True)
    full.update(pairs=n_img * n_txt, measured_seconds=full["seconds"], measured_images=sub,
                extrapolated=sub < n_img, seconds=full["seconds"] * n_img / sub)  # fmt: skip

    full_r1 = _r1(full)
    for row, best in zip(rows, top1, strict=True):
        row["speedup"] = full["seconds"] / row["seconds"]
        if full_r1 is not None:
            r1 = _r1(row)
            row["r1_diff_points"] = {d: round(r1[d] - full_r1[d], 2) for d in DIRECTIONS}
            pairs = zip(DIRECTIONS, best, full_top1, strict=True)
            row["top1_agreement"] = {d: float((b == f).float().mean()) for d, b, f in pairs}
            worst = max(abs(v) for v in row["r1_diff_points"].values())
            row["meets_target"] = row["speedup"] >= TARGET_SPEEDUP and worst <= TARGET_R1_POINTS

    print(f"\nmodel: {source}")
    print(f"{n_img} images x {n_txt} captions, {args.threads} threads, "
          f"{args.pairs_per_batch} pairs per ITM batch")  # fmt: skip
    print(f"encoded once: images {image_s:.1f} s, captions {text_s:.1f} s")
    _print_table([*rows, full])
    if full["extrapolated"]:
        print(f"* full ranking timed on {sub}/{n_img} images (all captions: {full['measured_seconds']:.1f} s)"
              " and extrapolated linearly; its R@1 is not available")  # fmt: skip
    total = time.perf_counter() - wall
    print(f"total wall time {total:.0f} s")

    result = {
        "question": __doc__.splitlines()[0],
        "machine": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "config": {**vars(args), "ks": ks, "images": n_img, "captions": n_txt, "model": source,
                   "trained": args.pretrain_steps > 0 or bool(args.checkpoint)},
        "targets": {"speedup_at_least": TARGET_SPEEDUP, "r1_within_points": TARGET_R1_POINTS},
        "encode_seconds": {"images": image_s, "captions": text_s},
        "rows": [*rows, full],
        "total_seconds": total,
    }  # fmt: skip
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
