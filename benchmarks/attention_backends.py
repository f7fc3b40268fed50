"""Which attention implementation is fastest, per dtype, on this device: forward + backward of one
attention call at the shapes of vlp's tiny models, each ``scaled_dot_product_attention`` backend and the
written-out form (``explicit``: matmul, softmax, matmul) side by side (interleaved), medians.

    .venv/bin/python benchmarks/attention_backends.py [--device cuda] [--repeats 30]

From these figures ``vlp.models.layers.attend`` (and the Hugging Face encoders' ``attn_implementation=
"vlp"``) writes attention out on the CPU in bf16 / fp16 and leaves it to SDPA elsewhere
(``benchmarks/results/attention_backends.json`` holds the last run's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from vlp.models.layers import explicit_attention

# (rows, heads, query length, key length, head dim): text self-attention (32 tokens), image self-attention
# (64 patches + [CLS]), co-attention text -> image, SemVLP single-stream (image + text), at batch 64.
SHAPES = {
    "text self": (64, 4, 32, 32, 32),
    "image self": (64, 4, 65, 65, 32),
    "text->image": (64, 4, 32, 65, 32),
    "single-stream": (64, 4, 97, 97, 32),
}
EXPLICIT = "explicit"  # not an SDPA kernel: vlp.models.layers.explicit_attention (matmul, softmax, matmul)
BACKENDS = {
    "default": None,
    "explicit": EXPLICIT,
    "math": [SDPBackend.MATH],
    "flash": [SDPBackend.FLASH_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def one_call(shape, dtype, device, backends) -> float:
    rows, heads, lq, lk, dim = shape
    q = torch.randn(rows, heads, lq, dim, device=device, dtype=dtype, requires_grad=True)
    k = torch.randn(rows, heads, lk, dim, device=device, dtype=dtype, requires_grad=True)
    v = torch.randn(rows, heads, lk, dim, device=device, dtype=dtype, requires_grad=True)
    mask = torch.ones(rows, 1, 1, lk, device=device, dtype=torch.bool)  # a key mask, as vlp's layers pass
    context = sdpa_kernel(backends) if backends not in (None, EXPLICIT) else torch.enable_grad()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with context:
        if backends == EXPLICIT:
            explicit_attention(q, k, v, mask).sum().backward()
        else:
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(device: torch.device, repeats: int) -> list[dict]:
    rows = []
    for dtype_name, dtype in DTYPES.items():
        for shape_name, shape in SHAPES.items():
            usable = {}
            for name, backends in BACKENDS.items():
                try:
                    one_call(shape, dtype, device, backends)
                    usable[name] = backends
                except RuntimeError:  # a backend this device / dtype / mask does not support
                    pass
            times: dict[str, list[float]] = {name: [] for name in usable}
            for _ in range(repeats):  # interleaved, so that noise hits every backend alike
                for name, backends in usable.items():
                    times[name].append(one_call(shape, dtype, device, backends))
            medians = {name: 1000 * statistics.median(t) for name, t in times.items()}
            rows.append({"dtype": dtype_name, "shape": shape_name, "ms": medians,
                         "fastest": min(medians, key=medians.get)})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/attention_backends.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = measure(device, args.repeats)
    names = list(BACKENDS)
    print(f"SDPA forward+backward, median of {args.repeats} ({device}, {args.threads} threads), ms")
    print(f"{'dtype':6} {'shape':14} " + " ".join(f"{n:>9}" for n in names) + "  fastest")
    for row in rows:
        cells = " ".join(f"{row['ms'][n]:9.2f}" if n in row["ms"] else f"{'-':>9}" for n in names)
        print(f"{row['dtype']:6} {row['shape']:14} {cells}  {row['fastest']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"device": str(device), "threads": args.threads, "torch": torch.__version__, "rows": rows}
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
