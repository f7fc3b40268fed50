"""Pre-training throughput on a GPU: samples/s and model FLOPs utilisation in bf16, torch.compile off / on.

For each ``--presets`` entry and each ``--compile`` mode: build the run the project's way
(:func:`vlp.pretraining_setup.build_pretraining` on the shapes world, rendered at the preset's image size or
``--image-size`` and written under ``--data`` if absent), find the largest batch that fits (doubling from
``--batch-size`` until CUDA OOM, capped at ``--max-batch``; skipped on the CPU), then time ``--warmup`` +
``--steps`` full steps (forward under :func:`vlp.train.precision.autocast` bf16, backward, ``optimizer.step``,
``zero_grad``) on one collated batch; data loading is excluded. Model FLOPs per step are counted with
``FlopCounterMode`` on one uncompiled forward+backward at the timed batch (everything the step computes,
the frozen soft-label teacher and the synthesized-negative generator included); MFU = achieved FLOP/s over
the device's *measured* bf16 matmul rate (median of a few large square matmuls: 8192 on CUDA, 1024 on CPU).
Writes ``--out`` (JSON, rewritten after every row so a cut-short run keeps what it measured). Target: >= 45%.

Overrides applied to every preset so that the model is built from the config with random weights, and
without files this machine may lack: ``model.text.pretrained=`` ``model.vision.pretrained=``
``model.init_from=`` ``objectives.soft_labels.teacher=`` (no local Hugging Face / checkpoint directories;
the teacher is then a frozen copy of the text path), ``model.visual_input=patches data.region_features=``
(semvlp-base reads detector regions by default; there are none here), ``data.num_workers=0``,
``train.seed=0``, the shapes world's ``data.train``, ``data.images_root``, ``data.tokenizer`` and, where the
QA loss is on (SemVLP), ``data.vqa=``. The shapes tokenizer is small (~1000 ids): the model is rebuilt with
the preset's ``model.text.vocab_size`` when that is larger, so the embeddings and MLM heads have base size.

    .venv/bin/python benchmarks/gpu.py                      # on a GPU: vilta-base, semvlp-base
    .venv/bin/python benchmarks/gpu.py --device cpu --presets vilta-tiny --batch-size 4 --steps 2 --warmup 1
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vlp.config import load_config
from vlp.data.build import build_pretrain_loaders
from vlp.data.synthetic import SynthConfig, write_shapes_world
from vlp.models import build_model
from vlp.pretraining_setup import build_objectives, build_pretraining
from vlp.train.optim import build_optimizer
from vlp.train.precision import autocast

RANDOM_WEIGHTS = [
    "model.text.pretrained=",
    "model.vision.pretrained=",
    "model.init_from=",
    "objectives.soft_labels.teacher=",
    "model.visual_input=patches",
    "data.region_features=",
    "data.num_workers=0",
    "train.seed=0",
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def matmul_peak(device: torch.device, repeats: int = 10) -> float:
    """The measured bf16 matmul rate of ``device`` (FLOP/s): median over ``repeats`` square matmuls."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats if device.type == "cuda" else 3):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    del a, b
    free(device)
    return 2 * n**3 / statistics.median(times)


def shapes_world(root: Path, image_size: int, images: int) -> Path:
    """The shapes world rendered at ``image_size`` px under ``root`` (written when absent)."""
    data = root / f"shapes-{image_size}px-{images}"
    if not (data / "dataset_shapes.json").is_file():
        print(f"writing a shapes world of {images} images at {image_size} px to {data} ...", flush=True)
        write_shapes_world(SynthConfig(num_images=images, seed=0, image_size=image_size), data)
    return data


