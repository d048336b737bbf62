"""The computation behind the `semantic_scale` evaluate module, as a plain function: the fast path for large sets.

[`semantic_scale_metric`] takes tensors, NumPy arrays or (nested) lists and returns the same dict as
`evaluate.load("semantic_scale").compute(...)`. On tensors it skips the Arrow round trip of the evaluate machinery,
which dominates the run time for large embedding sets (see `benchmarks/bench_metric.py`).

Conventions of the returned dict: per-class lists hold `None` for a class that was not measured (fewer than
`min_count` examples) or has no examples, so the dict is valid JSON; scalar statistics are floats, NaN where they are
undefined (a correlation with a constant vector; every statistic that compares classes when fewer than two classes
are measured).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence, Sized
from typing import Any

import numpy as np
import torch

from ..analysis.evaluation import overall_accuracy, per_class_accuracy
from ..analysis.imbalance import scale_imbalance
from ..core._validation import IGNORE_INDEX, check_features
from ..core.scales import class_semantic_scales


__all__ = ["semantic_scale_metric"]

ArrayLike = torch.Tensor | np.ndarray | Sequence[Any]


def semantic_scale_metric(
    embeddings: ArrayLike,
    labels: ArrayLike,
    predictions: ArrayLike | None = None,
    *,
    num_classes: int | None = None,
    alpha: float | str = "dim",
    center: bool = True,
    normalize: bool = False,
    min_count: int = 2,
) -> dict[str, Any]:
    r"""Per-class semantic scales and how unequal they are, optionally against per-class accuracy.

    Args:
        embeddings (`torch.Tensor`, `np.ndarray` or list of lists, shape `(num_samples, dim)`):
            One feature vector per example, e.g. the input of the classification head.
        labels (`torch.Tensor`, `np.ndarray` or list of `int`, shape `(num_samples,)`):
            Integer class ids in `[0, num_classes)`; a row labelled -100 is ignored, its prediction included.
        predictions (`torch.Tensor`, `np.ndarray` or list of `int`, shape `(num_samples,)`, *optional*):
            Predicted class ids; adds per-class accuracy and its correlation with the scales.
        num_classes (`int`, *optional*):
            Number of classes; defaults to the largest label (or prediction) plus one.
        alpha (`float` or `"dim"`, *optional*, defaults to `"dim"`):
            The constant of `S = 1/2 log2 det(I + alpha/m Zc^T Zc)`; `"dim"` is the feature dimension.
        center (`bool`, *optional*, defaults to `True`):
            Subtract each class's mean first.
        normalize (`bool`, *optional*, defaults to `False`):
            L2-normalise each embedding first.
        min_count (`int`, *optional*, defaults to 2):
            Classes with fewer examples are not measured (`None` in the per-class lists).

    Returns:
        `dict`: `semantic_scales`, `normalized_scales` (per class, `None` if unmeasured), `class_counts`,
        `num_measured`, `scale_imbalance_ratio` (largest over smallest measured scale), `scale_cv` (coefficient of
        variation), `scale_kl_uniform` (KL divergence in nats of `S_c / sum S` from uniform), these three NaN with
        fewer than two measured classes; with `predictions` also `accuracy`, `per_class_accuracy` (per class, `None`
        without examples), `pearson_scale_accuracy` and `spearman_scale_accuracy`.

    Raises:
        `ValueError`: for empty input, embeddings of unequal length, NaN or inf, fewer than two distinct classes,
            mismatched lengths or out-of-range class ids. `TypeError`: for non-integer labels or predictions.

    Example:

    >>> import torch
    >>> from semscale_hf.metrics import semantic_scale_metric
    >>> embeddings = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    >>> result = semantic_scale_metric(embeddings, [0, 0, 1, 1], predictions=[0, 1, 1, 1], alpha=1.0)
    >>> [round(s, 4) for s in result["semantic_scales"]], result["per_class_accuracy"]
    ([0.5, 1.161], [0.5, 1.0])
    """
    features = _as_embeddings(embeddings)
    labels = _as_class_ids(labels, "labels", features.shape[0], ignore_index=IGNORE_INDEX)
    kept = labels != IGNORE_INDEX  # ignored everywhere, as in the math API: their predictions too
    if predictions is not None:
        predictions = _as_class_ids(predictions, "predictions", features.shape[0], kept=kept)
    if not bool(kept.all()):
        features, labels = features[kept.to(features.device)], labels[kept]
        predictions = None if predictions is None else predictions[kept]
        if labels.numel() == 0:
            raise ValueError("every label is -100 (ignored): the metric needs labelled examples")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
        if predictions is not None:
            num_classes = max(num_classes, int(predictions.max()) + 1)
    elif isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    for name, ids in (("labels", labels), ("predictions", predictions)):
        if ids is not None and int(ids.max()) >= num_classes:
            raise ValueError(f"{name} contain class id {int(ids.max())}, outside [0, {num_classes}); fix num_classes")
    present = torch.unique(labels)
    if present.numel() < 2:
        raise ValueError(
            f"labels contain a single class ({int(present[0])}); the semantic-scale metric compares classes and "
            "needs at least two. For the scale of one class use semscale_hf.semantic_scale(embeddings)."
        )

    scales = class_semantic_scales(
        features, labels, num_classes, alpha=alpha, center=center, normalize=normalize, min_count=min_count
    ).cpu()
    counts = torch.bincount(labels.cpu(), minlength=num_classes)
    accuracies = None
    if predictions is not None:
        accuracies = per_class_accuracy(predictions.cpu(), labels.cpu(), num_classes)
    imbalance = scale_imbalance(scales, accuracies=accuracies)
    result: dict[str, Any] = {
        "semantic_scales": _nan_to_none(scales.tolist()),
        "normalized_scales": _nan_to_none(imbalance.normalized_scales),
        "class_counts": counts.tolist(),
        "num_measured": imbalance.num_measured,
        "scale_imbalance_ratio": imbalance.max_min_ratio,
        "scale_cv": imbalance.coefficient_of_variation,
        "scale_kl_uniform": imbalance.kl_from_uniform,
    }
    if accuracies is not None:
        result["accuracy"] = overall_accuracy(predictions, labels)
        result["per_class_accuracy"] = _nan_to_none(accuracies.tolist())
        result["pearson_scale_accuracy"] = imbalance.pearson_scale_accuracy
        result["spearman_scale_accuracy"] = imbalance.spearman_scale_accuracy
    return result


def _as_embeddings(embeddings: ArrayLike) -> torch.Tensor:
    if isinstance(embeddings, np.ndarray) and embeddings.dtype == object:
        embeddings = list(embeddings)  # e.g. df["emb"].to_numpy(), one array per row: stacked below
    if isinstance(embeddings, torch.Tensor):
        features = embeddings.detach()
    elif isinstance(embeddings, np.ndarray):
        features = _from_numpy(embeddings)
    else:
        rows = list(embeddings)
        if not rows:
            raise ValueError("got no examples: embeddings and labels are empty")
        lengths = [_row_length(row) for row in rows]
        if None in lengths:
            got = (
                f"shape ({len(rows)},)"
                if all(length is None for length in lengths)
                else f"a sequence whose row {lengths.index(None)} is a single number"
            )
            raise ValueError(f"embeddings must be 2-D (num_samples, dim), got {got}; pass one vector per example")
        if len(set(lengths)) > 1:
            bad = next(i for i, length in enumerate(lengths) if length != lengths[0])
            raise ValueError(
                f"embeddings must all have the same length, got lengths {sorted(set(lengths))} "
                f"(row 0 has {lengths[0]}, row {bad} has {lengths[bad]})"
            )
        if all(isinstance(row, torch.Tensor) for row in rows):
            features = torch.stack([row.detach() for row in rows])  # as a 2-D tensor: same dtype and device
        elif all(isinstance(row, np.ndarray) and row.dtype != object for row in rows):
            features = _from_numpy(np.stack(rows))
        else:
            # numpy has no bfloat16, and cannot read a tensor on a GPU
            rows = [row.detach().cpu().float() if isinstance(row, torch.Tensor) else row for row in rows]
            # float32 is the precision the evaluate module stores; a list cannot carry a dtype anyway
            features = torch.as_tensor(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))
    if features.ndim == 1 and features.numel() == 0:
        features = features.reshape(0, 0)
    if features.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (num_samples, dim), got shape {tuple(features.shape)}")
    if features.shape[0] == 0:
        raise ValueError("got no examples: embeddings and labels are empty")
    if not features.is_floating_point():
        features = features.to(torch.float32)
    return check_features(features, name="embeddings")


def _as_class_ids(
    values: ArrayLike,
    name: str,
    num_samples: int,
    ignore_index: int | None = None,
    kept: torch.Tensor | None = None,
) -> torch.Tensor:
    """Checks and converts class ids; only the `kept` rows (those not labelled -100) must be valid."""
    if isinstance(values, torch.Tensor):
        ids = values.detach()
    else:
        array = np.asarray(values)
        if array.dtype == object:  # e.g. None mixed in, from an evaluate column filled only for some batches
            raise TypeError(f"{name} must be integer class ids; got values such as {_first_odd(values)!r}")
        if array.dtype.kind == "u":
            array = array.astype(np.int64)  # torch cannot compare uint16/32/64; no class id is that large
        ids = _from_numpy(array) if array.size else torch.zeros(0, dtype=torch.long)
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        example = ids[~(ids == ids.round())][:1].tolist() if ids.is_floating_point() else []
        raise TypeError(
            f"{name} must be integer class ids, got dtype {ids.dtype}"
            + (f" with non-integer values such as {example[0]}" if example else "")
            + "; cast them to int first (e.g. .long() or .astype(int))"
        )
    if not ids.dtype.is_signed:
        ids = ids.long()  # torch.uint16/32/64 tensors: comparisons are not implemented for them
    if ids.ndim != 1:
        raise ValueError(f"{name} must be 1-D (num_samples,), got shape {tuple(ids.shape)}")
    if ids.shape[0] != num_samples:
        raise ValueError(f"got {num_samples} embeddings but {ids.shape[0]} {name}")
    checked = ids if kept is None else ids[kept.to(ids.device)]
    negative = (checked < 0) if ignore_index is None else (checked < 0) & (checked != ignore_index)
    if bool(negative.any()):
        allowed = "" if ignore_index is None else f" (or {ignore_index}, ignored)"
        raise ValueError(f"{name} must be non-negative class ids{allowed}, got {int(checked[negative][0])}")
    return ids.long()


def _from_numpy(array: np.ndarray) -> torch.Tensor:
    # torch.from_numpy takes neither negative strides (a reversed view) nor non-native byte order ('>f4' from a file)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("=")))


def _row_length(row: Any) -> int | None:
    """Length of one embedding row; `None` for a single number (a 1-D input)."""
    if isinstance(row, (torch.Tensor, np.ndarray)):
        return row.shape[0] if row.ndim else None
    return len(row) if isinstance(row, Sized) and not isinstance(row, (str, bytes)) else None


def _first_odd(values: Sequence[Any]) -> Any:
    return next((v for v in values if not isinstance(v, numbers.Integral) or isinstance(v, bool)), None)


def _nan_to_none(values: list[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]
