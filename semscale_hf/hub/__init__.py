"""Model cards with the semantic-scale report: the card data and its rendering, and the card of a trainer."""

from .card import PLOT_FILE, TEMPLATE_NAME, SemScaleCardData, read_template
from .trainer_card import card_data_from_trainer, class_accuracies_from_log_history, infer_task, write_model_card


__all__ = [
    "PLOT_FILE",
    "TEMPLATE_NAME",
    "SemScaleCardData",
    "card_data_from_trainer",
    "class_accuracies_from_log_history",
    "infer_task",
    "read_template",
    "write_model_card",
]
