"""Per-class evaluation helpers for long-tailed classification: per-class accuracy and many/medium/few-shot groups.

The canonical split of the long-tailed literature (Liu et al., "Large-Scale Long-Tailed Recognition in an Open World",
CVPR 2019) groups classes by their number of *training* samples: many-shot (more than 100), medium-shot (20 to 100)
and few-shot (fewer than 20).

This module imports only torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..core import metric_keys as keys
from ..core._validation import IGNORE_INDEX, check_labels, check_num_classes


__all__ = [
    "SHOT_GROUPS",
    "average_precision",
    "classification_metrics",
    "entity_scores",
    "macro_f1",
    "multi_label_metrics",
    "many_medium_few_accuracy",
    "overall_accuracy",
    "per_class_accuracy",
    "shot_groups",
]

SHOT_GROUPS = ("many", "medium", "few")
# Thresholds of the canonical split, in training samples: many > 100 >= medium >= 20 > few.
_MANY_ABOVE = 100
_FEW_BELOW = 20


def per_class_accuracy(
    predictions: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Accuracy of each class (the recall of that class): correct predictions over examples with that label.

    Args:
        predictions (`torch.Tensor` of shape `(num_samples,)` or `(num_samples, num_classes)`):
            Predicted class ids, or logits / probabilities (the arg-max over the last dimension is taken).
        labels (`torch.Tensor` of shape `(num_samples,)`):
            True class ids in `[0, num_classes)`; rows labelled `ignore_index` are skipped.
        num_classes (`int`):
            Number of classes.
        ignore_index (`int`, *optional*, defaults to -100):
            Label value of rows to skip.

    Returns:
        `torch.Tensor`: float64 tensor of shape `(num_classes,)`, NaN for a class without examples.

    Example:

    >>> import torch
    >>> per_class_accuracy(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 0, 1]), num_classes=3)
    tensor([0.5000, 0.5000,    nan], dtype=torch.float64)
    """
    predictions = torch.as_tensor(predictions)
    labels = torch.as_tensor(labels)
    check_num_classes(num_classes)
    if predictions.ndim == 2:
        if predictions.shape[1] != num_classes:
            raise ValueError(
                f"logits have {predictions.shape[1]} columns but num_classes={num_classes}; pass class ids or "
                "logits of shape (num_samples, num_classes)"
            )
        predictions = predictions.argmax(dim=-1)
    elif predictions.is_floating_point() or predictions.dtype == torch.bool:
        raise TypeError(
            f"predictions must be integer class ids (or 2-D logits), got a 1-D tensor of dtype {predictions.dtype}"
        )
    if predictions.ndim != 1:
        raise ValueError(
            f"predictions must have shape (num_samples,) or (num_samples, num_classes), got {tuple(predictions.shape)}"
        )
    labels = check_labels(labels, predictions.shape[0], num_classes, ignore_index).to(predictions.device)
    kept = labels != ignore_index
    labels, predictions = labels[kept], predictions[kept].long()
    totals = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    correct = torch.bincount(labels[predictions == labels], minlength=num_classes).to(torch.float64)
    # 0 / 0 = NaN marks a class with no examples, never an accuracy of 0
    return correct / totals


def shot_groups(
    train_counts: torch.Tensor | Sequence[int],
    *,
    many_above: int = _MANY_ABOVE,
    few_below: int = _FEW_BELOW,
) -> list[str]:
    """Assigns each class to `"many"`, `"medium"` or `"few"` by its number of training samples.

    Args:
        train_counts (`torch.Tensor` or `Sequence[int]` of length `num_classes`):
            Training samples per class (the *training* split, not the evaluation split).
        many_above (`int`, *optional*, defaults to 100):
            A class with more than this many training samples is many-shot.
        few_below (`int`, *optional*, defaults to 20):
            A class with fewer than this many training samples is few-shot; the rest are medium-shot.

    Returns:
        `list[str]`: one of `"many"`, `"medium"`, `"few"` per class.

    Example:

    >>> shot_groups([500, 101, 100, 20, 19, 0])
    ['many', 'many', 'medium', 'medium', 'few', 'few']
    """
    counts = _counts_vector(train_counts)
    if not 0 <= few_below <= many_above:
        raise ValueError(f"need 0 <= few_below <= many_above, got few_below={few_below}, many_above={many_above}")
    return ["many" if n > many_above else "few" if n < few_below else "medium" for n in counts.tolist()]


