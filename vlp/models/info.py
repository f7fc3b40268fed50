"""Parameter counts per model component, as a plain aligned table (``vlp model info``)."""

from __future__ import annotations

from torch import nn

from vlp.models.parameters import count_components


def parameter_table(model: nn.Module) -> str:
    """Rows: the model's components (``parameter_components()``), then the total.

    A tensor shared by two components (a tied MLM decoder) is counted once, in the first.
    Works on meta-device models (only shapes are read).
    """
    counts = count_components(model.parameter_components())
    total = sum(counts.values())
    rows = [(name, count) for name, count in counts.items()] + [("total", total)]
    width = max(len(name) for name, _ in rows)
    lines = [f"{type(model).__name__} ({model.config.arch}), vocabulary {model.vocab_size}"]
    header = f"{'component':<{width}}  {'parameters':>13}  {'millions':>8}  {'share':>6}"
    lines += [header, "-" * len(header)]
    for index, (name, count) in enumerate(rows):
        if index == len(rows) - 1:
            lines.append("-" * len(header))
        share = 100.0 * count / total if total else 0.0
        lines.append(f"{name:<{width}}  {count:>13,}  {count / 1e6:>8.2f}  {share:>5.1f}%")
    for note in getattr(model, "load_report", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
