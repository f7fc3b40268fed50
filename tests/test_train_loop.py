"""The trainer end to end on a toy model, a toy step module (two named losses) and a toy resumable loader.

Also run as a script by torchrun (see ``test_ddp_and_fsdp_match_one_process``): ``__main__`` below trains
the same toy under 2 processes with DDP and with FSDP.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from vlp.config import ModeScheduleConfig, TrainConfig
from vlp.objectives.base import ObjectiveOutput
from vlp.train import ModeSchedule, NonFiniteLossError, Trainer, find_latest
from vlp.train.metrics_log import read_metrics
from vlp.train.state import list_checkpoints, load_tensors, read_meta

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


def losses_by_step(out, split="train") -> dict[int, dict[str, float]]:
    return {e["step"]: e["losses"] for e in read_metrics(out, split)}


# --------------------------------------------------------------------------- tests


def test_fit_trains_logs_validates_and_checkpoints(tmp_path):
    trainer = make_trainer(tmp_path, make_cfg(max_steps=12, ckpt_every=5, val_every=6))
    final = trainer.fit()
    train = read_metrics(tmp_path, "train")
    val = read_metrics(tmp_path, "val")
    assert [e["step"] for e in train] == [2, 4, 6, 8, 10, 12]
    assert [e["step"] for e in val] == [6, 12]
    first, last = train[0], train[-1]
    assert set(first["losses"]) == {"a", "b", "total"}
    assert math.isclose(
        first["losses"]["total"], first["losses"]["a"] + 0.5 * first["losses"]["b"], rel_tol=1e-6
    )
    assert last["losses"]["total"] < first["losses"]["total"]  # it learns
    assert {"pred_mean", "grad_norm"} <= set(first["metrics"])
    assert first["samples_per_s"] > 0 and first["step_time"] > 0 and first["epoch"] == 0
    # lr logged = base lr x warm-up/decay factor of the last step in the window (step index 1: 2/2).
    assert first["lr"] == pytest.approx(1e-2)
    assert train[2]["lr"] == pytest.approx(1e-2 * (12 - 5) / (12 - 2))
    assert final["step"] == 12 and final["val/total"] == val[-1]["losses"]["total"]
    assert final["train/total"] == last["losses"]["total"]
    # Checkpoints at 5, 10 and the end (12); keep_checkpoints=2 leaves the last two.
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert kept == ["step-00000010", "step-00000012"]
    assert find_latest(tmp_path).name == "step-00000012"
    assert read_meta(find_latest(tmp_path))["step"] == 12
    saved = load_tensors(find_latest(tmp_path) / "model.safetensors")
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(saved[name], tensor)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    # The step module's mode schedule followed the steps (every=2: single, single, two, two, ...); each
    # validation (2 batches, after steps 6 and 12) ran batch i in the mode of step i.
    single, two = "single", "two"
    val = [single, single]
    expected_modes = [single, single, two, two, single, single] + val + [two, two, single, single, two, two]
    assert trainer.step_module.modes == expected_modes + val
    # Starting again in the same directory without resume is refused.
    with pytest.raises(ValueError, match="already holds checkpoints"):
        make_trainer(tmp_path, make_cfg(max_steps=12)).fit()


def test_stop_and_resume_equals_uninterrupted_run(tmp_path):
    # 4 batches per epoch x grad_accum 2: epochs end mid-run; dropout and the loader's shuffle use RNG;
    # the log window (every 3) is open at the checkpoint (every 4), so its partial sums must be restored.
    cfg = make_cfg(max_steps=9, ckpt_every=4, log_every=3, val_every=4, grad_accum=2)
    full = make_trainer(tmp_path / "full", cfg, loader=ToyLoader(n=16))
    full.fit()

    broken = make_trainer(tmp_path / "resumed", cfg, loader=ToyLoader(n=16), crash_at=6)
    with pytest.raises(KeyboardInterrupt):
        broken.fit()
    assert find_latest(tmp_path / "resumed").name == "step-00000004"
    assert max(losses_by_step(tmp_path / "resumed")) == 6  # logged past the checkpoint before the crash
    # A fresh process: other initial weights, a fresh loader; everything must come from the checkpoint.
    resumed = make_trainer(tmp_path / "resumed", cfg, model_seed=123, loader=ToyLoader(n=16))
    resumed.fit(resume=True)

    for split in ("train", "val"):
        expected = losses_by_step(tmp_path / "full", split)
        assert losses_by_step(tmp_path / "resumed", split) == expected  # exactly equal
    assert sorted(losses_by_step(tmp_path / "full")) == [3, 6, 9]
    for (name, p), q in zip(full.model.named_parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert torch.equal(full.step_module.temperature.log_scale, resumed.step_module.temperature.log_scale)
    assert full.step_module.temperature.log_scale.item() != 0.0  # the extra parameter was trained
    assert (
        full.optimizer.state_dict()["state"][0]["step"] == resumed.optimizer.state_dict()["state"][0]["step"]
    )


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, make_cfg(ckpt_every=2), nan_at=4)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    message = str(err.value)
    assert "step 5" in message and "a=nan" in message and "b=" in message and "step-00000004" in message
    latest = find_latest(tmp_path)
    assert latest.name == "step-00000004"
    assert not (tmp_path / "checkpoints" / "step-00000005").exists()
    weights = load_tensors(latest / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    # The failing step did not touch the weights either.
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    # The run can go on from the good checkpoint (e.g. after lowering the lr).
    again = make_trainer(tmp_path, make_cfg(ckpt_every=2))
    assert again.fit(resume=True)["step"] == 8


def test_loss_without_weight_is_an_error_naming_it(tmp_path):
    trainer = make_trainer(tmp_path, make_cfg(max_steps=1))
    trainer.step_module.weights = {"a": 1.0}  # the step module weights its losses
    with pytest.raises(ValueError, match=r"\['b'\] with no weight"):
        trainer.fit()


def test_a_step_module_without_the_weighted_total_is_an_error(tmp_path):
    trainer = make_trainer(tmp_path, make_cfg(max_steps=1))
    trainer.step_module.weights = None  # returns the losses unweighted
    with pytest.raises(TypeError, match=r"ToyObjective.forward returned ObjectiveOutput without a weighted"):
        trainer.fit()
    with pytest.raises(TypeError, match=r"\.model"):
        Trainer(nn.Linear(2, 2), ToyLoader(), make_cfg(), tmp_path / "other")


def test_extra_parameters_are_trained_and_checkpointed_frozen_state_is_not(tmp_path):
    cfg = make_cfg(max_steps=4, ckpt_every=2, val_every=0, keep_checkpoints=0)
    trainer = make_trainer(tmp_path, cfg, teacher=ToyTeacher())
    temperature = trainer.step_module.temperature.log_scale
    assert trainer.extra_params == {"temperature.log_scale": temperature}
    groups = {g["name"]: {id(p) for p in g["params"]} for g in trainer.optimizer.param_groups}
    assert id(temperature) in groups["heads/no_decay"]
    optimised = set().union(*groups.values())
    assert not any(id(p) in optimised for p in trainer.step_module.teacher.parameters())
    trainer.fit()
    assert torch.equal(trainer.step_module.teacher.weight, ToyTeacher().weight)  # never trained
    for path in list_checkpoints(tmp_path):  # steps 2 and 4
        assert load_tensors(path / "model.safetensors").keys() == trainer.model.state_dict().keys()
        assert load_tensors(path / "extra.safetensors").keys() == {"temperature.log_scale"}
    final = load_tensors(find_latest(tmp_path) / "extra.safetensors")["temperature.log_scale"]
    assert torch.equal(final, temperature.detach()) and final.item() != 0.0
    # Resuming restores the temperature (a fresh one starts at 0) and leaves the teacher as it was built.
    teacher = ToyTeacher()
    with torch.no_grad():
        teacher.weight.add_(1.0)
    again = make_trainer(tmp_path, cfg, model_seed=123, teacher=teacher)
    assert again.fit(resume=True)["step"] == 4
    assert torch.equal(again.step_module.temperature.log_scale, temperature)
    assert torch.equal(again.step_module.teacher.weight, ToyTeacher().weight + 1.0)


def test_bf16_autocast_runs_with_fp32_master_weights(tmp_path):
    trainer = make_trainer(tmp_path, make_cfg(max_steps=3, precision="bf16", val_every=0))
    final = trainer.fit()
    dtypes = trainer.step_module.dtypes
    assert dtypes and all(dtype == torch.bfloat16 for dtype in dtypes)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert math.isfinite(final["train/total"])


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    cfg_small = make_cfg(max_steps=4, grad_accum=2, val_every=0, ckpt_every=0)
    cfg_big = make_cfg(max_steps=4, grad_accum=1, val_every=0, ckpt_every=0)
    small = make_trainer(tmp_path / "small", cfg_small, loader=ToyLoader(batch_size=4))
    big = make_trainer(tmp_path / "big", cfg_big, loader=ToyLoader(batch_size=8))
    for trainer in (small, big):
        trainer.model.drop.p = 0.0
        trainer.fit()
    for p, q in zip(small.model.parameters(), big.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- distributed

DDP_STEPS = 4


def _distributed_cfg(**overrides) -> TrainConfig:
    return make_cfg(max_steps=DDP_STEPS, grad_accum=2, val_every=2, ckpt_every=2, **overrides)


def _run_distributed_toy(
    out: Path, rank: int, world_size: int, fsdp: bool, crash_at: int | None = None, resume: bool = False
) -> Trainer:
    """Global batch 8 per micro-step: ``world_size`` processes x ``8 / world_size`` samples. The step module
    holds a learnable scalar (FSDP cannot shard it) and a frozen teacher matrix (not sharded, not saved)."""
    torch.manual_seed(1 if resume else 0)
    objective = ToyObjective(
        ToyModel(dropout=0.0),
        Temperature(),
        schedule=ModeSchedule(ModeScheduleConfig(kind="iterative", every=1)),  # cross unused half the time
        teacher=ToyTeacher(),
        crash_at=crash_at,
    )
    trainer = Trainer(
        objective,
        ToyLoader(batch_size=8 // world_size, rank=rank, world_size=world_size),
        _distributed_cfg(fsdp=fsdp),
        out,
        val_loader=ToyLoader(n=16, batch_size=8 // world_size, rank=rank, world_size=world_size, seed=99),
    )
    trainer.fit(resume=resume)
    return trainer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_and_fsdp_match_one_process(tmp_path):
    """2 CPU processes (gloo, torchrun) = 1 process at the same global batch: params within atol 1e-5.

    Covers DDP (with grad accumulation under no_sync, and a parameter unused on single-stream steps) and
    FSDP (including a scalar extra parameter FSDP cannot shard, a frozen teacher left out of the
    checkpoints, and stop-and-resume).
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), __file__, str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    single = _run_distributed_toy(tmp_path / "single", rank=0, world_size=1, fsdp=False)
    expected = {
        **single.model.state_dict(),
        **{f"temperature.{k}": v for k, v in single.step_module.temperature.state_dict().items()},
    }
    for kind in ("ddp", "fsdp"):
        latest = find_latest(tmp_path / kind)
        assert latest.name == f"step-{DDP_STEPS:08d}" and read_meta(latest)["world_size"] == 2
        assert (latest / "rank-00001.pt").is_file()
        weights = {**load_tensors(latest / "model.safetensors"), **load_tensors(latest / "extra.safetensors")}
        assert weights.keys() == expected.keys()
        for name, value in expected.items():
            torch.testing.assert_close(weights[name], value, atol=1e-5, rtol=0, msg=f"{kind}: {name}")
        # Logged losses are means over both processes = the single process's global-batch means.
        for split in ("train", "val"):
            reference = losses_by_step(tmp_path / "single", split)
            got = losses_by_step(tmp_path / kind, split)
            assert sorted(got) == sorted(reference) and reference
            for step, losses in reference.items():
                assert got[step] == pytest.approx(losses, abs=1e-5), (kind, split, step)
    # FSDP resumed from its step-2 checkpoint (full state dicts re-sharded) = the uninterrupted FSDP run.
    uninterrupted = load_tensors(find_latest(tmp_path / "fsdp") / "model.safetensors")
    resumed = load_tensors(find_latest(tmp_path / "fsdp_resumed") / "model.safetensors")
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value, atol=1e-6, rtol=0, msg=name)
    assert losses_by_step(tmp_path / "fsdp_resumed") == losses_by_step(tmp_path / "fsdp")
    report = json.loads((tmp_path / "ranks.json").read_text())
    assert report == {"world_size": 2, "ranks": [0, 1]}


def _distributed_main(out: str) -> None:
    import torch.distributed as dist

    from vlp.train import cleanup, init_distributed

    torch.set_num_threads(1)
    info = init_distributed()
    _run_distributed_toy(Path(out) / "ddp", info.rank, info.world_size, fsdp=False)
    _run_distributed_toy(Path(out) / "fsdp", info.rank, info.world_size, fsdp=True)
    # FSDP stop-and-resume: crash in step 4 (after the checkpoint of step 2), resume in fresh modules.
    with contextlib.suppress(KeyboardInterrupt):
        _run_distributed_toy(Path(out) / "fsdp_resumed", info.rank, info.world_size, fsdp=True, crash_at=3)
    _run_distributed_toy(Path(out) / "fsdp_resumed", info.rank, info.world_size, fsdp=True, resume=True)
    ranks = [None] * info.world_size
    dist.all_gather_object(ranks, info.rank)
    if info.is_main:
        (Path(out) / "ranks.json").write_text(json.dumps({"world_size": info.world_size, "ranks": ranks}))
    cleanup()


if __name__ == "__main__":
    _distributed_main(sys.argv[1])
