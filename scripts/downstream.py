"""Fine-tune pre-trained checkpoints on every task of a shapes world and tabulate the scores next to
their baselines: the README's downstream table is written by this script, never by hand.

    .venv/bin/python scripts/downstream.py --shapes runs/demo/shapes --out runs/downstream \\
        --pretrained vilta=runs/demo/vilta/final --pretrained semvlp=runs/demo/semvlp/final \\
        --readme README.md

``--figures ARCH=LOG ...`` instead tabulates the figures the downstream quality tests print (one JSON
object per line, ``pytest -rP tests/e2e/test_downstream.py -k ViLTA > LOG``), without running anything.

For each family and task: one fine-tuning run (``vlp finetune``, the task's tiny preset) and, for the
classification tasks, the same run blind (``task.question_only=true``: the image replaced by zeros), so
the table shows what looking at the image is worth. Writes ``OUT/downstream.json`` and
``OUT/downstream.md``; with ``--readme`` the table between the README's ``downstream-table`` markers is
replaced.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from vlp.files import replace_marked_block
from vlp.runs.finetune import FinetuneRequest, finetune
from vlp.train.metrics_log import read_metrics

# task -> (data folder, images folder or None = DATA/images, metric, chance in percent)
TASKS = {
    "vqa": ("vqa", "images", "overall", None),
    "gqa": ("gqa", None, "accuracy", None),
    "nlvr2": ("nlvr2", None, "accuracy", 50.0),
    "snli_ve": ("snli_ve", "snli_ve/flickr30k_images", "accuracy", 100 / 3),
    "retrieval": (".", None, "image_retrieval/r1", None),
}


def run_one(arch: str, checkpoint: str, task: str, shapes: Path, out: Path, steps: int, blind: bool) -> dict:
    data, images, metric, _ = TASKS[task]
    name = f"{arch}-{task}" + ("-blind" if blind else "")
    overrides = [f"train.max_steps={steps}", f"train.val_every={max(1, steps // 2)}", "train.progress=false"]
    if blind:
        overrides.append("task.question_only=true")
    started = time.perf_counter()
    result = finetune(
        FinetuneRequest(
            task=task, init=checkpoint, out=str(out / name), data=str(shapes / data),
            images=str(shapes / images) if images else "", overrides=tuple(overrides),
        )
    )  # fmt: skip
    train = read_metrics(out / name, "train")
    evals = read_metrics(out / name, "eval")
    return {
        "score": result[f"best/{metric if task != 'retrieval' else 'rsum'}"],
        "metric": metric,
        "eval": {k[len("eval/") :]: v for k, v in result.items() if k.startswith("eval/")},
        "baselines": {k[len("baseline/") :]: v for k, v in result.items() if k.startswith("baseline/")},
        "step_ms": 1000 * statistics.median(e["step_time"] for e in train),
        "eval_per_s": statistics.median(e["metrics"].get("items_per_s", 0.0) for e in evals),
        "seconds": time.perf_counter() - started,
        "steps": steps,
    }


def table(results: dict) -> str:
    lines = [
        "| family | task | metric | fine-tuned | image blanked | majority / chance | step ms | eval/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arch, tasks in results.items():
        for task, runs in tasks.items():
            full, blind = runs["full"], runs.get("blind")
            metric = TASKS[task][2]
            score = full["eval"].get(metric, full["score"]) if task == "retrieval" else full["score"]
            trivial = full["baselines"].get("majority", TASKS[task][3] or full["baselines"].get("chance_r1"))
            blind_score = f"{blind['score']:.1f}" if blind else "-"
            eval_rate = f"{full['eval_per_s']:.0f}" if full["eval_per_s"] else "-"
            lines.append(
                f"| {arch} | {task} | {metric} | {score:.1f} | {blind_score} | {trivial:.1f} | "
                f"{full['step_ms']:.0f} | {eval_rate} |"
            )
    return "\n".join(lines)


def figures_table(logs: list[str]) -> str:
    """The table of the quality tests' printed figures (``{"task", "score", "blind", "majority"}`` per
    task; retrieval ``{"task", "image_r1", "text_r1", "chance"}``)."""
    lines = [
        "| family | task | metric | fine-tuned | image blanked | majority / chance |",
        "|---|---|---|---|---|---|",
    ]
    for item in logs:
        arch, path = item.split("=", 1)
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            start = line.find("{")
            if start < 0:
                continue
            try:
                figures = json.loads(line[start:])
            except json.JSONDecodeError:
                continue
            task = figures.get("task")
            if task == "retrieval":
                lines.append(
                    f"| {arch} | retrieval | R@1 image / text | {figures['image_r1']:.1f} / "
                    f"{figures['text_r1']:.1f} | - | {figures['chance']:.1f} |"
                )
            elif task in TASKS:
                trivial = TASKS[task][3] or figures["majority"]
                lines.append(
                    f"| {arch} | {task} | {TASKS[task][2]} | {figures['score']:.1f} | "
                    f"{figures['blind']:.1f} | {trivial:.1f} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=Path, help="a shapes world (vlp data synth)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--pretrained", action="append", default=[], help="ARCH=CHECKPOINT_DIR")
    parser.add_argument("--figures", nargs="+", help="ARCH=LOG: tabulate the quality tests' figures")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps per run")
    parser.add_argument("--readme", type=Path, help="replace the table between the README markers")
    args = parser.parse_args()
    if args.figures:
        text = figures_table(args.figures)
        print(text)
        if args.readme:
            replace_marked_block(args.readme, "downstream-table", text)
        return
    if not (args.shapes and args.out and args.pretrained):
        parser.error("give --shapes, --out and --pretrained (or --figures)")
    results: dict[str, dict] = {}
    for item in args.pretrained:
        arch, checkpoint = item.split("=", 1)
        for task in args.tasks.split(","):
            runs = {"full": run_one(arch, checkpoint, task, args.shapes, args.out, args.steps, False)}
            if task != "retrieval":
                runs["blind"] = run_one(arch, checkpoint, task, args.shapes, args.out, args.steps, True)
            results.setdefault(arch, {})[task] = runs
            print(f"{arch} {task}: {runs['full']['score']:.2f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "downstream.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    text = table(results)
    (args.out / "downstream.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    if args.readme:
        replace_marked_block(args.readme, "downstream-table", text)


if __name__ == "__main__":
    main()
