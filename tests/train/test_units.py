"""Trainer parts: LR and mode schedules, optimiser groups, loss weighting, atomic checkpoints, logs."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from vlp.config import ConfigError, ModeScheduleConfig, TrainConfig
from vlp.objectives.base import ObjectiveOutput, weighted_total
from vlp.train import state as ckpt
from vlp.train.metrics_log import MetricsLogger, read_metrics
from vlp.train.optim import build_optimizer, build_scheduler, extra_parameters, is_no_decay, param_groups
from vlp.train.rng import rng_state, set_rng_state
from vlp.train.schedules import ModeSchedule, warmup_linear_decay

# --------------------------------------------------------------------------- a tiny model


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.position_embeddings = nn.Parameter(torch.randn(4, 3))
        self.LayerNorm = nn.LayerNorm(3)
        self.fuse = nn.Linear(3, 3)
        self.head_a = nn.Linear(3, 1)
        self.head_b = nn.Linear(3, 1)
        self.frozen = nn.Linear(3, 3).requires_grad_(False)

    def parameter_groups(self):
        return {
            "encoders": [self.embed.weight, self.position_embeddings, *self.LayerNorm.parameters()],
            "fusion": [*self.fuse.parameters(), *self.frozen.parameters()],
            "heads": [*self.head_a.parameters(), *self.head_b.parameters()],
        }


def tiny_objective(model, batch, step, mode=None):
    h = model.fuse(model.LayerNorm(model.embed(batch) + model.position_embeddings[: batch.shape[1]]))
    a = model.head_a(h).pow(2).mean()
    b = (model.head_b(h) - 1).pow(2).mean()
    return ObjectiveOutput(losses={"a": a, "b": b})


# --------------------------------------------------------------------------- LR schedule


def test_warmup_then_linear_decay_values():
    factors = [warmup_linear_decay(s, warmup_steps=4, max_steps=10) for s in range(11)]
    expected = [0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0]
    assert factors == pytest.approx(expected)
    assert warmup_linear_decay(0, 0, 5) == 1.0 and warmup_linear_decay(4, 0, 5) == pytest.approx(0.2)


def test_scheduler_scales_each_group_lr_by_its_multiplier():
    model = Tiny()
    cfg = TrainConfig(lr=1e-2, lr_mult_encoders=0.1, lr_mult_heads=2.0, warmup_steps=2, max_steps=6)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    seen = []
    for _ in range(6):
        seen.append({g["name"]: g["lr"] for g in optimizer.param_groups})
        optimizer.step()
        scheduler.step()
    factors = [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    for lrs, factor in zip(seen, factors, strict=True):
        assert lrs["encoders/decay"] == pytest.approx(1e-3 * factor)
        assert lrs["fusion/no_decay"] == pytest.approx(1e-2 * factor)
        assert lrs["heads/decay"] == pytest.approx(2e-2 * factor)


# --------------------------------------------------------------------------- mode schedule


def modes(kind="iterative", every=1, ratio=0.0, n=12):
    return ModeSchedule(ModeScheduleConfig(kind=kind, every=every, single_ratio=ratio)).modes(0, n)


def test_mode_schedule_sequences():
    assert modes("single", n=4) == ["single"] * 4
    assert modes("two", n=4) == ["two"] * 4
    assert modes(every=1, n=4) == ["single", "two", "single", "two"]
    assert modes(every=3, n=8) == ["single"] * 3 + ["two"] * 3 + ["single"] * 2
    quarter = modes(ratio=0.25, n=12)
    assert [i for i, m in enumerate(quarter) if m == "single"] == [0, 4, 8]
    assert modes(ratio=1.0, n=5) == ["single"] * 5


@pytest.mark.parametrize("ratio", [0.1, 1 / 3, 0.5, 0.7])
def test_mode_schedule_ratio_is_exact_and_even(ratio):
    seq = modes(ratio=ratio, n=1000)
    singles = [i for i, m in enumerate(seq) if m == "single"]
    for n in (10, 37, 999, 1000):  # every prefix holds ceil(n * r) single steps: evenly spread, no drift
        assert seq[:n].count("single") == int(np.ceil(n * ratio - 1e-9))
    gaps = set(np.diff(singles).tolist())
    assert max(gaps) - min(gaps) <= 1
    schedule = ModeSchedule(ModeScheduleConfig(single_ratio=ratio))
    assert schedule.mode_at(123_456) == ModeSchedule(ModeScheduleConfig(single_ratio=ratio)).mode_at(123_456)


def test_mode_schedule_rejects_bad_config():
    with pytest.raises(ConfigError, match="mode_schedule.kind"):
        ModeSchedule(ModeScheduleConfig(kind="both"))
    with pytest.raises(ConfigError, match="mode_schedule.every"):
        ModeSchedule(ModeScheduleConfig(every=0))
    with pytest.raises(ConfigError, match="single_ratio"):
        ModeSchedule(ModeScheduleConfig(single_ratio=1.5))


# --------------------------------------------------------------------------- optimiser groups


class Step(nn.Module):
    """A trainer step module: the model, a learnable scalar and a frozen teacher beside it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.temp = nn.ParameterDict({"t": nn.Parameter(torch.tensor(0.07))})
        self.teacher = nn.Linear(3, 3).requires_grad_(False)


