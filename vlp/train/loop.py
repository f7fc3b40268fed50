"""The training loop: one process, DDP or FSDP under torchrun; bf16 autocast, accumulation, clipping,
periodic validation, atomic checkpoints and exact resumption.

The trainer drives a *step module*: an ``nn.Module`` whose ``forward(batch, step)`` returns an
:class:`~vlp.objectives.base.ObjectiveOutput` with its weighted ``total`` set, and whose ``.model`` is the
model (e.g. :class:`vlp.objectives.PretrainingObjectives`). DDP/FSDP wrap the step module, so their hooks
fire around the whole objective, whichever model methods it calls. What the step module holds besides
the model: trainable parameters (e.g. a learnable ITC temperature) are optimised in the "heads" component
and checkpointed in ``extra.safetensors`` under their names in the step module; frozen parameters and
buffers (e.g. a distillation teacher) are neither, so whoever builds the step module persists them.

Step numbers: ``step`` passed to the step module is the 0-based index of the optimizer step being
computed; logs, checkpoints and error messages count completed optimizer steps (the first update is
"step 1").

Exact resumption: a checkpoint after step N holds the weights, optimizer, LR scheduler (and grad
scaler), every process's RNG states and loader position, and the partly filled logging window, so a run
stopped after N steps and resumed produces the same losses, logs and weights as one that never stopped.
Validation runs under its own fixed seed and restores the training RNG afterwards, so it neither
perturbs training nor varies between evaluations.

Safety: ``fit`` holds the run directory's lock (:func:`vlp.train.state.run_lock`) throughout; a step
whose loss or gradient norm is not finite stops the run before the weights change; resuming compares the
checkpoint's config with the new one (changeable keys are applied and logged, any other change is
refused) and falls back to the newest intact checkpoint when the latest one is broken.

Why one module of about 500 lines: it is the :class:`Trainer` alone, one object whose methods share its
state (step, loader position, optimizer, log window); what stands apart from that state already lives
beside it (``state``, ``rng``, ``resume``, ``fsdp``, ``step_stats``, ``validation``, ``precision``,
``metrics_log``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from vlp.config import ConfigError, TrainConfig, validate
from vlp.files import replace_dir
from vlp.train import fsdp
from vlp.train import state as ckpt
from vlp.train.distributed import (
    DistInfo,
    all_reduce_max,
    all_reduce_mean,
    barrier,
    init_distributed,
)
from vlp.train.metrics_log import MetricsLogger, Progress
from vlp.train.optim import build_optimizer, build_scheduler, extra_parameters
from vlp.train.precision import NATIVE_BF16_ENV, autocast, resolve_precision
from vlp.train.resume import apply_learning_rates, check_resume_config, load_model_state
from vlp.train.rng import isolated_rng, rng_state, seed_all, set_rng_state
from vlp.train.schedules import warmup_linear_decay
from vlp.train.step_stats import LogWindow, add_metrics, detached_losses, host_values, split_reduced
from vlp.train.validation import validate_step_module

if TYPE_CHECKING:
    from vlp.objectives.base import ObjectiveOutput

log = logging.getLogger(__name__)

_VAL_SEED_OFFSET = 1_000_003
BEST_DIR = "best"  # OUT/best: the exported model of the best evaluation (fine-tuning)


class NonFiniteLossError(RuntimeError):
    """A loss or the gradient norm became NaN or infinite; the run stopped before the weights were updated."""


class Evaluator(Protocol):
    """Task evaluation during training: metrics of the model (every rank calls it and gets the same);
    ``metric`` names the one (higher is better) that selects the best model."""

    metric: str

    def __call__(self, model: nn.Module) -> dict[str, float]: ...


class Loader(Protocol):
    """What the trainer needs of a train (or val) loader."""

    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class Trainer:
    """Pre-training / fine-tuning loop around a step module; see the module docstring.

    ``step_module(batch, step)`` must return an ``ObjectiveOutput`` with ``total`` set (its
    ``weighted(weights)``); ``step_module.model`` is what ``model.safetensors`` holds and what
    ``parameter_groups()`` splits into the optimizer's components.
    """

    def __init__(
        self,
        step_module: nn.Module,
        train_loader: Loader,
        cfg: TrainConfig,
        out_dir: str | Path,
        *,
        val_loader: Loader | None = None,
        config_dict: dict | None = None,
        evaluator: Evaluator | None = None,
        export: Callable[[Path], Any] | None = None,
    ) -> None:
        validate(cfg, "train.")
        model = getattr(step_module, "model", None)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"the trainer's step module ({type(step_module).__name__}) must hold the model as `.model`"
            )
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.config_dict = config_dict
        self.dist: DistInfo = init_distributed()
        device = self.dist.device
        try:
            self.precision = resolve_precision(cfg.precision, device)  # "auto" -> bf16 | fp32 here
        except ValueError as err:
            raise ConfigError(f"train.precision={cfg.precision}: {err}") from None
        if cfg.precision == "auto":
            log.info("train.precision auto: %s on %s", self.precision, device)
        if self.precision == "fp16" and device.type != "cuda":
            raise ConfigError("train.precision: fp16 needs a CUDA device; use bf16 on the CPU")
        self.device = device
        self.step_module = step_module.to(device)
        self.model: nn.Module = model
        self.fsdp = bool(cfg.fsdp and self.dist.distributed)
        self._replicated: list[nn.Parameter] = []
        if cfg.fsdp and not self.dist.distributed:
            log.warning("train.fsdp is set but this is a single process: training without sharding")
        self.wrapped: nn.Module = self.step_module
        if self.fsdp:
            self._replicated = fsdp.shard(self.step_module, self.model, device, self.dist.world_size)
        elif self.dist.distributed:
            self.wrapped = DistributedDataParallel(
                self.step_module,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True,  # e.g. SemVLP cross-attention is unused in single-stream steps
                gradient_as_bucket_view=True,
            )
        # After sharding: FSDP replaces the parameters it shards (their names stay).
        self.extra_params: dict[str, nn.Parameter] = extra_parameters(self.step_module)
        self.optimizer = build_optimizer(self.step_module, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self._params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.step = 0
        self.epoch = 0
        self._iter: Iterator[Any] | None = None
        self._window = LogWindow()
        self.last_metrics: dict[str, float] = {}
        if evaluator is not None and self.fsdp:
            raise ConfigError(
                "train.fsdp: task evaluation during training reads the whole model; fine-tune with DDP "
                "(train.fsdp=false)"
            )
        self.evaluator = evaluator
        self.export = export
        self.best: dict[str, Any] | None = None  # {"step", "metric", "value"} of the best evaluation

    # ------------------------------------------------------------------ set-up

    def _clip_gradients(self, max_norm: float) -> Tensor:
        """Clip the global gradient norm to ``max_norm`` (``inf``: only measure it); the norm before."""
        if self.fsdp:
            return fsdp.clip_sharded_gradients(self._params, max_norm, self.device)
        return torch.nn.utils.clip_grad_norm_(self._params, max_norm).detach()

    # ------------------------------------------------------------------ data

    def _next_batch(self) -> Any:
        for _ in range(2):
            if self._iter is None:
                self._iter = iter(self.train_loader)
            try:
                return next(self._iter)
            except StopIteration:
                self.epoch += 1
                self.train_loader.set_epoch(self.epoch)
                self._iter = None
        raise ValueError(f"the training loader yields no batches (epoch {self.epoch} is empty)")

    # ------------------------------------------------------------------ checkpoints

    def _model_and_extra_state(self) -> tuple[dict[str, Tensor], dict[str, Tensor], dict]:
        """The model's state, the extra trainable parameters by name, the optimizer's state."""
        if self.fsdp:
            return fsdp.full_states(self.step_module, self.optimizer, self.extra_params)
        extra_state = {name: p.detach() for name, p in self.extra_params.items()}
        return self.model.state_dict(), extra_state, self.optimizer.state_dict()

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current step (collective: every rank calls it)."""
        model_state, extra_state, optim_state = self._model_and_extra_state()
        trainer_state = {
            "step": self.step,
            "epoch": self.epoch,
            "optimizer": optim_state,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "last_metrics": dict(self.last_metrics),
            "best": self.best,
            "precision": self.precision,  # what train.precision meant here (auto: bf16 or fp32)
        }
        rank_state = {
            "rng": rng_state(),
            "loader": self.train_loader.state_dict(),
            "window": self._window.state_dict(),
        }
        main = self.dist.is_main
        return ckpt.save_checkpoint(
            self.out_dir,
            self.step,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            model_state=model_state if main else None,
            extra_state=extra_state if main else None,
            trainer_state=trainer_state if main else None,
            rank_state=rank_state,
            config_dict=self.config_dict if main else None,
            keep=self.cfg.keep_checkpoints,
        )

    def _resume(self) -> Path:
        """Restore the newest checkpoint every process can read; a broken one is reported by file and the
        next older one is tried. A checkpoint that does not match this run (config, world size) stops."""
        tried = []
        for path in ckpt.candidates(self.out_dir):
            try:
                states, error = self._read_checkpoint(path), None
            except ckpt.CorruptCheckpointError as err:
                states, error = None, err
            if all_reduce_max(1.0 if error else 0.0) == 0:
                *states, applied = states
                self._restore(path, *states)
                for change in applied:
                    log.warning("resume: %s (applied)", change)
                if tried:
                    log.warning("resumed from %s, the newest intact checkpoint", path)
                return path
            tried.append(path.name)
            log.warning("%s; trying the previous checkpoint", error or f"{path} is broken on another process")
        raise ckpt.CheckpointError(
            f"no intact checkpoint in {ckpt.checkpoint_root(self.out_dir)} (tried {', '.join(tried)}); "
            "start a new run in another directory"
        )

    def _read_checkpoint(self, path: Path) -> tuple[dict, dict, dict[str, Tensor], dict[str, Tensor], list]:
        """Every file this process needs from ``path``, after checking the saved config against this run's;
        last the config changes to apply (see :func:`vlp.train.resume.check_resume_config`)."""
        ckpt.read_meta(path)
        applied = check_resume_config(path, self.config_dict)
        trainer_state = ckpt.read_trainer_state(path)
        rank_state = ckpt.read_rank_state(path, self.dist.rank, self.dist.world_size)
        model_state = ckpt.load_tensors(path / ckpt.MODEL_FILE)
        extra_state = ckpt.read_extra_state(path)
        if extra_state.keys() != self.extra_params.keys():
            raise ckpt.CheckpointError(
                f"{path / ckpt.EXTRA_FILE} holds the extra parameters {sorted(extra_state)}, but this run's "
                f"step module has {sorted(self.extra_params)}"
            )
        return trainer_state, rank_state, model_state, extra_state, applied

    def _restore(
        self, path: Path, trainer_state: dict, rank_state: dict, model_state: dict, extra_state: dict
    ) -> None:
        fresh_lrs = [group["initial_lr"] for group in self.optimizer.param_groups]  # from this run's config
        if self.fsdp:
            fsdp.load_full_states(
                self.step_module, self.optimizer, path, model_state, extra_state, trainer_state["optimizer"]
            )
        else:
            load_model_state(self.model, path, model_state)
            with torch.no_grad():
                for name, param in self.extra_params.items():
                    param.copy_(extra_state[name])
            self.optimizer.load_state_dict(trainer_state["optimizer"])
        self.scheduler.load_state_dict(trainer_state["scheduler"])
        apply_learning_rates(self.optimizer, self.scheduler, fresh_lrs)
        if self.scaler is not None and trainer_state.get("scaler"):
            self.scaler.load_state_dict(trainer_state["scaler"])
        self.step = int(trainer_state["step"])
        self.epoch = int(trainer_state["epoch"])
        self.last_metrics = dict(trainer_state.get("last_metrics") or {})
        self.best = trainer_state.get("best")
        saved_precision = trainer_state.get("precision", self.precision)
        if saved_precision != self.precision:
            keep = f"{NATIVE_BF16_ENV}={int(saved_precision == 'bf16')}"
            log.warning(
                "resume: train.precision %s means %s on this machine, but the checkpoint trained in %s: the "
                "steps from here run in %s (%s keeps %s)",
                self.cfg.precision, self.precision, saved_precision, self.precision, keep, saved_precision,
            )  # fmt: skip
        self.train_loader.set_epoch(self.epoch)
        self.train_loader.load_state_dict(rank_state["loader"])
        self._iter = None
        self._window.load_state_dict(rank_state["window"])
        set_rng_state(rank_state["rng"])
        log.info("resumed from %s at step %d (epoch %d)", path, self.step, self.epoch)

    # ------------------------------------------------------------------ one step

    def _train_step(self) -> tuple[dict[str, float], dict[str, float], int, Tensor | None]:
        cfg = self.cfg
        detached: list[dict[str, Tensor]] = []
        metrics: dict[str, list[float]] = {}
        samples = 0
        for micro in range(cfg.grad_accum):
            batch = self._next_batch().to(self.device)
            samples += batch.size
            last = micro == cfg.grad_accum - 1
            no_sync = isinstance(self.wrapped, DistributedDataParallel) and not last
            with self.wrapped.no_sync() if no_sync else contextlib.nullcontext():
                with autocast(self.device, self.precision):
                    out = self._checked(self.wrapped(batch, self.step))
                scaled = out.total / cfg.grad_accum
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            detached.append(detached_losses(out))
            add_metrics(metrics, out)

        # One host sync per step: every loss value, which also tells whether they are finite.
        per_name = host_values(detached)
        step_losses = {n: sum(v) / len(v) for n, v in per_name.items()}
        bad_here = not all(math.isfinite(v) for v in per_name["total"])
        if all_reduce_max(1.0 if bad_here else 0.0) > 0:
            self._fail_non_finite(step_losses, bad_here)

        if self.fsdp:
            fsdp.sync_replicated_grads(self._replicated, self.dist.world_size)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip_gradients(cfg.clip_norm if cfg.clip_norm > 0 else math.inf)
        # fp16: the grad scaler skips steps with inf/NaN gradients itself (and lowers its scale)
        if self.scaler is None and not math.isfinite(grad_norm.item()):
            self._fail_non_finite(step_losses, True, what=f"gradient norm ({grad_norm.item()})")
        if cfg.clip_norm <= 0:
            grad_norm = None  # measured for the check above, not logged
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        step_metrics_mean = {n: sum(v) / len(v) for n, v in metrics.items()}
        return step_losses, step_metrics_mean, samples, grad_norm

    def _checked(self, out: ObjectiveOutput) -> ObjectiveOutput:
        """``out``, if it carries the weighted total to back-propagate."""
        if getattr(out, "total", None) is None:
            raise TypeError(
                f"{type(self.step_module).__name__}.forward returned {type(out).__name__} without a weighted "
                "total: return an ObjectiveOutput with `total` set, e.g. `out.weighted(weights)`"
            )
        return out

    def _fail_non_finite(self, losses: dict[str, float], here: bool, what: str = "loss") -> None:
        shown = ", ".join(f"{n}={v:.6g}" for n, v in losses.items())
        latest = ckpt.find_latest(self.out_dir)
        where = "" if here else " on another process (this one's losses were finite)"
        raise NonFiniteLossError(
            f"non-finite {what} at step {self.step + 1}{where}: losses {shown}; stopped before updating the "
            f"weights. The last good checkpoint is kept: {latest if latest else 'none was written yet'}"
        )

    # ------------------------------------------------------------------ logging and validation

    def _log_train(self, logger: MetricsLogger) -> None:
        window = self._window
        if window.steps == 0:
            return
        elapsed = time.perf_counter() - window.started
        local = window.means()
        if self.cfg.clip_norm > 0:
            grad_norm = window.grad_norm.item() if isinstance(window.grad_norm, Tensor) else window.grad_norm
            local["metric/grad_norm"] = grad_norm / window.steps
        local["samples"] = float(window.samples)
        local["elapsed"] = elapsed
        reduced = all_reduce_mean(local)
        losses, metrics = split_reduced(reduced)
        total_samples = reduced["samples"] * self.dist.world_size
        elapsed = max(reduced["elapsed"], 1e-9)
        lr = self.cfg.lr * warmup_linear_decay(self.step - 1, self.cfg.warmup_steps, self.cfg.max_steps)
        logger.log(
            self.step,
            "train",
            losses,
            metrics,
            lr=lr,
            samples_per_s=total_samples / elapsed,
            step_time=elapsed / window.steps,
            epoch=self.epoch,
        )
        self.last_metrics.update({f"train/{k}": v for k, v in {**losses, **metrics}.items()})
        window.reset()

    def validate(self) -> dict[str, float]:
        """Mean losses and metrics over ``val_batches`` batches of the val loader (all of it if <= 0).

        Eval mode, no gradients, a fixed seed (the training RNG is restored afterwards); each call reads
        the loader from its start. Each batch is ``step_module(batch, self.step)``; a step module with a
        mode schedule picks the modes of eval-mode calls itself (SemVLP: batch ``i`` in the mode of step
        ``i``, see :class:`vlp.objectives.PretrainingObjectives`).
        """
        if self.val_loader is None:
            return {}
        return validate_step_module(
            self.step_module,
            self.val_loader,
            batches=self.cfg.val_batches,
            step=self.step,
            seed=self.cfg.seed + _VAL_SEED_OFFSET + self.dist.rank,
            device=self.device,
            precision=self.precision,
            world_size=self.dist.world_size,
            checked=self._checked,
        )

    def _run_evaluation(self, logger: MetricsLogger) -> None:
        """The evaluator's task metrics (every rank computes the same); a new best is exported to
        ``OUT/best`` (replaced atomically) and remembered in the checkpoints, so a resumed run keeps it."""
        assert self.evaluator is not None
        with isolated_rng(self.cfg.seed + _VAL_SEED_OFFSET):
            metrics = self.evaluator(self.model)
        logger.log(self.step, "eval", {}, metrics)
        self.last_metrics.update({f"eval/{k}": v for k, v in metrics.items()})
        name = self.evaluator.metric
        if self.best is None or metrics[name] > self.best["value"]:
            self.best = {"step": self.step, "metric": name, "value": metrics[name]}
            log.info("step %d: best %s so far (%.4f)", self.step, name, metrics[name])
            if self.export is not None and self.dist.is_main:
                replace_dir(self.out_dir / BEST_DIR, self.export)
            barrier()
        self.last_metrics.update({f"best/{name}": self.best["value"], "best/step": float(self.best["step"])})

    def _run_validation(self, logger: MetricsLogger) -> None:
        if self.evaluator is not None:
            self._run_evaluation(logger)
        result = self.validate()
        if not result:
            return
        logger.log(
            self.step,
            "val",
            result["losses"],
            result["metrics"],
            samples_per_s=result["samples_per_s"],
            batches=result["batches"],
        )
        self.last_metrics.update(
            {f"val/{k}": v for k, v in {**result["losses"], **result["metrics"]}.items()}
        )

    # ------------------------------------------------------------------ fit

    @property
    def _validates(self) -> bool:
        return (self.val_loader is not None or self.evaluator is not None) and self.cfg.val_every > 0

    def fit(self, resume: bool = False) -> dict[str, float]:
        """Train to ``cfg.max_steps``; returns the final metrics (``train/<loss>``, ``val/<loss>``, ``step``).

        ``resume``: continue from the latest intact checkpoint in ``out_dir`` (a fresh start if there is
        none). Without it, an ``out_dir`` that already holds checkpoints is an error rather than
        overwritten. The run directory is locked against other processes meanwhile.
        """
        with ckpt.run_lock(self.out_dir, enabled=self.dist.is_main):
            return self._fit(resume)

    def _fit(self, resume: bool) -> dict[str, float]:
        cfg = self.cfg
        latest = ckpt.refuse_existing_run(self.out_dir, resume)
        if latest is not None:
            latest = self._resume()
        else:
            if resume:
                log.info("no checkpoint in %s: starting from scratch", self.out_dir)
            seed_all(cfg.seed + self.dist.rank)
            self.train_loader.set_epoch(self.epoch)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        logger = MetricsLogger(
            self.out_dir, enabled=self.dist.is_main, resume_step=self.step if latest else None
        )
        progress = Progress(
            cfg.max_steps, initial=self.step, enabled=cfg.progress and self.dist.is_main, desc=self.precision
        )
        saved_at = self.step if latest is not None else -1
        validated_at = self.step if latest is not None else -1
        self.step_module.train()
        # Gradients left on the parameters before training (a forward-backward run by the caller, a probe)
        # must not be added to the first update.
        self.step_module.zero_grad(set_to_none=True)
        try:
            while self.step < cfg.max_steps:
                started = time.perf_counter()
                losses, metrics, samples, grad_norm = self._train_step()
                self.step += 1
                self._window.add(losses, metrics, samples, grad_norm)
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress.update(1, losses, samples * self.dist.world_size / elapsed)
                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    self._log_train(logger)
                if self._validates and self.step % cfg.val_every == 0:
                    self._run_validation(logger)
                    validated_at = self.step
                if cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0:
                    self.save_checkpoint()
                    saved_at = self.step
            if self._validates and validated_at != self.step:
                self._run_validation(logger)
            if saved_at != self.step:
                self.save_checkpoint()
        finally:
            progress.close()
            logger.close()
        return {"step": self.step, **self.last_metrics}
