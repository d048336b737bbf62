r"""Streaming sufficient statistics of class features: count, sum and sum of outer products, in float64.

The centred scatter follows exactly from them, `Zc^T Zc = sum(z z^T) - m mu mu^T`, so [`scales_from_moments`] gives
the same scales as [`class_semantic_scales`] on all the features at once. The statistics add up across batches
([`update_moments`]) and across processes ([`merge_moments`], or an all-reduce with "sum" of each field), which makes
them a fixed-size alternative to a feature pool. They cost `C * d^2` numbers (1,000 classes at d = 2048 would be
33 GB in float64), so they suit few classes or small feature dimensions; the feature pool suits the rest.

This module imports only torch (the factorisations are those of [`~semscale_hf.core._linalg`]).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from . import _linalg
from ._validation import IGNORE_INDEX, check_features, check_int, check_labels, check_num_classes, resolve_alpha


__all__ = [
    "ClassMoments",
    "init_moments",
    "merge_moments",
    "moments_from_features",
    "scales_from_moments",
    "update_moments",
]


class ClassMoments(NamedTuple):
    """Per-class sufficient statistics (all float64).

    Attributes:
        counts (`torch.Tensor` of shape `(num_classes,)`): number of features seen per class.
        sums (`torch.Tensor` of shape `(num_classes, dim)`): sum of the feature vectors per class.
        second (`torch.Tensor` of shape `(num_classes, dim, dim)`): sum of the outer products `z z^T` per class.
    """

    counts: torch.Tensor
    sums: torch.Tensor
    second: torch.Tensor


def init_moments(num_classes: int, dim: int, *, device: torch.device | str | None = None) -> ClassMoments:
    """Empty statistics for `num_classes` classes of `dim`-dimensional features."""
    check_num_classes(num_classes)
    check_int("dim", dim, minimum=1)
    kwargs = {"dtype": torch.float64, "device": device}
    return ClassMoments(
        torch.zeros(num_classes, **kwargs),
        torch.zeros(num_classes, dim, **kwargs),
        torch.zeros(num_classes, dim, dim, **kwargs),
    )


def update_moments(
    moments: ClassMoments,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    normalize: bool = False,
    ignore_index: int = IGNORE_INDEX,
) -> ClassMoments:
    """Returns `moments` plus the statistics of a batch (the input is not modified).

    `normalize=True` L2-normalises each feature first, as `class_semantic_scales(..., normalize=True)` does; use the
    same setting for every update. Rows labelled `ignore_index` are skipped.
    """
    num_classes, dim = moments.sums.shape
    check_features(features)
    if features.shape[1] != dim:
        raise ValueError(f"features have dimension {features.shape[1]} but the statistics were built for {dim}")
    labels = check_labels(labels, features.shape[0], num_classes, ignore_index)
    kept = labels != ignore_index
    x = features[kept].to(device=moments.sums.device, dtype=torch.float64)
    y = labels[kept].to(moments.sums.device)
    if normalize:
        x = F.normalize(x, dim=-1)
    counts = moments.counts + torch.bincount(y, minlength=num_classes).to(torch.float64)
    sums = moments.sums.index_add(0, y, x)
    second = moments.second.clone()
    for c in torch.unique(y).tolist():  # one product per class present: no (batch, d, d) temporary
        xc = x[y == c]
        second[c] += xc.T @ xc
    return ClassMoments(counts, sums, second)


def moments_from_features(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    normalize: bool = False,
    ignore_index: int = IGNORE_INDEX,
) -> ClassMoments:
    """Statistics of a whole set of features at once."""
    check_features(features)
    empty = init_moments(num_classes, features.shape[1], device=features.device)
    return update_moments(empty, features, labels, normalize=normalize, ignore_index=ignore_index)


def merge_moments(first: ClassMoments, second: ClassMoments) -> ClassMoments:
    """Statistics of the union of two sets (e.g. two processes): the fields add."""
    if first.second.shape != second.second.shape:
        raise ValueError(
            f"cannot merge statistics of shapes {tuple(first.second.shape)} and {tuple(second.second.shape)}"
        )
    return ClassMoments(*(a + b for a, b in zip(first, second, strict=True)))


def scales_from_moments(
    moments: ClassMoments, *, alpha: float | str = "dim", center: bool = True, min_count: int = 2
) -> torch.Tensor:
    """Semantic scale of every class from its statistics; the values of [`class_semantic_scales`] up to rounding.

    Centring subtracts `m mu mu^T` from the raw second moment, which cancels digits when the features share an
    offset large against their spread (at an offset 1e4 times the spread, about 5e-4 relative);
    [`class_semantic_scales`], which centres the features themselves, has no such loss.

    Returns a float64 tensor of shape `(num_classes,)`; classes with fewer than `min_count` features are NaN.
    """
    num_classes, dim = moments.sums.shape
    scale_alpha = resolve_alpha(alpha, dim)
    check_int("min_count", min_count, minimum=1)
    scales = torch.full((num_classes,), float("nan"), dtype=torch.float64, device=moments.sums.device)
    measured = moments.counts >= min_count
    if not bool(measured.any()):
        return scales
    counts = moments.counts[measured]
    scatter = moments.second[measured]
    if center:
        mean = moments.sums[measured] / counts[:, None]
        scatter = scatter - counts[:, None, None] * mean[:, :, None] * mean[:, None, :]
    matrix = scatter * (scale_alpha / counts)[:, None, None]
    matrix.diagonal(dim1=-2, dim2=-1).add_(1.0)
    with _linalg.lapack_threads(matrix.device, dim):
        logdets, failed = _linalg.logdets_lower(matrix.clone())  # the factorisation overwrites its input
    if bool(failed.any()):  # cancellation in `second - m mu mu^T` can leave it slightly indefinite
        eigenvalues = torch.linalg.eigvalsh(matrix[failed.to(matrix.device)])
        logdets[failed] = torch.log(eigenvalues.clamp_min(1.0)).sum(-1)
    scales[measured] = logdets / (2.0 * math.log(2.0))
    return scales
