"""Tabulate the figures the downstream quality tests print into the README's downstream table and the
margins below it: both are written by this script, never by hand.

    .venv/bin/pytest -rP tests/e2e/test_downstream.py > downstream.log   # or the whole suite's log
    .venv/bin/python scripts/downstream.py --figures downstream.log --readme README.md

Each test prints one JSON object per task (``{"family", "task", "score", "blind", "majority"}``; retrieval
``{"family", "task", "image_r1", "text_r1", "chance"}``); rows come out in family order, then task
order. With ``--readme`` the table between the README's ``downstream-table`` markers is replaced, and the
list between its ``downstream-margins`` markers (each family's margin over its image-blanked run).
(`vlp demo` runs every task itself and writes its own table.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlp.data.synthetic.layout import TASK_FILES
from vlp.files import replace_marked_block
from vlp.tasks import get_task

FAMILIES = ("vilta", "semvlp")


def printed_figures(logs: list[str]) -> list[dict]:
    """The figures objects printed in ``logs``, in family order, then task order."""
    found = []
    for path in logs:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            start = line.find("{")
            if start < 0:
                continue
            try:
                figures = json.loads(line[start:])
            except json.JSONDecodeError:
                continue
            if (
                isinstance(figures, dict)
                and figures.get("family") in FAMILIES
                and figures.get("task") in TASK_FILES
            ):
                found.append(figures)
    tasks = list(TASK_FILES)
    return sorted(found, key=lambda f: (FAMILIES.index(f["family"]), tasks.index(f["task"])))


def figures_table(logs: list[str]) -> str:
    lines = [
        "| family | task | metric | fine-tuned | image blanked | majority / chance |",
        "|---|---|---|---|---|---|",
    ]
    for figures in printed_figures(logs):
        arch, task = figures["family"], figures["task"]
        if task == "retrieval":
            lines.append(
                f"| {arch} | retrieval | R@1 image / text | {figures['image_r1']:.1f} / "
                f"{figures['text_r1']:.1f} | - | {figures['chance']:.1f} |"
            )
        else:
            trivial = max(figures["majority"], TASK_FILES[task].chance or 0.0)  # what the tests compare with
            lines.append(
                f"| {arch} | {task} | {get_task(task).metric} | {figures['score']:.1f} | "
                f"{figures['blind']:.1f} | {trivial:.1f} |"
            )
    return "\n".join(lines)


FAMILY_NAMES = {"vilta": "ViLTA", "semvlp": "SemVLP"}
TASK_NAMES = {"vqa": "VQA", "gqa": "GQA", "nlvr2": "NLVR2", "snli_ve": "SNLI-VE", "retrieval": "retrieval"}


def margins_list(logs: list[str]) -> str:
    """One line per task: each family's margin over its image-blanked run (points), and retrieval R@1 as
    multiples of chance."""
    by_task: dict[str, list[dict]] = {}
    for figures in printed_figures(logs):
        by_task.setdefault(figures["task"], []).append(figures)
    lines = []
    for task, rows in by_task.items():
        if task == "retrieval":
            ratios = [row[key] / row["chance"] for row in rows for key in ("image_r1", "text_r1")]
            families = " and ".join(FAMILY_NAMES[row["family"]] for row in rows)
            span = f"{min(ratios):.0f}-{max(ratios):.0f}x"
            lines.append(f"- retrieval: R@1 {span} chance both ways ({families})")
        else:
            margins = ", ".join(
                f"{FAMILY_NAMES[row['family']]} {row['score'] - row['blind']:+.1f}" for row in rows
            )
            lines.append(f"- {TASK_NAMES[task]}: {margins}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--figures", nargs="+", required=True, help="logs of the quality tests (pytest -rP)")
    parser.add_argument("--readme", type=Path, help="replace the table between the README markers")
    args = parser.parse_args()
    text = figures_table(args.figures)
    print(text)
    margins = margins_list(args.figures)
    print(margins)
    if args.readme:
        replace_marked_block(args.readme, "downstream-table", text)
        replace_marked_block(args.readme, "downstream-margins", margins)


if __name__ == "__main__":
    main()