def preset_config(preset: str, args, device: torch.device):
    base = load_config(preset, [*RANDOM_WEIGHTS, *args.overrides])
    size = args.image_size or base.model.vision.image_size
    images = args.images or (max(100, args.max_batch // 2) if device.type == "cuda" else 100)
    data = shapes_world(Path(args.data), size, images)
    overrides = [
        *RANDOM_WEIGHTS,
        f"model.vision.image_size={size}",
        f"data.train={data / 'dataset_shapes.json'}",
        f"data.images_root={data / 'images'}",
        f"data.tokenizer={data / 'tokenizer'}",
    ]
    if base.objectives.weights.get("qa", 0) > 0 and not base.objectives.text_only:
        vqa = data / "vqa"
        overrides.append(
            f"data.vqa={vqa / 'v2_OpenEnded_mscoco_train2014_questions.json'},"
            f"{vqa / 'v2_mscoco_train2014_annotations.json'}"
        )
    return load_config(preset, [*overrides, *args.overrides])


def build(config, device: torch.device):
    """Model objectives, optimizer and tokenizer of ``config`` on ``device``."""
    run = build_pretraining(config)
    objectives = run.objectives
    vocab = config.model.text.vocab_size
    if vocab > run.model.vocab_size:  # base-sized embeddings / MLM heads, not the shapes tokenizer's
        model_cfg = config.model
        if run.answer_vocab:
            model_cfg = dataclasses.replace(model_cfg, num_answers=len(run.answer_vocab))
        del run.objectives, run.model
        torch.manual_seed(config.train.seed)
        model = build_model(model_cfg, vocab_size=vocab)
        objectives = build_objectives(config, model, run.tokenizer)
    objectives.to(device).train()
    optimizer = build_optimizer(objectives, config.train)
    return objectives, optimizer, run.tokenizer


def collate(config, tokenizer, batch_size: int, device: torch.device):
    data_cfg = dataclasses.replace(config.data, batch_size=batch_size)
    loader = build_pretrain_loaders(data_cfg, tokenizer, seed=config.train.seed).train
    return next(iter(loader)).to(device)


def step(fn, optimizer, batch, index: int, device: torch.device) -> None:
    with autocast(device, "bf16"):
        loss = fn(batch, index).total
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def largest_batch(objectives, optimizer, config, tokenizer, args, device) -> tuple[int, list]:
    """The largest batch (doubling from --batch-size, at most --max-batch; halving when even that does not
    fit) that two eager steps fit at, and the sizes tried."""
    tried, best, size = [], 0, args.batch_size
    while True:
        batch, fits = None, True
        try:
            batch = collate(config, tokenizer, size, device)
            for i in range(2):
                step(objectives, optimizer, batch, i, device)
            sync(device)
        except Exception as error:
            if not is_oom(error):
                raise
            fits = False
        finally:
            batch = None
            optimizer.zero_grad(set_to_none=True)
            free(device)
        tried.append([size, "fits" if fits else "OOM"])
        if fits:
            best = size
            if size * 2 > args.max_batch:
                break
            size *= 2
        elif best or size == 1:
            break
        else:
            size //= 2
    return best or 1, tried


def count_flops(objectives, optimizer, batch, device) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        with autocast(device, "bf16"):
            loss = objectives(batch, 0).total
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_steps(fn, optimizer, batch, args, device) -> list[float]:
    times = []
    for i in range(args.warmup + args.steps):
        sync(device)
        start = time.perf_counter()
        step(fn, optimizer, batch, i, device)
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return times


def bench_preset(preset: str, args, device: torch.device, peak: float):
    config = preset_config(preset, args, device)
    print(f"\n== {preset}: image {config.model.vision.image_size} px, building ...", flush=True)
    objectives, optimizer, tokenizer = build(config, device)
    params = sum(p.numel() for p in objectives.parameters() if p.requires_grad)
    tried: list = []
    size = args.batch_size
    if device.type == "cuda":
        start = time.perf_counter()
        size, tried = largest_batch(objectives, optimizer, config, tokenizer, args, device)
        print(f"   largest batch {size} ({tried}, {time.perf_counter() - start:.0f} s)", flush=True)
    for mode in args.compile.split(","):
        row = {"preset": preset, "compile": mode, "image_size": config.model.vision.image_size,
               "trainable_params": params, "batch_search": tried}  # fmt: skip
        fn = torch.compile(objectives) if mode == "on" else objectives
        batch_size = size
        while True:
            batch = None
            try:
                batch = collate(config, tokenizer, batch_size, device)
                flops = count_flops(objectives, optimizer, batch, device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                start = time.perf_counter()
                times = time_steps(fn, optimizer, batch, args, device)
                seconds = statistics.median(times)
                row.update(
                    batch=batch_size,
                    step_ms=round(1000 * seconds, 2),
                    samples_per_s=round(batch_size / seconds, 1),
                    flops_per_step=flops,
                    tflops=round(flops / seconds / 1e12, 3),
                    mfu_pct=round(100 * flops / seconds / peak, 2),
                    wall_s=round(time.perf_counter() - start, 1),
                )
                if device.type == "cuda":
                    row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                break
            except Exception as error:
                optimizer.zero_grad(set_to_none=True)
                if is_oom(error) and batch_size > 1:  # compiled or FLOP-counted step needs more: halve
                    batch_size //= 2
                    batch = None
                    free(device)
                    continue
                row["error"] = one_line(error)
                print(f"   compile {mode}: failed: {row['error']}", flush=True)
                break
            finally:
                batch = None
                free(device)
        if mode == "on":
            torch._dynamo.reset()
        yield row
    del objectives, optimizer
    free(device)


def table(rows: list[dict]) -> list[str]:
    lines = [
        f"{'preset':<14} {'compile':>7} {'batch':>6} {'step ms':>9} {'samples/s':>10} {'TFLOP/s':>8} "
        f"{'MFU %':>6} {'peak GiB':>8}"
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['preset']:<14} {r['compile']:>7}  error: {r['error']}")
            continue
        mem = f"{r['peak_mem_gib']:.2f}" if "peak_mem_gib" in r else "-"
        lines.append(
            f"{r['preset']:<14} {r['compile']:>7} {r['batch']:>6} {r['step_ms']:>9.1f} "
            f"{r['samples_per_s']:>10.1f} {r['tflops']:>8.2f} {r['mfu_pct']:>6.1f} {mem:>8}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["vilta-base", "semvlp-base"])
    parser.add_argument("--preset", dest="presets", nargs="+", help="alias of --presets")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", default="off,on", help="comma-separated: off, on")
    parser.add_argument("--batch-size", type=int, default=32, help="start of the batch search (CPU: used)")
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (compile warm-up included)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (median)")
    parser.add_argument("--image-size", type=int, default=0, help="0 = the preset's")
    parser.add_argument("--images", type=int, default=0, help="shapes-world images (0: auto)")
    parser.add_argument("--data", default="runs/gpu-bench", help="where the shapes worlds are written")
    parser.add_argument("--out", default="benchmarks/results/gpu.json")
    parser.add_argument("overrides", nargs="*", help="extra dotted overrides for every preset")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    start = time.perf_counter()
    peak = matmul_peak(device)
    print(f"device {name} ({device}), torch {torch.__version__}, bf16 matmul {peak / 1e12:.2f} TFLOP/s")
    result = {"device": str(device), "device_name": name, "torch": torch.__version__,
              "cpu_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "matmul_bf16_tflops": round(peak / 1e12, 3), "warmup": args.warmup, "steps": args.steps,
              "rows": []}  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        result["total_s"] = round(time.perf_counter() - start, 1)
        out.write_text(json.dumps(result, indent=1) + "\n")

    for preset in args.presets:
        try:
            for row in bench_preset(preset, args, device, peak):
                result["rows"].append(row)
                print(table([row])[1], flush=True)
                write()
        except Exception as error:  # a preset that cannot be built or stepped: note it, go on
            row = {"preset": preset, "compile": "-", "error": one_line(error)}
            print(f"   {preset}: failed: {row['error']}", flush=True)
            result["rows"].append(row)
            write()
    write()
    print(f"\nmeasured bf16 matmul peak {peak / 1e12:.2f} TFLOP/s on {name}; total {result['total_s']} s")
    print(*table(result["rows"]), sep="\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
