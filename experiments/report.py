"""Tables and plots of the experiments' results for docs/results.md: never typed by hand.

    .venv/bin/python -m experiments.report [--runs runs/experiments] [--results docs/results.md]

For each experiment with results under RUNS: a table of mean +- standard deviation over seeds (probes and
downstream scores), a table of each variant's difference to the first variant, paired by seed (starred
where it is beyond twice its standard error, otherwise inside the noise), and a PNG of the pre-training
curves (MLM and ITM accuracy against steps, mean over seeds) in docs/figures/. Each experiment's block
replaces the one between ``<!-- results:EXPERIMENT -->`` markers in RESULTS; the prose around the blocks
is written by people reading them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
from collections import defaultdict
from pathlib import Path

from experiments.run import EXPERIMENTS
from vlp.files import replace_marked_block

# figure -> (column title, where it lives in result.json)
COLUMNS = {
    "mlm_synonym_prob": ("MLM p(any synonym)", "probes"),
    "mlm_exact_prob": ("MLM p(exact word)", "probes"),
    "mlm_synonym": ("MLM acc., synonyms count", "probes"),
    "itm_one_word_pairwise": ("ITM one-word pairs", "probes"),
    "vqa": ("VQA", "downstream"),
    "retrieval_image_r1": ("R@1 caption->image", "downstream"),
    "retrieval_text_r1": ("R@1 image->caption", "downstream"),
    "nlvr2": ("NLVR2", "downstream"),
}
# experiment -> (experiment, variant, shown as) whose results stand as its first row: pretraining-helps
# trains only the from-scratch side; its pre-trained side is the ViLTA ablation's full model, fine-tuned
# at the same budget and seeds
REFERENCE = {"pretraining-helps": ("vilta-ablation", "both (ViLTA)", "pre-trained (ViLTA)")}
CURVES = (("mlm_acc", "MLM accuracy (train)"), ("itm_acc_balanced", "ITM balanced accuracy (train)"))
# figures plotted against the pre-training step of the checkpoint they were measured on (``by_step``)
BY_STEP = ("vqa", "retrieval_text_r1", "itm_one_word_pairwise", "mlm_synonym_prob")


def load_results(runs: Path) -> dict[str, dict[str, list[dict]]]:
    """experiment -> variant -> the result.json of each seed, in seed order; variants in the order
    experiments/run.py defines them (the first is the one the others are compared with)."""
    found: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for path in runs.glob("*/*/seed*/result.json"):
        result = json.loads(path.read_text(encoding="utf-8"))
        found[result["experiment"]][result["variant"]].append(result)
    ordered = {}
    for experiment, variants in found.items():
        budgets = {json.dumps(r["budget"], sort_keys=True) for rs in variants.values() for r in rs}
        if len(budgets) > 1:
            raise SystemExit(
                f"{runs}/{experiment}: its results were made at different budgets ({' vs '.join(budgets)}); "
                "run experiments.run with --redo TASKS (or --fresh) first"
            )
        order = [v.name for v in EXPERIMENTS.get(experiment, ())]
        names = sorted(variants, key=lambda n: order.index(n) if n in order else len(order))
        ordered[experiment] = {n: sorted(variants[n], key=lambda r: r["seed"]) for n in names}
    return ordered


def _values(results: list[dict], figure: str) -> list[float]:
    section = COLUMNS[figure][1]
    return [r[section][figure] for r in results if figure in r.get(section, {})]


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _by_seed(results: list[dict], figure: str) -> dict[int, float]:
    section = COLUMNS[figure][1]
    return {r["seed"]: r[section][figure] for r in results if figure in r.get(section, {})}


def difference(a: dict[int, float], b: dict[int, float]) -> str:
    """Mean over the shared seeds of ``b - a`` (paired: same seed, same text stage and data order),
    starred when beyond twice the standard error of the paired differences."""
    diffs = [b[seed] - a[seed] for seed in sorted(a.keys() & b.keys())]
    if len(diffs) < 2:
        return "-"
    mean, se = statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
    return f"{mean:+.1f}{'*' if abs(mean) > 2 * se else ''}"


def table(variants: dict[str, list[dict]]) -> str:
    figures = [f for f in COLUMNS if any(_values(rs, f) for rs in variants.values())]
    lines = [
        "| variant | seeds | " + " | ".join(COLUMNS[f][0] for f in figures) + " |",
        "|---|---|" + "---|" * len(figures),
    ]
    for name, results in variants.items():
        cells = []
        for figure in figures:
            values = _values(results, figure)
            cells.append("-" if not values else "{:.1f} ± {:.1f}".format(*_mean_std(values)))
        lines.append(f"| {name} | {len(results)} | " + " | ".join(cells) + " |")
    reference, *others = list(variants)
    if others:
        lines += [
            "",
            f"Difference to {reference}, seed by seed (mean of the paired differences in points; * beyond "
            "twice their standard error, otherwise inside the noise):",
            "",
            "| variant | " + " | ".join(COLUMNS[f][0] for f in figures) + " |",
            "|---|" + "---|" * len(figures),
        ]
        for name in others:
            cells = [
                difference(_by_seed(variants[reference], f), _by_seed(variants[name], f)) for f in figures
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _step_results(results: list[dict]) -> dict[int, list[dict]]:
    """pre-training step -> one result-like dict ({probes, downstream, seed}) per seed measured there."""
    found = defaultdict(list)
    for result in results:
        for point in result.get("by_step", []):
            found[point["step"]].append({**point, "seed": result["seed"]})
    return dict(sorted(found.items()))


def step_table(variants: dict[str, list[dict]]) -> str | None:
    """Each variant's probes and downstream scores against the pre-training step they were measured at,
    mean +- standard deviation over seeds; None when no result measured more than one step."""
    by_variant = {name: _step_results(results) for name, results in variants.items()}
    if not any(len(steps) > 1 for steps in by_variant.values()):
        return None
    figures = [f for f in COLUMNS if any(_values(rs, f) for s in by_variant.values() for rs in s.values())]
    lines = [
        "| variant | pre-training step | seeds | " + " | ".join(COLUMNS[f][0] for f in figures) + " |",
        "|---|---|---|" + "---|" * len(figures),
    ]
    for name, steps in by_variant.items():
        for step, results in steps.items():
            cells = ["{:.1f} ± {:.1f}".format(*_mean_std(_values(results, f))) for f in figures]
            lines.append(f"| {name} | {step} | {len(results)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, axes, title: str, out: Path) -> Path:
    """Label every panel's x axis with the pre-training step, add the legend and ``title``, write ``out``."""
    for ax in axes:
        ax.set_xlabel("pre-training step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    _pyplot().close(fig)
    return out


def plot_by_step(experiment: str, variants: dict[str, list[dict]], out: Path) -> Path:
    """:data:`BY_STEP`'s figures against the pre-training step, mean over seeds with +- one std."""
    fig, axes = _pyplot().subplots(1, len(BY_STEP), figsize=(4 * len(BY_STEP), 3.4))
    for ax, figure in zip(axes, BY_STEP, strict=True):
        for name, results in variants.items():
            points = [(step, _values(rs, figure)) for step, rs in _step_results(results).items()]
            points = [(step, _mean_std(values)) for step, values in points if values]
            if points:
                steps = [step for step, _ in points]
                means = [mean for _, (mean, _) in points]
                stds = [std for _, (_, std) in points]
                ax.errorbar(steps, means, yerr=stds, marker="o", capsize=3, label=name)
        ax.set_title(COLUMNS[figure][0])
    title = f"{experiment}: fine-tuned / probed from each checkpoint, mean ± std over seeds"
    return _save(fig, axes, title, out)


def plot_curves(experiment: str, variants: dict[str, list[dict]], out: Path) -> Path | None:
    """MLM and ITM train accuracy against steps, the mean over seeds per variant."""
    if not any(r.get("curves") for rs in variants.values() for r in rs):
        return None
    fig, axes = _pyplot().subplots(1, len(CURVES), figsize=(5 * len(CURVES), 3.6))
    for ax, (key, title) in zip(axes, CURVES, strict=True):
        for name, results in variants.items():
            by_step = defaultdict(list)
            for result in results:
                for row in result.get("curves", []):
                    if row["split"] == "train" and key in row:
                        by_step[row["step"]].append(row[key])
            if by_step:
                steps = sorted(by_step)
                ax.plot(steps, [statistics.fmean(by_step[s]) for s in steps], label=name)
        ax.set_title(title)
    return _save(fig, axes, f"{experiment}: mean over seeds", out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/experiments"))
    parser.add_argument("--results", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    args = parser.parse_args(argv)
    found = load_results(args.runs)
    if not found:
        raise SystemExit(f"--runs {args.runs}: no */*/seed*/result.json there (run experiments/run.py first)")
    for experiment, (source, variant, name) in REFERENCE.items():
        if experiment in found and variant in found.get(source, {}):
            found[experiment] = {name: found[source][variant], **found[experiment]}
    for experiment, variants in found.items():
        text = table(variants)
        steps = step_table(variants)
        plots = [(plot_curves(experiment, variants, args.figures / f"{experiment}-curves.png"), "curves")]
        if steps is not None:
            text += "\n\nAgainst pre-training steps:\n\n" + steps
            plots.append(
                (plot_by_step(experiment, variants, args.figures / f"{experiment}-by-step.png"), "by step")
            )
        for plot, what in plots:
            if plot is not None:
                relative = os.path.relpath(plot.resolve(), args.results.resolve().parent)
                text += f"\n\n![{experiment} {what}]({Path(relative).as_posix()})"
        print(f"## {experiment}\n{text}\n")
        try:
            replace_marked_block(args.results, f"results:{experiment}", text)
        except ValueError as err:
            raise SystemExit(f"{err}: add them where the {experiment} table belongs") from None


if __name__ == "__main__":
    main()
