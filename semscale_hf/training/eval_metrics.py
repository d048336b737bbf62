"""The `compute_metrics` of `SemScaleTrainer`: class-balanced accuracies added to the user's own metrics.

[`ClassMetrics`] wraps the user's `compute_metrics` (if any) and adds accuracy, balanced accuracy, many/medium/few-shot
accuracy and, for few classes, per-class accuracy. It serves both of `Trainer`'s evaluation paths: the default one
(one call with every prediction) and `batch_eval_metrics=True` (one call per batch, `compute_result=True` on the
last). The user's keys never silently replace the built-in ones: a colliding built-in is renamed `semscale_<key>`
and a warning says so once. Token classification: the metrics are over the labelled tokens (-100 left out), plus
macro F1 and, with `seqeval` installed and IOB tag names, entity-level precision, recall and F1.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction
from transformers.utils import logging

from ..analysis.evaluation import classification_metrics, entity_scores, macro_f1, multi_label_metrics
from ..core import metric_keys as keys
from ..core._validation import IGNORE_INDEX


logger = logging.get_logger(__name__)

__all__ = ["ClassMetrics"]


class ClassMetrics:
    """`compute_metrics` with the class-balanced metrics of `SemScaleTrainer` (see the module docstring).

    Args:
        user_metrics (`Callable`, *optional*): the `compute_metrics` passed to the trainer.
        class_counts (`list[int]`): training samples per class (many/medium/few groups).
        per_class_max (`int`): per-class accuracies are reported for at most this many classes.
        batched (`bool`): `batch_eval_metrics=True`; then `user_metrics` must take `compute_result`.
        concatenated (`bool`): `eval_do_concat_batches`; when False the default path gets one entry per batch.
        token_task (`bool`): predictions `(examples, tokens, C)` and labels `(examples, tokens)`.
        multi_label (`bool`): predictions are logits `(examples, C)`, labels multi-hot `(examples, C)`.
        label_names (`list[str]`, *optional*): tag names by id (`config.id2label`), for entity-level scores.
    """

    def __init__(
        self,
        user_metrics: Callable[..., dict[str, float]] | None,
        class_counts: list[int],
        per_class_max: int,
        *,
        batched: bool = False,
        concatenated: bool = True,
        token_task: bool = False,
        multi_label: bool = False,
        label_names: list[str] | None = None,
    ) -> None:
        if batched and user_metrics is not None and "compute_result" not in inspect.signature(user_metrics).parameters:
            raise ValueError(
                "with batch_eval_metrics=True, compute_metrics must take a `compute_result` argument (True after "
                "the last batch, when it returns its summary), as for transformers.Trainer"
            )
        self.user_metrics = user_metrics
        self.class_counts = class_counts
        self.per_class_max = per_class_max
        self.token_task, self.multi_label, self.label_names = token_task, multi_label, label_names
        self.concatenated = concatenated
        self._batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._warned: set[str] = set()

    def __call__(self, prediction: EvalPrediction, compute_result: bool | None = None) -> dict[str, float]:
        if compute_result is None:  # the default path: every prediction at once
            if self.concatenated:
                metrics = self._built_in(self._predicted(prediction.predictions), prediction.label_ids)
            else:  # eval_do_concat_batches=False: one entry per batch
                batches = [
                    (self._predicted(p), torch.as_tensor(y))
                    for p, y in zip(prediction.predictions, prediction.label_ids, strict=True)
                ]
                metrics = self._built_in(*self._joined(batches))
            return self._merge(metrics, self.user_metrics(prediction) if self.user_metrics else {})
        # batch_eval_metrics: keep the predicted ids on their device (no read-back per batch), compute at the end
        predicted = self._predicted(prediction.predictions)
        self._batches.append((predicted, torch.as_tensor(prediction.label_ids)))
        user = self.user_metrics(prediction, compute_result=compute_result) if self.user_metrics else {}
        if not compute_result:
            return user
        batches, self._batches = self._batches, []
        return self._merge(self._built_in(*self._joined(batches)), user or {})

    def _joined(self, batches: list[tuple[Any, torch.Tensor]]) -> tuple[Any, Any]:
        """Predictions and labels of several batches as one evaluation: rows of sentences, or concatenated."""
        if self.token_task:  # sentences keep their rows: entity scores need them
            predicted = [row for p, _ in batches for row in torch.as_tensor(p).cpu()]
            labels = [row for _, y in batches for row in y.cpu()]
        else:
            predicted = torch.cat([torch.as_tensor(p).cpu() for p, _ in batches])  # (examples,) or (examples, C)
            labels = torch.cat([y.cpu() for _, y in batches])
        return predicted, labels

    def start(self) -> None:
        """Forgets the batches of an evaluation that raised before its last batch (called as each one begins)."""
        self._batches = []

    def _predicted(self, predictions: Any) -> Any:
        if not self.multi_label:
            return _predicted_ids(predictions, self.token_task)
        predictions = predictions[0] if isinstance(predictions, (tuple, list)) else predictions
        return predictions if torch.is_tensor(predictions) else np.asarray(predictions)

    def _built_in(self, predicted: Any, labels: Any) -> dict[str, float]:
        if self.multi_label:  # `predicted` holds the logits: average precision ranks them
            return multi_label_metrics(predicted, labels, self.class_counts, self.per_class_max)
        if not self.token_task:
            predicted, labels = torch.as_tensor(predicted), torch.as_tensor(labels)
            return classification_metrics(predicted, labels, self.class_counts, self.per_class_max)
        # one row per sentence; Trainer pads rows to the longest with -100, which drops out with the special tokens
        rows = [(torch.as_tensor(p).reshape(-1), torch.as_tensor(y).reshape(-1)) for p, y in zip(predicted, labels)]
        rows = [(p[: y.numel()][y != IGNORE_INDEX], y[y != IGNORE_INDEX]) for p, y in rows]
        flat_predicted = torch.cat([p for p, _ in rows]) if rows else torch.zeros(0, dtype=torch.long)
        flat_labels = torch.cat([y for _, y in rows]) if rows else torch.zeros(0, dtype=torch.long)
        metrics = classification_metrics(flat_predicted, flat_labels, self.class_counts, self.per_class_max)
        metrics[keys.MACRO_F1] = macro_f1(flat_predicted, flat_labels, len(self.class_counts))
        if self.label_names is not None:
            entities = entity_scores([p.tolist() for p, _ in rows], [y.tolist() for _, y in rows], self.label_names)
            metrics.update(entities or {})
        return metrics

    def _merge(self, built_in: dict[str, float], user: dict[str, float]) -> dict[str, float]:
        metrics = dict(built_in)
        for key in built_in.keys() & user.keys():
            metrics[f"semscale_{key}"] = metrics.pop(key)
            if key not in self._warned:
                self._warned.add(key)
                logger.warning(
                    f"compute_metrics returned {key!r}, a metric SemScaleTrainer also computes: yours is logged as "
                    f"eval_{key}, the built-in one as eval_semscale_{key}"
                )
        metrics.update(user)
        return metrics


def _predicted_ids(predictions: Any, token_task: bool) -> Any:
    """Class ids from logits (arg-max over the last axis) or from ids already (`preprocess_logits_for_metrics`)."""
    if isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    if not torch.is_tensor(predictions):
        predictions = np.asarray(predictions)
    ids_ndim = 2 if token_task else 1  # (examples, tokens) or (examples,)
    return predictions if predictions.ndim == ids_ndim else predictions.argmax(-1)
