"""A toy trainer for the trainer's tests: a toy model, a toy step module (two named losses, "a" and "b"), a
toy resumable loader, and ``make_cfg`` / ``make_trainer`` building a :class:`vlp.train.Trainer` on them.

Shared by tests/train/test_loop.py (also run there as a torchrun script), tests/train/test_reliability.py
and tests/objectives/test_fidelity.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vlp.config import ModeScheduleConfig, TrainConfig
from vlp.objectives.base import ObjectiveOutput
from vlp.train import ModeSchedule, Trainer

DIM = 4

# --------------------------------------------------------------------------- toys


@dataclass
class ToyBatch:
    x: torch.Tensor
    ya: torch.Tensor
    yb: torch.Tensor

    @property
    def size(self) -> int:
        return self.x.shape[0]

    def to(self, device):
        return ToyBatch(self.x.to(device), self.ya.to(device), self.yb.to(device))


class ToyModel(nn.Module):
    """encoders: encoder + norm; fusion: a ModuleList block + ``cross`` (used only in "two" mode); heads."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.encoder = nn.Linear(DIM, 8)
        self.norm = nn.LayerNorm(8)
        self.blocks = nn.ModuleList([nn.Linear(8, 8)])
        self.cross = nn.Linear(8, 8)
        self.head_a = nn.Linear(8, 1)
        self.head_b = nn.Linear(8, 1)
        self.drop = nn.Dropout(dropout)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "encoders": [*self.encoder.parameters(), *self.norm.parameters()],
            "fusion": [*self.blocks.parameters(), *self.cross.parameters()],
            "heads": [*self.head_a.parameters(), *self.head_b.parameters()],
        }

    def features(self, x: torch.Tensor, mode: str | None) -> torch.Tensor:
        h = self.drop(self.norm(torch.relu(self.encoder(x))))
        for block in self.blocks:
            h = h + torch.tanh(block(h))
            if mode == "two":  # a shared block run twice in one forward, as SemVLP's two-stream mode does
                h = h + 0.5 * torch.tanh(block(h))
        if mode == "two":
            h = h + self.cross(h)
        return h


class Temperature(nn.Module):
    """A trainable module outside the model (like an ITC temperature) that the step module uses."""

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(()))


class ToyTeacher(nn.Module):
    """A frozen module outside the model (like a distillation teacher): fixed weights (no RNG drawn), never
    trained, not in the trainer's checkpoints."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(-1.0, 1.0, DIM)[:, None], requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.weight).squeeze(-1)


class ToyObjective(nn.Module):
    """The step module: losses "a" and "b" (squared errors of two heads of ``model``), weighted a=1, b=0.5.

    Optional: a learnable ``temperature`` scaling head b, a frozen ``teacher`` shifting target a, a mode
    ``schedule`` (training: the mode of ``step``; eval: the i-th call since eval mode gets the mode of
    step i, as PretrainingObjectives does), a NaN loss / a crash at a 0-based step.
    """

    def __init__(
        self,
        model: ToyModel,
        temperature: Temperature | None = None,
        *,
        schedule: ModeSchedule | None = None,
        teacher: ToyTeacher | None = None,
        nan_at: int | None = None,
        crash_at: int | None = None,
    ):
        super().__init__()
        self.model = model
        self.temperature = temperature
        self.teacher = teacher
        self.schedule = schedule
        self.weights: dict[str, float] | None = {"a": 1.0, "b": 0.5}
        self.nan_at = nan_at
        self.crash_at = crash_at
        self.dtypes: list[torch.dtype] = []
        self.modes: list[str | None] = []
        self._eval_calls = 0

    def train(self, mode: bool = True) -> ToyObjective:
        super().train(mode)
        self._eval_calls = 0
        return self

    def _mode(self, step: int) -> str | None:
        if self.schedule is None:
            return None
        if self.training:
            return self.schedule.mode_at(step)
        self._eval_calls += 1
        return self.schedule.mode_at(self._eval_calls - 1)

    def forward(self, batch, step):
        if self.crash_at is not None and step == self.crash_at:
            raise KeyboardInterrupt("simulated preemption")
        mode = self._mode(step)
        self.modes.append(mode)
        model = self.model
        h = model.features(batch.x, mode)
        self.dtypes.append(h.dtype)
        pred_b = model.head_b(h).squeeze(-1).float()
        if self.temperature is not None:
            pred_b = pred_b * self.temperature.log_scale.exp()
        target_a = batch.ya
        if self.teacher is not None:
            with torch.no_grad():
                target_a = target_a + 0.1 * self.teacher(batch.x)
        a = (model.head_a(h).squeeze(-1).float() - target_a).pow(2).mean()
        b = (pred_b - batch.yb).pow(2).mean()
        if self.nan_at is not None and step == self.nan_at:
            a = a * float("nan")
        out = ObjectiveOutput(losses={"a": a, "b": b}, metrics={"pred_mean": pred_b.mean().item()})
        return out.weighted(self.weights) if self.weights is not None else out


class ToyLoader:
    """Deterministic, shuffled per epoch, sharded by rank, resumable mid-epoch."""

    def __init__(self, n: int = 24, batch_size: int = 4, rank: int = 0, world_size: int = 1, seed: int = 7):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, DIM, generator=g)
        self.ya = self.x.sum(1)
        self.yb = 2 * self.x[:, 0] - self.x[:, 1]
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.epoch, self.pos = 0, 0

    def __len__(self) -> int:
        return len(self.x) // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.pos = epoch, 0

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        global_batch = self.batch_size * self.world_size
        while self.pos < len(self):
            start = self.pos * global_batch + self.rank * self.batch_size
            idx = order[start : start + self.batch_size]
            self.pos += 1
            yield ToyBatch(self.x[idx], self.ya[idx], self.yb[idx])

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]


def make_cfg(**overrides) -> TrainConfig:
    base = dict(
        max_steps=8, lr=1e-2, warmup_steps=2, log_every=2, val_every=4, val_batches=2, ckpt_every=3,
        keep_checkpoints=2, clip_norm=1.0, progress=False,
    )  # fmt: skip
    base.update(overrides)
    return TrainConfig(**base)


def make_trainer(out, cfg, *, model_seed=0, loader=None, schedule=True, **objective_options):
    """A toy trainer; ``objective_options`` go to :class:`ToyObjective` (with a new model and temperature)."""
    torch.manual_seed(model_seed)
    model = ToyModel(dropout=0.1)
    objective = ToyObjective(
        model,
        Temperature(),
        schedule=ModeSchedule(ModeScheduleConfig(kind="iterative", every=2)) if schedule else None,
        **objective_options,
    )
    return Trainer(
        objective,
        loader or ToyLoader(),
        cfg,
        out,
        val_loader=ToyLoader(n=8, seed=99),
        config_dict={"train": {"max_steps": cfg.max_steps}},
    )
