"""Run one experiment of docs/results.md: pre-train each variant at equal steps, data and seeds, probe it,
fine-tune it on the downstream tasks, and write one ``result.json`` per (variant, seed).

    .venv/bin/python -m experiments.run vilta-ablation [--seeds 0,1,2] [--out runs/experiments]

Experiments: ``vilta-ablation`` (baseline MLM + ITM with random and ITC-hard negatives, + soft labels, +
synthesized negatives, both; all four start from the same text-only stage per seed), ``semvlp-ablation``
(single-only, two-only, iterative), ``cross`` (SemVLP with and without ViLTA's two objectives, both from a
SemVLP text-only stage), ``pretraining-helps`` (fine-tuning vilta-tiny from scratch, set beside the full
ViLTA checkpoints of ``vilta-ablation``), ``convergence`` (the baseline and ViLTA pre-trained three times
longer, probed and fine-tuned from the checkpoints at a quarter, half and all of the run: downstream
scores and the claims' signals against pre-training steps), ``precision`` (ViLTA pre-trained and
fine-tuned in fp32 and in bf16 autocast), ``precision-semvlp`` (the same for SemVLP). All of them share
one shapes world (``OUT/shapes``). A (variant, seed) whose ``result.json`` exists is skipped, so an
interrupted run picks up where it stopped; ``--fresh`` runs everything again, ``--reprobe`` only the
probes (on the kept pre-trained checkpoints), ``--redo TASKS`` only those tasks' fine-tuning where their
budget changed. ``python -m experiments.report`` turns the results into docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from vlp.config import load_config
from vlp.data.synthetic import SynthConfig, write_shapes_world
from vlp.data.tokenizer import load_tokenizer
from vlp.files import write_json
from vlp.inference import load_predictor
from vlp.models import checkpoint as model_checkpoint
from vlp.pretrain import pretrain
from vlp.probes import one_word_itm_accuracy, synonym_mlm_accuracy, val_captions
from vlp.runs.demo import fine_tune_task, world_overrides
from vlp.tasks import get_task
from vlp.train.metrics_log import read_metrics
from vlp.train.state import load_model_weights


@dataclass(frozen=True)
class Budget:
    """Steps of each stage, the same for every variant of an experiment (stated in docs/results.md)."""

    world_images: int = 600
    text_steps: int = 150
    pretrain_steps: int = 200
    # VQA at 100 steps stays at the question-only level for every variant (46.2 for all four ViLTA ones)
    task_steps: dict = field(default_factory=lambda: {"vqa": 300, "retrieval": 100, "nlvr2": 100})


@dataclass(frozen=True)
class Variant:
    name: str
    preset: str
    overrides: tuple[str, ...] = ()
    text_stage: str = ""  # "" or the text-stage preset whose output initialises the model (and teaches)
    pretrained: bool = True  # False: fine-tune from scratch (no pre-training)
    probe_mode: str = "single"  # SemVLP: the fusion mode the probes read the model in (the one it trained)
    task_overrides: tuple[str, ...] = ()  # added to every fine-tuning run of the variant


_VILTA_BASELINE = Variant("baseline", "vilta-tiny-baseline", text_stage="vilta-tiny-text")
_VILTA = Variant("both (ViLTA)", "vilta-tiny", text_stage="vilta-tiny-text")

_SEMVLP_OBJECTIVES = ("data.vqa=", "objectives.weights={mlm: 1.0, itm: 1.0, itc: 1.0}")
_VILTA_ON_SEMVLP = (
    "data.vqa=",
    "objectives.weights={mlm: 1.0, itm: 1.0, itc: 1.0, text_mlm: 0.5}",
    "objectives.soft_labels.enabled=true",
    "objectives.itm.hard_negatives=1",
    "objectives.itm.synthesized.per_positive=1",
)
_SEMVLP_TEXT = ("data.vqa=", "objectives.text_only=true", "objectives.weights={mlm: 1.0}")

EXPERIMENTS: dict[str, tuple[Variant, ...]] = {
    "vilta-ablation": (
        _VILTA_BASELINE,
        Variant("+soft labels", "vilta-tiny-soft", text_stage="vilta-tiny-text"),
        Variant("+synthesized negatives", "vilta-tiny-synth", text_stage="vilta-tiny-text"),
        _VILTA,
    ),
    "semvlp-ablation": (
        Variant("single-stream only", "semvlp-tiny-single", _SEMVLP_OBJECTIVES),
        Variant("two-stream only", "semvlp-tiny-two", _SEMVLP_OBJECTIVES, probe_mode="two"),
        Variant("iterative (SemVLP)", "semvlp-tiny", _SEMVLP_OBJECTIVES),
    ),
    "cross": (
        Variant("SemVLP", "semvlp-tiny", _SEMVLP_OBJECTIVES, text_stage="semvlp-tiny"),
        Variant("SemVLP + ViLTA objectives", "semvlp-tiny", _VILTA_ON_SEMVLP, text_stage="semvlp-tiny"),
    ),
    # its pre-trained side is vilta-ablation's "both (ViLTA)", fine-tuned at the same budget and seeds:
    # experiments/report.py puts those results beside these (fine-tuning them again gives the same)
    "pretraining-helps": (Variant("from scratch", "vilta-tiny", pretrained=False),),
    "convergence": (_VILTA_BASELINE, _VILTA),
    # ViLTA pre-trained and fine-tuned in fp32 and in bf16 autocast: may the tiny presets default to bf16?
    "precision": tuple(
        replace(_VILTA, name=p, overrides=(f"train.precision={p}",), task_overrides=(f"train.precision={p}",))
        for p in ("fp32", "bf16")
    ),
    # the same question for SemVLP (iterative, as semvlp-ablation's)
    "precision-semvlp": tuple(
        Variant(p, "semvlp-tiny", (*_SEMVLP_OBJECTIVES, f"train.precision={p}"),
                task_overrides=(f"train.precision={p}",))
        for p in ("fp32", "bf16")
    ),  # fmt: skip
}
# experiment -> its budget where it is not Budget(): convergence pre-trains 3x longer (ITM leaves chance
# only after ~250 steps in the demo's run), precision keeps the ablation's; both fine-tune only the tasks
# that moved in the ablation (NLVR2 at 100 steps is at chance for every variant)
BUDGETS = {
    "convergence": Budget(pretrain_steps=600, task_steps={"vqa": 300, "retrieval": 100}),
    "precision": Budget(task_steps={"vqa": 300, "retrieval": 100}),
    "precision-semvlp": Budget(task_steps={"vqa": 300, "retrieval": 100}),
}
# experiment -> the points of its pre-training run (fractions of the steps) probed and fine-tuned from
SNAPSHOTS = {"convergence": (0.25, 0.5, 1.0)}


def slug(name: str) -> str:
    """A variant's folder name: "both (ViLTA)" -> "both-vilta"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _run_dir(out: Path, experiment: str, variant: str, seed: int) -> Path:
    return out / experiment / slug(variant) / f"seed{seed}"


