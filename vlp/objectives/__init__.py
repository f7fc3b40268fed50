"""Pre-training objectives: one module per loss, composed by :class:`PretrainingObjectives`."""

from vlp.objectives.base import LOSS_NAMES, ObjectiveOutput
from vlp.objectives.itc import ContrastiveTemperature
from vlp.objectives.pretraining import PretrainingObjectives
from vlp.objectives.teacher import load_teacher

__all__ = ["LOSS_NAMES", "ContrastiveTemperature", "ObjectiveOutput", "PretrainingObjectives", "load_teacher"]
