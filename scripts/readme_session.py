"""Run the README's fine-tuning session for real and write its commands and output into the README.

    .venv/bin/python scripts/readme_session.py [--run runs/readme] [--readme README.md]

A 600-image shapes world, vilta-tiny-baseline pre-trained for 300 steps, then for each of the five tasks
``vlp finetune`` (the task's tiny preset, 150 steps), ``vlp evaluate`` on its val split with result and
metrics files, and ``vlp predict`` on one val example. Every command runs through the installed ``vlp``;
long outputs keep their last lines. The block between the README's ``finetune-session`` markers is
replaced; the whole log goes to ``RUN/session.log``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from vlp.data.synthetic.layout import TASK_FILES
from vlp.files import replace_marked_block
from vlp.runs.demo import world_overrides
from vlp.tasks import get_task

VLP = str(Path(sys.executable).with_name("vlp"))
STEPS = 150


def run(command: list[str], log, keep: int) -> list[str]:
    """Run ``command``; its transcript (``$ vlp ...`` and the last ``keep`` lines of output)."""
    shown = "$ vlp " + " ".join(shlex.quote(part) for part in command)
    started = time.perf_counter()
    done = subprocess.run([VLP, *command], capture_output=True, text=True)
    lines = (done.stdout + done.stderr).rstrip().splitlines()
    log.write(f"{shown}\n" + "\n".join(lines) + f"\n# {time.perf_counter() - started:.0f} s\n")
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {shown}\n" + "\n".join(lines[-20:]))
    cut = ["..."] if len(lines) > keep else []
    return [shown, *cut, *lines[-keep:]] if keep else [shown]


def first_val_examples(shapes: Path) -> dict:
    """One val example per task: the image paths and texts ``vlp predict`` is shown with."""
    questions = json.loads((shapes / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    question = questions["questions"][0]
    vqa_image = shapes / "images" / "val2014" / f"COCO_val2014_{question['image_id']:012d}.jpg"
    statement = json.loads((shapes / "nlvr2" / "dev.json").read_text().splitlines()[0])
    stem = statement["identifier"].rsplit("-", 1)[0]
    pair = [shapes / "nlvr2" / "images" / "dev" / f"{stem}-img{side}.png" for side in (0, 1)]
    hypothesis = json.loads((shapes / "snli_ve" / "snli_ve_dev.jsonl").read_text().splitlines()[0])
    premise = shapes / "snli_ve" / "flickr30k_images" / f"{hypothesis['Flickr30K_ID']}.jpg"
    return {
        "vqa": ["--image", str(vqa_image), "--question", question["question"]],
        "gqa": ["--image", str(vqa_image), "--question", question["question"]],
        "nlvr2": ["--image", str(pair[0]), "--image", str(pair[1]), "--text", statement["sentence"]],
        "snli_ve": ["--image", str(premise), "--text", hypothesis["sentence2"]],
        "retrieval": ["--text", hypothesis["sentence1"], "--images", str(shapes / "images" / "val2014"),
                      "--top-k", "3"],
    }  # fmt: skip


def session(run_dir: Path, log) -> list[str]:
    shapes = run_dir / "shapes"
    data = world_overrides(shapes)
    out = run(
        ["data", "synth", "--out", str(shapes), "--images", "600", "--seed", "0", "--overwrite"], log, 0
    )
    pretrained = run_dir / "vilta"
    pretrain = ["pretrain", "--config", "vilta-tiny-baseline", "--out", str(pretrained), *data,
                "train.max_steps=300", "train.progress=false"]  # fmt: skip
    out += run(pretrain, log, 3)
    examples = first_val_examples(shapes)
    for task, files in TASK_FILES.items():
        tuned, split = run_dir / task, get_task(task).val_split
        where = ["--data", str(files.data_dir(shapes))]
        if files.images:
            where += ["--images", str(files.images_dir(shapes))]
        finetune = [
            "finetune",
            task,
            "--init",
            str(pretrained / "final"),
            "--out",
            str(tuned),
            *where,
            f"train.max_steps={STEPS}",
            f"train.val_every={STEPS}",
            "train.progress=false",
        ]
        out += run(finetune, log, 2)
        evaluate = ["evaluate", "--checkpoint", str(tuned / "best"), *where, "--split", split,
                    "--predictions", str(run_dir / f"{task}_{split}_results.json"),
                    "--metrics", str(run_dir / f"{task}_{split}_metrics.json")]  # fmt: skip
        if task == "retrieval":
            evaluate += ["--task", "retrieval"]
        out += run(evaluate, log, 14)
        out += run(["predict", "--checkpoint", str(tuned / "best"), *examples[task]], log, 5)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/readme")
    parser.add_argument("--readme", default="")
    args = parser.parse_args()
    run_dir = Path(args.run)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "session.log", "w") as log:
        lines = session(run_dir, log)
    print("\n".join(lines))
    if args.readme:
        replace_marked_block(args.readme, "finetune-session", "\n".join(["```", *lines, "```"]))
        print(f"wrote the session into {args.readme}")


if __name__ == "__main__":
    main()
