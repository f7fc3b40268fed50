"""Training logs on the main rank: a JSONL metrics file, TensorBoard events and a tqdm progress bar.

``out/metrics.jsonl`` holds one JSON object per log event::

    {"step": 20, "split": "train", "epoch": 0, "losses": {"mlm": 2.1, "itm": 0.6, "total": 2.7},
     "metrics": {"mlm_acc": 0.31, "grad_norm": 0.9}, "lr": 0.00095, "samples_per_s": 812.4,
     "step_time": 0.039, "time": 1732380000.1}

``losses`` carries the unweighted losses by name plus ``total`` (the weighted sum the optimizer saw).
TensorBoard scalars go to ``out/tb`` as ``<split>/loss/<name>``, ``<split>/<metric>``, ``train/lr`` and
``train/samples_per_s``. On resume from step ``N`` both are cut back to step ``N`` first, so a resumed
run's logs read like those of an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vlp.files import replace_text

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become strings ("nan", "inf") rather than invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def read_metrics(out_dir: str | Path, split: str | None = None, *, drop_torn_end: bool = False) -> list[dict]:
    """The events of ``out/metrics.jsonl`` (optionally of one split), in file order.

    A line that is not a JSON object is an error naming it; with ``drop_torn_end`` the last line, when
    torn (a write cut short by a crash), is dropped with a warning instead.
    """
    path = Path(out_dir) / METRICS_FILE
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    last = max((i for i, line in enumerate(lines, 1) if line.strip()), default=0)
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as err:
            if drop_torn_end and number == last:
                log.warning("%s:%d: dropped a torn last line (%s)", path, number, err)
                continue
            raise ValueError(f"{path}:{number}: not a JSON object: {err}") from None
        if split is None or event.get("split") == split:
            events.append(event)
    return events


class MetricsLogger:
    """Writes log events to JSONL and TensorBoard; a no-op when ``enabled`` is False (non-main ranks)."""

    def __init__(
        self,
        out_dir: str | Path,
        enabled: bool = True,
        tensorboard: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / METRICS_FILE
        self._file = None
        self._writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self._file = open(self.path, "w", encoding="utf-8")
        else:
            self._truncate_after(resume_step)
            self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self._writer = SummaryWriter(str(Path(out_dir) / TB_DIR), purge_step=purge)

    def _truncate_after(self, step: int) -> None:
        """Drop events logged after ``step`` (written before a crash, redone after resuming)."""
        if not self.path.is_file():
            return
        events = read_metrics(self.path.parent, drop_torn_end=True)
        kept = "".join(json.dumps(e) + "\n" for e in events if int(e.get("step", 0)) <= step)
        replace_text(self.path, kept, durable=True)

    def log(
        self,
        step: int,
        split: str,
        losses: dict[str, float],
        metrics: dict[str, float] | None = None,
        lr: float | None = None,
        samples_per_s: float | None = None,
        step_time: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Record one event and return it (as written)."""
        event: dict[str, Any] = {"step": step, "split": split, **extra}
        event.update(
            losses=dict(losses),
            metrics=dict(metrics or {}),
            lr=lr,
            samples_per_s=samples_per_s,
            step_time=step_time,
            time=time.time(),
        )
        if not self.enabled:
            return event
        assert self._file is not None
        self._file.write(json.dumps(_clean(event)) + "\n")
        self._file.flush()
        if self._writer is not None:
            for name, value in losses.items():
                self._writer.add_scalar(f"{split}/loss/{name}", value, step)
            for name, value in (metrics or {}).items():
                self._writer.add_scalar(f"{split}/{name}", value, step)
            if lr is not None:
                self._writer.add_scalar(f"{split}/lr", lr, step)
            if samples_per_s is not None:
                self._writer.add_scalar(f"{split}/samples_per_s", samples_per_s, step)
            self._writer.flush()
        return event

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _short(value: float) -> str:
    return f"{value:.4g}"


class Progress:
    """A tqdm bar over optimizer steps with the latest losses and samples/s (tqdm adds the ETA); ``desc``
    leads the line (the trainer's: the precision the steps run in)."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, desc: str = "") -> None:
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc=desc or None,
            disable=not enabled,
            unit="step",
            dynamic_ncols=True,
        )

    def update(self, steps: int, losses: dict[str, float], samples_per_s: float | None = None) -> None:
        postfix = {name: _short(value) for name, value in losses.items()}
        if samples_per_s is not None:
            postfix["samples/s"] = f"{samples_per_s:.1f}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(steps)

    def close(self) -> None:
        self._bar.close()
