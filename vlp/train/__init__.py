"""Training: the loop (one process, DDP or FSDP under torchrun), optimiser groups, LR and mode schedules,
atomic checkpoints and logs."""

from vlp.train.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed
from vlp.train.loop import NonFiniteLossError, Trainer
from vlp.train.optim import build_optimizer, build_scheduler, extra_parameters, is_no_decay, param_groups
from vlp.train.schedules import ModeSchedule, warmup_linear_decay
from vlp.train.state import find_latest, load_model_weights, save_checkpoint

__all__ = [
    "DistInfo",
    "ModeSchedule",
    "NonFiniteLossError",
    "Trainer",
    "all_reduce_mean",
    "barrier",
    "build_optimizer",
    "build_scheduler",
    "cleanup",
    "extra_parameters",
    "find_latest",
    "init_distributed",
    "is_no_decay",
    "load_model_weights",
    "param_groups",
    "save_checkpoint",
    "warmup_linear_decay",
]