def many_medium_few_accuracy(
    per_class_acc: torch.Tensor | Sequence[float],
    train_counts: torch.Tensor | Sequence[int],
    *,
    many_above: int = _MANY_ABOVE,
    few_below: int = _FEW_BELOW,
) -> dict[str, float]:
    """Mean per-class accuracy of the many-, medium- and few-shot groups.

    Each group's value is the unweighted mean over its classes (classes with NaN accuracy, i.e. without evaluation
    examples, are skipped); NaN when a group has no class with an accuracy.

    Args:
        per_class_acc (`torch.Tensor` or `Sequence[float]` of length `num_classes`):
            Per-class accuracy, e.g. from [`per_class_accuracy`].
        train_counts (`torch.Tensor` or `Sequence[int]` of length `num_classes`):
            Training samples per class.
        many_above, few_below:
            As in [`shot_groups`].

    Returns:
        `dict[str, float]`: keys `"many"`, `"medium"`, `"few"`.

    Example:

    >>> many_medium_few_accuracy([0.9, 0.7, 0.5, 0.1], [200, 150, 50, 5])
    {'many': 0.8, 'medium': 0.5, 'few': 0.1}
    """
    accuracy = torch.as_tensor(per_class_acc, dtype=torch.float64).cpu()
    groups = shot_groups(train_counts, many_above=many_above, few_below=few_below)
    if accuracy.ndim != 1 or accuracy.shape[0] != len(groups):
        raise ValueError(
            f"per_class_acc has shape {tuple(accuracy.shape)} but train_counts has {len(groups)} entries; "
            "both need one entry per class"
        )
    result = {}
    for group in SHOT_GROUPS:
        values = [a for a, g in zip(accuracy.tolist(), groups) if g == group and not math.isnan(a)]
        result[group] = sum(values) / len(values) if values else float("nan")
    return result


def _counts_vector(train_counts: torch.Tensor | Sequence[int]) -> torch.Tensor:
    counts = torch.as_tensor(train_counts)
    if counts.ndim != 1:
        raise ValueError(f"train_counts must be 1-D (num_classes,), got shape {tuple(counts.shape)}")
    if counts.is_floating_point():
        if not bool(torch.isfinite(counts).all()) or not bool((counts == counts.round()).all()):
            raise ValueError(f"train_counts must be whole numbers, got {counts.tolist()}")
    elif counts.dtype == torch.bool:
        raise TypeError("train_counts must be integer counts, got a boolean tensor")
    if bool((counts < 0).any()):
        raise ValueError(f"train_counts must be non-negative, got {counts.tolist()}")
    return counts.long()


def classification_metrics(
    predicted: torch.Tensor | Sequence[int],
    labels: torch.Tensor | Sequence[int],
    class_counts: Sequence[int],
    per_class_max: int = 20,
) -> dict[str, float]:
    """Accuracy, balanced (class-averaged) accuracy, many/medium/few-shot accuracy and, for few classes, per class."""
    num_classes = len(class_counts)
    predicted_ids = torch.as_tensor(predicted).long()
    label_ids = torch.as_tensor(labels).long()
    accuracy = per_class_accuracy(predicted_ids, label_ids, num_classes)
    metrics = {
        keys.ACCURACY: overall_accuracy(predicted_ids, label_ids),
        keys.BALANCED_ACCURACY: float(accuracy[torch.isfinite(accuracy)].mean()),
    }
    groups = many_medium_few_accuracy(accuracy, class_counts)
    metrics.update({keys.group_accuracy(group): value for group, value in groups.items()})
    if num_classes <= per_class_max:
        metrics.update({keys.class_accuracy(c): value for c, value in enumerate(accuracy.tolist())})
    return metrics