def test_param_groups_lrs_and_no_decay_policy():
    model = Tiny()
    step = Step(model)
    temperature = step.temp
    assert extra_parameters(step) == {"temp.t": temperature["t"]} and extra_parameters(model) == {}
    cfg = TrainConfig(lr=1e-3, lr_mult_encoders=0.5, lr_mult_fusion=1.0, lr_mult_heads=3.0, weight_decay=0.1)
    # the same groups from the step module, and from the model with its extra parameters named
    from_step = param_groups(step, cfg)
    from_model = param_groups(model, cfg, {"temp.t": temperature["t"]})
    assert [[id(p) for p in g["params"]] for g in from_step] == [
        [id(p) for p in g["params"]] for g in from_model
    ]
    groups = {g["name"]: g for g in from_step}
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert ids["encoders/decay"] == {id(model.embed.weight)}  # word embeddings are decayed
    assert ids["encoders/no_decay"] == {
        id(p) for p in (model.position_embeddings, *model.LayerNorm.parameters())
    }
    assert ids["fusion/decay"] == {id(model.fuse.weight)}  # frozen params are skipped
    assert ids["fusion/no_decay"] == {id(model.fuse.bias)}
    assert ids["heads/decay"] == {id(model.head_a.weight), id(model.head_b.weight)}
    assert ids["heads/no_decay"] == {id(model.head_a.bias), id(model.head_b.bias), id(temperature["t"])}
    assert groups["encoders/decay"]["lr"] == pytest.approx(5e-4)
    assert groups["heads/no_decay"]["lr"] == pytest.approx(3e-3)
    assert groups["fusion/decay"]["weight_decay"] == 0.1 and groups["fusion/no_decay"]["weight_decay"] == 0.0
    assert is_no_decay("encoder.layer.0.output.LayerNorm.weight", torch.zeros(2, 2))


def test_adamw_decays_only_the_decay_groups():
    model = Tiny()
    cfg = TrainConfig(lr=0.1, weight_decay=0.5, warmup_steps=0)
    optimizer = build_optimizer(model, cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # Adam's update is 0; only decoupled weight decay moves weights
    optimizer.step()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, before[name])
        elif is_no_decay(name, p):
            assert torch.equal(p, before[name]), name
        else:
            torch.testing.assert_close(p, before[name] * (1 - 0.1 * 0.5), msg=name)


def test_param_groups_errors_name_the_parameter():
    model = Tiny()
    groups = model.parameter_groups()
    model.parameter_groups = lambda: {**groups, "heads": groups["heads"] + [model.fuse.weight]}
    with pytest.raises(ValueError, match="more than one parameter group"):
        param_groups(model, TrainConfig())
    model.parameter_groups = lambda: {"encoders": groups["encoders"], "fusion": groups["fusion"]}
    with pytest.raises(ValueError, match="head_a.weight"):
        param_groups(model, TrainConfig())
    model.parameter_groups = lambda: {**groups, "decoder": []}
    with pytest.raises(ValueError, match="decoder"):
        param_groups(model, TrainConfig())


# --------------------------------------------------------------------------- loss weights


