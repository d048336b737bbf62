"""The Trainer side: arguments, the trainer, the schedule callback, the record path, gathers and Hub pushes."""

from .callback import SemScaleCallback
from .config import SemScaleTrainingArguments
from .hub_push import HubPushError
from .trainer import SemScaleTrainer


__all__ = ["HubPushError", "SemScaleCallback", "SemScaleTrainer", "SemScaleTrainingArguments"]