def text_stage(out: Path, preset: str, seed: int, budget: Budget, shapes: Path) -> Path:
    """The text-only MLM stage of ``preset`` for ``seed``, shared by every variant that starts from it."""
    folder = out / "text-stages" / f"{preset}-seed{seed}"
    if not (folder / "final").is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        extra = _SEMVLP_TEXT if preset.startswith("semvlp") else ()
        overrides = [*world_overrides(shapes), *_quiet(seed), f"train.max_steps={budget.text_steps}", *extra]
        pretrain(load_config(preset, overrides), folder)
    return folder / "final"


def _quiet(seed: int) -> list[str]:
    return [f"train.seed={seed}", "train.progress=false", "train.ckpt_every=0", "train.log_every=25"]


def snapshot_steps(experiment: str, budget: Budget) -> list[int]:
    """The pre-training steps of ``experiment`` probed and fine-tuned from (only the last, for most)."""
    fractions = SNAPSHOTS.get(experiment, (1.0,))
    return sorted({max(1, round(f * budget.pretrain_steps)) for f in fractions})


def pretrain_variant(
    out: Path, variant: Variant, seed: int, budget: Budget, shapes: Path, run: Path, keep: list[int]
) -> Path:
    """Pre-train ``variant``; the training checkpoints of the steps in ``keep`` are kept (see snapshot)."""
    overrides = [*world_overrides(shapes), *_quiet(seed), f"train.max_steps={budget.pretrain_steps}"]
    if keep[:-1]:
        every = math.gcd(*keep)
        overrides += [f"train.ckpt_every={every}", "train.keep_checkpoints=0"]
    overrides += list(variant.overrides)
    if variant.text_stage:
        teacher = text_stage(out, variant.text_stage, seed, budget, shapes)
        overrides += [f"model.init_from={teacher}", f"objectives.soft_labels.teacher={teacher}"]
    shutil.rmtree(run / "pretrain", ignore_errors=True)
    torch.manual_seed(seed)
    pretrain(load_config(variant.preset, overrides), run / "pretrain")
    return run / "pretrain" / "final"