class TinyStep(nn.Module):
    """A step module weighting ``tiny_objective``'s losses."""

    def __init__(self, model: nn.Module, weights: dict[str, float]) -> None:
        super().__init__()
        self.model = model
        self.weights = weights

    def forward(self, batch, step):
        return tiny_objective(self.model, batch, step).weighted(self.weights)


def grads_with(weights):
    torch.manual_seed(0)
    model = Tiny()
    out = TinyStep(model, weights)(torch.tensor([[1, 2, 3], [0, 4, 1]]), 0)
    out.total.backward()
    return model, out.total, out.losses


def test_loss_weights_really_weight_the_gradients():
    model, total, losses = grads_with({"a": 1.0, "b": 0.0})
    assert total.item() == pytest.approx(losses["a"].item())
    assert model.head_b.weight.grad is None  # weight 0: no gradient effect at all
    single, _, _ = grads_with({"a": 0.0, "b": 1.0})
    double, _, _ = grads_with({"a": 0.0, "b": 2.0})
    torch.testing.assert_close(double.head_b.weight.grad, 2 * single.head_b.weight.grad)
    torch.testing.assert_close(double.fuse.weight.grad, 2 * single.fuse.weight.grad)
    assert single.head_a.weight.grad is None


def test_weighted_total_errors_and_zero_weight_nan():
    a, b = torch.tensor(2.0), torch.tensor(float("nan"))
    assert weighted_total({"a": a, "b": b}, {"a": 3.0, "b": 0.0}).item() == 6.0  # disabled NaN is ignored
    with pytest.raises(ValueError, match=r"\['b'\] with no weight"):
        weighted_total({"a": a, "b": b}, {"a": 1.0})
    with pytest.raises(ValueError, match="weight 0"):
        weighted_total({"a": a}, {"a": 0.0})
    with pytest.raises(ValueError, match="reserved"):
        weighted_total({"total": a}, {"total": 1.0})
    # ObjectiveOutput.weighted is that same sum, in float32, kept on the output
    half = {"a": torch.tensor(2.0, dtype=torch.bfloat16), "b": torch.tensor(3.0)}
    out = ObjectiveOutput(losses=dict(half))
    assert out.total is None and out.weighted({"a": 0.5, "b": 2.0}) is out
    assert out.total.dtype == torch.float32 and out.total.item() == 7.0
    assert torch.equal(out.total, weighted_total(half, {"a": 0.5, "b": 2.0}))


# --------------------------------------------------------------------------- checkpoints


def save(out, step, model, keep=0, **extra):
    return ckpt.save_checkpoint(
        out,
        step,
        model_state=model.state_dict(),
        trainer_state={"step": step},
        rank_state={"rng": rng_state(), "loader": {"pos": step}},
        config_dict={"train": {"lr": 0.1}},
        keep=keep,
        **extra,
    )


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(6, 3)
        self.decoder = nn.Linear(3, 6)
        self.decoder.weight = self.embed.weight


def test_checkpoint_round_trip_with_tied_weights_and_rng(tmp_path):
    model = Tied()
    path = save(tmp_path, 3, model)
    expected = (random.random(), np.random.rand(), torch.rand(2))  # the draws right after the save
    assert path.name == "step-00000003" and ckpt.find_latest(tmp_path) == path
    assert json.loads((path / "config.json").read_text()) == {"train": {"lr": 0.1}}
    other = Tied()
    ckpt.load_model_weights(path, other)
    assert torch.equal(other.embed.weight, model.embed.weight)
    assert other.decoder.weight is other.embed.weight  # still tied after loading
    assert ckpt.read_trainer_state(path) == {"step": 3}
    state = ckpt.read_rank_state(path, 0, 1)
    assert state["loader"] == {"pos": 3}
    set_rng_state(state["rng"])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(2), expected[2])
    with pytest.raises(ckpt.CheckpointError, match="1 process.* this run has 2"):
        ckpt.read_rank_state(path, 0, 2)


def test_keeps_the_last_k_checkpoints(tmp_path):
    model = Tied()
    for step in (1, 2, 3, 4):
        save(tmp_path, step, model, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]
    assert ckpt.find_latest(tmp_path).name == "step-00000004"


