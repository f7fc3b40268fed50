"""The trainer end to end on a toy model, a toy step module (two named losses) and a toy resumable loader.

Also run as a script by torchrun (see ``test_ddp_and_fsdp_match_one_process``): ``__main__`` below trains
the same toy under 2 processes with DDP and with FSDP.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from toy_trainer import Temperature, ToyLoader, ToyModel, ToyObjective, ToyTeacher, make_cfg, make_trainer
from two_processes import run_two_processes

from vlp.config import ConfigError, ModeScheduleConfig, TrainConfig
from vlp.train import ModeSchedule, NonFiniteLossError, Trainer, find_latest
from vlp.train.metrics_log import read_metrics
from vlp.train.state import list_checkpoints, load_tensors, read_meta


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


@pytest.mark.parametrize(("native", "expected"), [("1", "bf16"), ("0", "fp32")])
def test_auto_precision_is_bf16_where_native_and_fp32_elsewhere(tmp_path, monkeypatch, native, expected):
    monkeypatch.setenv("VLP_NATIVE_BF16", native)
    trainer = make_trainer(tmp_path, make_cfg(max_steps=2, precision="auto", val_every=0))
    trainer.fit()
    assert trainer.precision == expected
    dtype = torch.bfloat16 if expected == "bf16" else torch.float32
    assert trainer.step_module.dtypes and set(trainer.step_module.dtypes) == {dtype}


def test_a_resume_where_auto_means_another_precision_warns_how_to_keep_it(tmp_path, monkeypatch, caplog):
    cfg = make_cfg(max_steps=2, ckpt_every=2, precision="auto", val_every=0)
    make_trainer(tmp_path, cfg).fit()
    monkeypatch.setenv("VLP_NATIVE_BF16", "1")
    resumed = make_trainer(tmp_path, replace(cfg, max_steps=3))
    with caplog.at_level("WARNING", logger="vlp.train.loop"):
        resumed.fit(resume=True)
    assert "auto means bf16 on this machine, but the checkpoint trained in fp32" in caplog.text
    assert "VLP_NATIVE_BF16=0 keeps fp32" in caplog.text
    assert resumed.step_module.dtypes[-1] == torch.bfloat16


def test_a_bad_native_bf16_override_is_a_config_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VLP_NATIVE_BF16", "yes")
    with pytest.raises(ConfigError, match="train.precision=auto: VLP_NATIVE_BF16='yes': expected 1"):
        make_trainer(tmp_path, make_cfg(max_steps=2, precision="auto", val_every=0))


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


def test_ddp_and_fsdp_match_one_process(tmp_path):
    """2 CPU processes (gloo, torchrun) = 1 process at the same global batch: params within atol 1e-5.

    Covers DDP (with grad accumulation under no_sync, and a parameter unused on single-stream steps) and
    FSDP (including a scalar extra parameter FSDP cannot shard, a frozen teacher left out of the
    checkpoints, and stop-and-resume).
    """
    done = run_two_processes(__file__, tmp_path, timeout=120)
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
