"""`vlp demo` (and `make demo`): the whole main job on the built-in shapes world, from nothing to a table.

Stages, each in its own folder under ``OUT`` (cleared first, so a second run reuses nothing stale):
``shapes/`` (``vlp data synth``), ``text/`` (ViLTA only: the text-only MLM stage that initialises the
model and serves as soft-label teacher), ``pretrain/`` (the family's full pre-training), then per task
``<task>/`` (``vlp finetune``) with its val result file, metrics and example sheet, and for the
classification tasks ``<task>-question-only/`` (the same run with the image blanked: the question-only
baseline). One question answered with the VQA model, then one table of scores next to their baselines,
also written as ``demo.json`` and ``demo.md``. Same seed, same table.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vlp.config import ConfigError, load_config
from vlp.data.synthetic import SynthConfig, write_shapes_world
from vlp.data.synthetic.layout import TASK_FILES
from vlp.files import write_json
from vlp.pretrain import pretrain
from vlp.runs.evaluate import EvaluateRequest, run_evaluation
from vlp.runs.finetune import FinetuneRequest, finetune
from vlp.tasks import get_task

FAMILIES = ("vilta", "semvlp")
SCALES = ("tiny", "base")
TASKS = ("vqa", "retrieval", "nlvr2", "snli_ve", "gqa")
# Fine-tuning steps per task: VQA and NLVR2 need the longer budget to rise clearly above their
# question-only runs (see tests/downstream.py).
TASK_STEPS = {"vqa": 300, "nlvr2": 300, "gqa": 150, "snli_ve": 150, "retrieval": 150}
TEXT_STAGE_STEPS = 150
MARKER = ".vlp-demo"  # marks OUT as the demo's own, so that clearing it never removes anything else
QUIET = ("train.progress=false",)


@dataclass
class DemoRequest:
    out: str = "runs/demo"
    family: str = "vilta"
    scale: str = "tiny"
    images: int = 2000
    seed: int = 0
    tasks: tuple[str, ...] = TASKS
    pretrain_steps: int = 0  # 0: the preset's
    finetune_steps: int = 0  # 0: TASK_STEPS
    question_only: bool = True  # also run each classification task blind, for the question-only column
    progress: bool = True  # the trainers' progress bars

    def check(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"--family {self.family!r}: expected one of {', '.join(FAMILIES)}")
        if self.scale not in SCALES:
            raise ConfigError(f"--scale {self.scale!r}: expected one of {', '.join(SCALES)}")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ConfigError(f"--tasks {','.join(self.tasks)}: expected some of {','.join(TASKS)}")
        for name in ("pretrain_steps", "finetune_steps"):
            if getattr(self, name) < 0:
                option = "--" + name.replace("_", "-")
                raise ConfigError(f"{option} {getattr(self, name)}: expected 0 (the default) or more")
        if self.images < 100:
            raise ConfigError(f"--images {self.images}: the demo needs at least 100 images for its splits")


@dataclass
class TaskRow:
    """One line of the demo's table: a task's val score and its baselines (None: not measured)."""

    task: str
    metric: str
    score: float
    question_only: float | None = None
    majority: float | None = None
    chance: float | None = None
    extra: dict = field(default_factory=dict)  # other official figures (consistency, per direction R@1)


@dataclass
class DemoResult:
    rows: list[TaskRow]
    paths: dict[str, str]
    answer: dict
    seconds: float


class _Stages:
    """Numbered progress lines with the time since the start."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.perf_counter()

    def begin(self, what: str) -> None:
        self.done += 1
        print(f"== [{self.done}/{self.total}] {what}  (t = {self.elapsed():.0f} s)", flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def prepare_demo_dir(out: Path) -> None:
    """Clear ``out`` for a fresh run: only a folder the demo made (it holds the marker) or an empty one."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ConfigError(
                f"--out {out}: the folder holds files the demo did not write; give an empty or new folder"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by vlp demo; cleared by the next run\n", encoding="utf-8")


def world_overrides(shapes: Path) -> list[str]:
    """The data overrides that point a pre-training preset at a shapes world."""
    return [
        f"data.train={shapes / 'dataset_shapes.json'}",
        f"data.images_root={shapes / 'images'}",
        f"data.tokenizer={shapes / 'tokenizer'}",
    ]


def pretraining_overrides(family: str, shapes: Path) -> list[str]:
    """What the family's preset needs on a shapes world beyond the data paths: SemVLP's QA objective reads
    the world's VQA training questions, and from scratch it needs ITC beside its own losses to align the
    two modalities before ITM can learn (see the README's method notes)."""
    if family != "semvlp":
        return []
    vqa = shapes / "vqa"
    return [
        f"data.vqa={vqa / 'v2_OpenEnded_mscoco_train2014_questions.json'},"
        f"{vqa / 'v2_mscoco_train2014_annotations.json'}",
        "objectives.weights={mlm: 1.0, itm: 1.0, mvm: 1.0, qa: 1.0, itc: 1.0}",
    ]


def fine_tune_task(
    task: str,
    checkpoint: Path | str,
    shapes: Path,
    out: Path,
    steps: int,
    *extra: str,
    blind: bool = False,
    preset: str = "",
) -> dict:
    """``vlp finetune TASK`` on the shapes world for ``steps``, evaluated on val once at the end
    (``checkpoint`` "none" with a task ``preset``: from scratch)."""
    files = TASK_FILES[task]
    overrides = (f"train.max_steps={steps}", f"train.val_every={steps}", "train.ckpt_every=0", *extra)
    if blind:
        overrides += ("task.question_only=true",)
    request = FinetuneRequest(
        task=task, init=str(checkpoint), out=str(out), data=str(files.data_dir(shapes)),
        images=str(files.images_dir(shapes)), preset=preset, overrides=overrides,
    )  # fmt: skip
    return finetune(request)


def evaluate_task(task: str, checkpoint: Path, shapes: Path, out: Path, split: str):
    """``vlp evaluate`` of a fine-tuned checkpoint on ``split``: result file, metrics and example sheet."""
    files = TASK_FILES[task]
    request = EvaluateRequest(
        checkpoint=str(checkpoint), data=str(files.data_dir(shapes)), images=str(files.images_dir(shapes)),
        split=split, task=task, predictions=str(out / f"{split}_results.json"),
        metrics=str(out / f"{split}_metrics.json"), examples=str(out / f"{split}_examples.png"), device="cpu",
    )  # fmt: skip
    return run_evaluation(request)


def _row(task: str, metrics: dict, tuned: dict, blind: dict | None) -> TaskRow:
    if task == "retrieval":
        # caption -> image R@1; image -> caption R@1 and RSUM beside it
        extra = {"text_retrieval_r1": metrics["text_retrieval"]["r1"], "rsum": metrics["rsum"]}
        score = metrics["image_retrieval"]["r1"]
        return TaskRow(task, "image_retrieval_r1", score, chance=tuned["baseline/chance_r1"], extra=extra)
    metric = get_task(task).metric
    extra = {k: v for k, v in metrics.items() if k == "consistency"}
    return TaskRow(
        task, metric, metrics[metric], question_only=blind[f"best/{metric}"] if blind else None,
        majority=tuned.get("baseline/majority"), chance=TASK_FILES[task].chance, extra=extra,
    )  # fmt: skip


def run_demo(request: DemoRequest) -> DemoResult:
    request.check()
    out = Path(request.out)
    prepare_demo_dir(out)
    vilta = request.family == "vilta"
    blind_runs = sum(t != "retrieval" for t in request.tasks) if request.question_only else 0
    stages = _Stages(2 + vilta + len(request.tasks) + blind_runs + ("vqa" in request.tasks) + 1)
    quiet = () if request.progress else QUIET
    shapes, preset = out / "shapes", f"{request.family}-{request.scale}"

    stages.begin(f"shapes world: {request.images} images and every task's files -> {shapes}")
    write_shapes_world(SynthConfig(num_images=request.images, seed=request.seed), shapes)
    common = [*world_overrides(shapes), f"train.seed={request.seed}", "train.ckpt_every=0", *quiet]
    if request.pretrain_steps:
        common.append(f"train.max_steps={request.pretrain_steps}")
    pre_overrides = [*common, *pretraining_overrides(request.family, shapes)]
    if vilta:
        stages.begin("text-only MLM stage: the language encoder that becomes ViLTA's teacher and generator")
        steps = request.pretrain_steps or TEXT_STAGE_STEPS
        pretrain(load_config(f"{preset}-text", [*common, f"train.max_steps={steps}"]), out / "text")
        teacher = out / "text" / "final"
        pre_overrides += [f"model.init_from={teacher}", f"objectives.soft_labels.teacher={teacher}"]
    what = "MLM with soft labels, ITM with synthesized negatives, ITC" if vilta else "single/two-stream"
    stages.begin(f"pre-training {preset} ({what}) -> {out / 'pretrain'}")
    pretrain(load_config(preset, pre_overrides), out / "pretrain")
    checkpoint = out / "pretrain" / "final"

    rows, paths = [], {"shapes world": str(shapes), "pre-trained checkpoint": str(checkpoint)}
    finetune_extra = (f"train.seed={request.seed}", *quiet)
    for task in request.tasks:
        steps = request.finetune_steps or TASK_STEPS[task]
        stages.begin(f"fine-tune {task} ({steps} steps) and evaluate on val -> {out / task}")
        tuned = fine_tune_task(task, checkpoint, shapes, out / task, steps, *finetune_extra)
        outcome = evaluate_task(task, out / task / "best", shapes, out / task, get_task(task).val_split)
        blind = None
        if request.question_only and task != "retrieval":
            stages.begin(f"{task} with the image blanked (the question-only baseline)")
            blind = fine_tune_task(
                task, checkpoint, shapes, out / f"{task}-question-only", steps, *finetune_extra, blind=True
            )
        rows.append(_row(task, outcome.evaluation.metrics, tuned, blind))
        names = ["best/", "metrics.jsonl", *(Path(p).name for p in outcome.written)]
        paths[task] = f"{out / task}/{{{', '.join(names)}}}"
    answer = {}
    if "vqa" in request.tasks:
        stages.begin("vlp predict: one val question answered by the VQA model")
        answer = answer_one_question(out / "vqa" / "best", shapes)
    stages.begin("the table")
    result = DemoResult(rows, paths, answer, stages.elapsed())
    write_json(out / "demo.json", {"request": asdict(request), **asdict(result)})
    (out / "demo.md").write_text(format_table(rows) + "\n", encoding="utf-8")
    return result


def answer_one_question(checkpoint: Path, shapes: Path) -> dict:
    """``vlp predict`` on the first val question of the world's VQA files (its output printed as the
    command prints it); returns the command and the truth."""
    from vlp.cli import main as vlp_main

    vqa = shapes / "vqa"
    question = json.loads((vqa / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"][0]
    annotations = json.loads((vqa / "v2_mscoco_val2014_annotations.json").read_text())["annotations"]
    entry = next(a for a in annotations if a["question_id"] == question["question_id"])
    truth = entry["multiple_choice_answer"]
    image = TASK_FILES["vqa"].images_dir(shapes) / "val2014" / f"COCO_val2014_{question['image_id']:012d}.jpg"
    argv = ["predict", "--checkpoint", str(checkpoint), "--image", str(image)]
    argv += ["--question", question["question"], "--top-k", "3"]
    print("$ vlp " + " ".join(shlex.quote(part) for part in argv), flush=True)
    if vlp_main(argv) != 0:
        raise ValueError(f"vlp {' '.join(argv)} failed (its error is above)")
    print(f"(the truth: {truth})")
    return {"command": ["vlp", *argv], "truth": truth}


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(rows: list[TaskRow]) -> str:
    lines = [
        "| task | val metric | vlp | question only | majority | chance |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        metric = row.metric
        if row.task == "retrieval":
            metric = (
                f"R@1 caption -> image (image -> caption {row.extra['text_retrieval_r1']:.1f}, "
                f"RSUM {row.extra['rsum']:.1f})"
            )
        elif "consistency" in row.extra:
            metric += f" (consistency {row.extra['consistency']:.1f})"
        lines.append(
            f"| {row.task} | {metric} | {row.score:.1f} | {_cell(row.question_only)} | "
            f"{_cell(row.majority)} | {_cell(row.chance)} |"
        )
    return "\n".join(lines)


def format_paths(paths: dict[str, str]) -> str:
    width = max(map(len, paths))
    return "\n".join(f"  {name:<{width}}  {path}" for name, path in paths.items())