def snapshot(pretrain_dir: Path, step: int) -> Path:
    """The model of ``pretrain_dir``'s training checkpoint at ``step`` as a loadable pre-trained directory:
    the final model's config and tokenizer, that step's weights."""
    final = pretrain_dir / "final"
    folder = pretrain_dir / "snapshots" / f"step-{step}"
    shutil.rmtree(folder, ignore_errors=True)
    weights = pretrain_dir / "checkpoints" / f"step-{step:08d}"
    model = load_model_weights(weights, model_checkpoint.load(final))
    model_checkpoint.save_pretrained(
        model,
        folder,
        tokenizer=load_tokenizer(final),
        extra_config=model_checkpoint.read_config(final).get("extra"),
        answer_vocab=model_checkpoint.read_answer_vocab(final),
    )
    return folder


def curves(run_dir: Path) -> list[dict]:
    """The pre-training log's MLM and ITM figures against steps (train every 25 steps, val every 100)."""
    rows = []
    for split in ("train", "val"):
        for entry in read_metrics(run_dir, split):
            figures = {**entry.get("losses", {}), **entry.get("metrics", {})}
            keep = {k: v for k, v in figures.items() if k.split("_")[0] in ("mlm", "itm", "itc")}
            rows.append({"split": split, "step": entry["step"], **keep})
    return rows


def downstream(
    checkpoint: Path | None, shapes: Path, run: Path, seed: int, budget: Budget, variant: Variant
) -> dict:
    """Each task's val score after fine-tuning ``checkpoint`` (None: from scratch, the task's preset)."""
    scores = {}
    for task, steps in budget.task_steps.items():
        extra = (*_quiet(seed), "train.warmup_steps=15", *variant.task_overrides)
        init, preset = checkpoint, ""
        if checkpoint is None:  # from scratch: the task preset's architecture and the world's tokenizer
            init, preset = "none", f"{task}-vilta-tiny"
            extra += (f"data.tokenizer={shapes / 'tokenizer'}",)
        shutil.rmtree(run / task, ignore_errors=True)  # a task run again starts afresh
        result = fine_tune_task(task, init, shapes, run / task, steps, *extra, preset=preset)
        if task == "retrieval":
            scores["retrieval_image_r1"] = result["eval/image_retrieval/r1"]
            scores["retrieval_text_r1"] = result["eval/text_retrieval/r1"]
        else:
            scores[task] = result[f"best/{get_task(task).metric}"]
        shutil.rmtree(run / task / "best", ignore_errors=True)  # keep the logs, not the weights
        shutil.rmtree(run / task / "final", ignore_errors=True)
    return scores


def probes(checkpoint: Path, shapes: Path, budget: Budget, mode: str = "single") -> dict:
    predictor = load_predictor(checkpoint)
    predictor.fusion_mode = mode
    pairs = val_captions(shapes, SynthConfig(num_images=budget.world_images, seed=0))
    return {**synonym_mlm_accuracy(predictor, pairs), **one_word_itm_accuracy(predictor, pairs)}


def reprobe(out: Path, experiment: str, budget: Budget, shapes: Path) -> None:
    """Run the probes again on every pre-trained checkpoint of ``experiment`` (after the probes changed),
    updating each result.json; the pre-training and fine-tuning are not run again."""
    variants = {v.name: v for v in EXPERIMENTS[experiment]}
    for path in sorted((out / experiment).glob("*/seed*/result.json")):
        checkpoint = path.parent / "pretrain" / "final"
        if checkpoint.is_dir():
            result = json.loads(path.read_text(encoding="utf-8"))
            result["probes"] = probes(checkpoint, shapes, budget, variants[result["variant"]].probe_mode)
            write_json(path, result)
            print(f"{path}: probes {result['probes']}", flush=True)


def unit_checkpoint(out: Path, experiment: str, variant: Variant, seed: int) -> Path | None:
    """The pre-trained checkpoint a (variant, seed) fine-tunes from (None: from scratch)."""
    if not variant.pretrained:
        return None
    return _run_dir(out, experiment, variant.name, seed) / "pretrain" / "final"