def test_crash_mid_write_leaves_latest_loadable(tmp_path, monkeypatch):
    model = Tied()
    good = save(tmp_path, 1, model)
    good_weights = model.embed.weight.detach().clone()
    with torch.no_grad():
        model.embed.weight.add_(1.0)

    real_write = ckpt.write_torch

    def crash_on_trainer_state(path, obj):
        if path.name == ckpt.TRAINER_FILE:
            raise OSError("disk full (simulated)")
        real_write(path, obj)

    monkeypatch.setattr(ckpt, "write_torch", crash_on_trainer_state)
    with pytest.raises(OSError, match="simulated"):
        save(tmp_path, 2, model)
    assert (tmp_path / "checkpoints" / ".tmp-step-00000002" / ckpt.MODEL_FILE).is_file()  # half written
    assert ckpt.find_latest(tmp_path) == good
    restored = Tied()
    ckpt.load_model_weights(ckpt.find_latest(tmp_path), restored)
    assert torch.equal(restored.embed.weight, good_weights)

    # A crash after the directory is in place but before the marker moves: the marker still decides.
    monkeypatch.setattr(ckpt, "write_torch", real_write)
    monkeypatch.setattr(ckpt, "replace_text", lambda *a, **k: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError, match="killed"):
        save(tmp_path, 2, model)
    assert ckpt.find_latest(tmp_path) == good
    monkeypatch.undo()

    # The next save cleans the leftovers; a marker naming a vanished directory falls back to the newest.
    latest = save(tmp_path, 3, model)
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert ckpt.find_latest(tmp_path) == latest
    (tmp_path / "checkpoints" / "latest").write_text("step-00000099\n")
    assert ckpt.find_latest(tmp_path) == latest
    assert ckpt.find_latest(tmp_path / "nothing-here") is None


# --------------------------------------------------------------------------- logs


def test_metrics_logger_jsonl_tensorboard_and_resume_truncation(tmp_path):
    logger = MetricsLogger(tmp_path)
    for step in (1, 2, 3):
        logger.log(
            step, "train", {"a": float(step), "total": 2.0 * step}, {"acc": 0.5}, lr=0.1, step_time=0.2
        )
    logger.log(2, "val", {"total": float("nan")})
    logger.close()
    events = read_metrics(tmp_path)
    assert [(e["step"], e["split"]) for e in events] == [(1, "train"), (2, "train"), (3, "train"), (2, "val")]
    first = events[0]
    assert first["losses"] == {"a": 1.0, "total": 2.0} and first["metrics"] == {"acc": 0.5}
    assert first["lr"] == 0.1 and first["step_time"] == 0.2 and "samples_per_s" in first
    assert events[-1]["losses"]["total"] == "nan"  # still valid JSON
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))

    resumed = MetricsLogger(tmp_path, tensorboard=False, resume_step=2)
    resumed.log(3, "train", {"a": 30.0})
    resumed.close()
    assert [(e["step"], e["losses"].get("a")) for e in read_metrics(tmp_path, "train")] == [
        (1, 1.0),
        (2, 2.0),
        (3, 30.0),
    ]
    assert len(read_metrics(tmp_path, "val")) == 1

    disabled = MetricsLogger(tmp_path / "rank1", enabled=False)
    disabled.log(1, "train", {"a": 1.0})
    assert not (tmp_path / "rank1").exists()


# --------------------------------------------------------------------------- process group teardown


def test_cleanup_collects_what_references_the_group_before_destroying_it(tmp_path):
    """Cyclic garbage that holds a process group's work (finished FSDP / DDP runs) is freed while the group
    is alive; left to interpreter shutdown it aborted gloo ranks ("terminate called ...")."""
    import gc
    import weakref

    import torch.distributed as dist

    from vlp.train import cleanup

    class Holder:
        pass

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    collected_while_alive = []
    gc.disable()
    try:
        holder = Holder()
        holder.cycle = holder
        weakref.finalize(holder, lambda: collected_while_alive.append(dist.is_initialized()))
        del holder
        cleanup()
    finally:
        gc.enable()
        if dist.is_initialized():
            dist.destroy_process_group()
    assert collected_while_alive == [True] and not dist.is_initialized()