def macro_f1(
    predicted: torch.Tensor, labels: torch.Tensor, num_classes: int, *, ignore_index: int = IGNORE_INDEX
) -> float:
    """Mean over classes of the per-class F1 (classes with neither a label nor a prediction are left out).

    Rows labelled `ignore_index` are skipped, predictions included, as in [`per_class_accuracy`].

    Example:

    >>> import torch
    >>> macro_f1(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]), 2)
    0.7333333333333334
    """
    predicted, labels = torch.as_tensor(predicted).long().cpu(), torch.as_tensor(labels).long().cpu()
    kept = labels != ignore_index
    predicted, labels = predicted[kept], labels[kept]
    true_positive = torch.bincount(labels[predicted == labels], minlength=num_classes).double()
    support = torch.bincount(labels, minlength=num_classes).double()
    claimed = torch.bincount(predicted, minlength=num_classes).double()
    present = (support + claimed) > 0
    f1 = 2 * true_positive[present] / (support[present] + claimed[present])
    return float(f1.mean()) if f1.numel() else float("nan")


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class average precision of multi-label scores: the mean precision at the rank of each positive.

    `scores` and `targets` are `(examples, num_classes)`; an entry of `targets` above 0.5 is a positive, -100 is left
    out. Returns float64 `(num_classes,)`, NaN for a class without positives (as scikit-learn's
    `average_precision_score` per class, ties aside).

    Example:

    >>> import torch
    >>> average_precision(torch.tensor([[0.9], [0.8], [0.1]]), torch.tensor([[1.0], [0.0], [1.0]])).tolist()
    [0.8333333333333333]
    """
    scores = torch.as_tensor(scores, dtype=torch.float64).cpu()
    targets = torch.as_tensor(targets, dtype=torch.float64).cpu()
    result = torch.full((scores.shape[1],), float("nan"), dtype=torch.float64)
    for c in range(scores.shape[1]):
        kept = targets[:, c] != IGNORE_INDEX
        order = torch.argsort(scores[kept, c], descending=True, stable=True)
        positive = (targets[kept, c] > 0.5)[order].double()
        if positive.sum() > 0:
            precision = positive.cumsum(0) / torch.arange(1, positive.numel() + 1, dtype=torch.float64)
            result[c] = (precision * positive).sum() / positive.sum()
    return result


def multi_label_metrics(
    scores: torch.Tensor, targets: torch.Tensor, class_counts: Sequence[int], per_class_max: int = 20
) -> dict[str, float]:
    """Mean average precision, its many/medium/few-shot means and, for few classes, the AP of each class."""
    ap = average_precision(scores, targets)
    measured = ap[~ap.isnan()]
    metrics = {keys.MEAN_AVERAGE_PRECISION: float(measured.mean()) if measured.numel() else float("nan")}
    groups = many_medium_few_accuracy(ap, class_counts)
    metrics.update({keys.group_average_precision(group): value for group, value in groups.items()})
    if len(class_counts) <= per_class_max:
        metrics.update({keys.class_average_precision(c): value for c, value in enumerate(ap.tolist())})
    return metrics


def entity_scores(
    predicted_rows: Sequence[Sequence[int]], label_rows: Sequence[Sequence[int]], names: Sequence[str]
) -> dict[str, float] | None:
    """Entity-level precision, recall and F1 (`seqeval`, the convention of the transformers NER examples).

    `predicted_rows[i]` and `label_rows[i]` are the tag ids of the labelled tokens of sentence `i`. Returns `None`
    when `seqeval` is not installed or the tag names are not IOB (`B-`/`I-` prefixes).
    """
    if not any(str(name).startswith(("B-", "I-")) for name in names):
        return None
    try:
        from seqeval.metrics import f1_score, precision_score, recall_score
    except ImportError:
        return None
    predicted = [[names[t] for t in row] for row in predicted_rows]
    labels = [[names[t] for t in row] for row in label_rows]
    return {
        keys.ENTITY_PRECISION: float(precision_score(labels, predicted, zero_division=0)),
        keys.ENTITY_RECALL: float(recall_score(labels, predicted, zero_division=0)),
        keys.ENTITY_F1: float(f1_score(labels, predicted, zero_division=0)),
    }


def overall_accuracy(predictions: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = IGNORE_INDEX) -> float:
    """Fraction of correct predictions (class ids, or logits: arg-max) over the rows not labelled `ignore_index`.

    Example:

    >>> import torch
    >>> overall_accuracy(torch.tensor([0, 1, 1]), torch.tensor([0, 0, -100]))
    0.5
    """
    predictions, labels = torch.as_tensor(predictions), torch.as_tensor(labels)
    if predictions.ndim == 2:
        predictions = predictions.argmax(dim=-1)
    kept = labels != ignore_index
    return float((predictions[kept].to(labels.device) == labels[kept]).double().mean())