def run_one(out: Path, experiment: str, variant: Variant, seed: int, budget: Budget, shapes: Path) -> dict:
    """Pre-train, probe and fine-tune one (variant, seed); ``result["by_step"]`` holds the probes and
    downstream scores of every snapshot step, ``probes`` / ``downstream`` those of the last."""
    run = _run_dir(out, experiment, variant.name, seed)
    started = time.perf_counter()
    result: dict = {"experiment": experiment, "variant": variant.name, "seed": seed, "budget": asdict(budget)}
    if not variant.pretrained:
        result["downstream"] = downstream(None, shapes, run, seed, budget, variant)
    else:
        steps = snapshot_steps(experiment, budget)
        final = pretrain_variant(out, variant, seed, budget, shapes, run, keep=steps)
        result["curves"] = curves(run / "pretrain")
        result["by_step"] = []
        for step in steps:
            last = step == budget.pretrain_steps
            checkpoint = final if last else snapshot(run / "pretrain", step)
            tasks_dir = run if last else run / f"step-{step}"
            result["by_step"].append({
                "step": step,
                "probes": probes(checkpoint, shapes, budget, variant.probe_mode),
                "downstream": downstream(checkpoint, shapes, tasks_dir, seed, budget, variant),
            })  # fmt: skip
        result.update(probes=result["by_step"][-1]["probes"], downstream=result["by_step"][-1]["downstream"])
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_json(run / "result.json", result)
    return result


def redo_tasks(out: Path, experiment: str, tasks: list[str], budget: Budget, shapes: Path) -> None:
    """Fine-tune ``tasks`` again for every finished (variant, seed) of ``experiment`` whose result holds
    them at another number of steps than ``budget``'s (after a budget change), updating result.json."""
    variants = {v.name: v for v in EXPERIMENTS[experiment]}
    for path in sorted((out / experiment).glob("*/seed*/result.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        done = result["budget"]["task_steps"]
        todo = {task: budget.task_steps[task] for task in tasks if done.get(task) != budget.task_steps[task]}
        if not todo:
            continue
        variant = variants[result["variant"]]
        checkpoint = unit_checkpoint(out, experiment, variant, result["seed"])
        todo_budget = replace(budget, task_steps=todo)
        scores = downstream(checkpoint, shapes, path.parent, result["seed"], todo_budget, variant)
        result["downstream"].update(scores)
        done.update(todo)
        write_json(path, result)
        print(f"{path}: {scores}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("runs/experiments"))
    parser.add_argument("--variants", default="", help="comma-separated slugs (default: all)")
    parser.add_argument("--fresh", action="store_true", help="run again what already has a result.json")
    parser.add_argument("--reprobe", action="store_true", help="only run the probes again on the checkpoints")
    parser.add_argument("--redo", default="", help="tasks to fine-tune again where their steps changed")
    known, _ = parser.parse_known_args(argv)
    defaults = BUDGETS.get(known.experiment, Budget())
    parser.add_argument("--world-images", type=int, default=defaults.world_images)
    parser.add_argument("--text-steps", type=int, default=defaults.text_steps)
    parser.add_argument("--pretrain-steps", type=int, default=defaults.pretrain_steps)
    parser.add_argument(
        "--task-steps", type=int, default=0, help="every task's fine-tuning steps (0: default)"
    )
    args = parser.parse_args(argv)
    tasks = {task: args.task_steps or steps for task, steps in defaults.task_steps.items()}
    budget = Budget(args.world_images, args.text_steps, args.pretrain_steps, tasks)
    shapes, world = args.out / "shapes", args.out / "world.json"
    if not world.is_file():
        write_shapes_world(SynthConfig(num_images=budget.world_images, seed=0), shapes, overwrite=True)
        write_json(world, {"num_images": budget.world_images, "seed": 0})
    elif json.loads(world.read_text())["num_images"] != budget.world_images:
        raise SystemExit(
            f"{world}: a world of another size is there; give another --out or its --world-images"
        )
    if args.reprobe:
        return reprobe(args.out, args.experiment, budget, shapes)
    if args.redo:
        return redo_tasks(args.out, args.experiment, args.redo.split(","), budget, shapes)
    wanted = set(filter(None, args.variants.split(",")))
    for seed in (int(s) for s in args.seeds.split(",")):
        for variant in EXPERIMENTS[args.experiment]:
            if wanted and slug(variant.name) not in wanted:
                continue
            done = _run_dir(args.out, args.experiment, variant.name, seed) / "result.json"
            if done.is_file() and not args.fresh:
                print(f"{args.experiment} / {variant.name} / seed {seed}: done before ({done})", flush=True)
                continue
            result = run_one(args.out, args.experiment, variant, seed, budget, shapes)
            figures = {**result.get("probes", {}), **result["downstream"]}
            shown = ", ".join(
                f"{k} {v:.1f}" for k, v in figures.items() if not k.endswith(("masked", "pairs"))
            )
            print(
                f"{args.experiment} / {variant.name} / seed {seed} ({result['seconds']:.0f} s): {shown}",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
