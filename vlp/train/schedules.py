"""Step-indexed schedules: the learning-rate factor and SemVLP's single/two-stream mode alternation.

Steps are 0-based indices of the optimizer step about to be taken (step 0 is the first update).
"""

from __future__ import annotations

import math
from fractions import Fraction

from vlp.config import ConfigError, ModeScheduleConfig


def warmup_linear_decay(step: int, warmup_steps: int, max_steps: int) -> float:
    """LR factor for step ``step``: linear warm-up to 1, then linear decay towards 0 at ``max_steps``.

    Warm-up: ``(step + 1) / warmup_steps`` for ``step < warmup_steps``, so the first update already
    moves (factor ``1/warmup``) and the last warm-up step reaches 1. Decay: ``(max_steps - step) /
    (max_steps - warmup_steps)``, which is 1 at the first step after warm-up and ``1 / (max_steps -
    warmup_steps)`` at the last step; it never reaches 0 inside the run. Past ``max_steps`` it is 0.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if max_steps <= warmup_steps:
        return 1.0 if step < max_steps else 0.0
    return max(0.0, (max_steps - step) / (max_steps - warmup_steps))


class ModeSchedule:
    """Which SemVLP mode ("single" or "two" stream) each step uses; a pure function of the step.

    kind ``single`` / ``two``: that mode at every step.
    kind ``iterative``, ``single_ratio == 0``: blocks of ``every`` steps, starting with single-stream
    (``every=1``: single, two, single, ...).
    kind ``iterative``, ``0 < single_ratio <= 1``: exactly that fraction of single-stream steps, spread
    evenly (error diffusion): step ``s`` is single iff ``ceil((s + 1) * r) > ceil(s * r)``. So the first
    ``n`` steps hold ``ceil(n * r)`` single steps, and ``r = 0.25`` gives single at steps 0, 4, 8, ...
    The ratio is turned into an exact fraction first, so no float drift accumulates over long runs.
    """

    def __init__(self, cfg: ModeScheduleConfig) -> None:
        if cfg.kind not in ("iterative", "single", "two"):
            raise ConfigError(
                f"objectives.mode_schedule.kind: expected iterative | single | two, got {cfg.kind!r}"
            )
        if cfg.kind == "iterative":
            if not 0.0 <= cfg.single_ratio <= 1.0:
                raise ConfigError(
                    "objectives.mode_schedule.single_ratio: expected a fraction in [0, 1], "
                    f"got {cfg.single_ratio}"
                )
            if cfg.single_ratio == 0.0 and cfg.every < 1:
                raise ConfigError(
                    f"objectives.mode_schedule.every: expected an integer >= 1, got {cfg.every}"
                )
        self.cfg = cfg
        self._ratio = Fraction(cfg.single_ratio).limit_denominator(1_000_000)

    def mode_at(self, step: int) -> str:
        """The mode of 0-based step ``step``."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        kind = self.cfg.kind
        if kind != "iterative":
            return kind
        if self._ratio > 0:
            r = self._ratio
            return "single" if math.ceil((step + 1) * r) > math.ceil(step * r) else "two"
        return "single" if (step // self.cfg.every) % 2 == 0 else "two"

    def modes(self, start: int, stop: int) -> list[str]:
        """Modes of steps ``start .. stop - 1``."""
        return [self.mode_at(s) for s in range(start, stop)]
