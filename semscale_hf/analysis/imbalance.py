r"""Dataset-level semantic scale imbalance, and how scale, counts and effective number track per-class accuracy.

Headline number: `max_min_ratio`, the largest measured scale over the smallest. Also reported: the coefficient of
variation of the scales and the KL divergence (in nats) of the distribution `S_c / sum_k S_k` from uniform. All
statistics use the measured classes only (finite scales) and compare classes, so they are NaN with fewer than two
measured classes; correlations are also NaN for a constant input (as counts are on a sample-balanced dataset).

This module imports only torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..core.weights import effective_number
from .correlation import as_float64, pearson_correlation, spearman_correlation


__all__ = ["ScaleImbalance", "pearson_correlation", "scale_imbalance", "spearman_correlation"]


@dataclass(frozen=True)
class ScaleImbalance:
    """Result of [`scale_imbalance`]. Per-class lists hold NaN for unmeasured classes."""

    normalized_scales: list[float]
    """`S_c / max_k S_k`."""
    scale_deficits: list[float]
    """`1 - S_c / max_k S_k`."""
    max_min_ratio: float
    coefficient_of_variation: float
    kl_from_uniform: float
    num_measured: int
    pearson_scale_accuracy: float | None = None
    spearman_scale_accuracy: float | None = None
    pearson_count_accuracy: float | None = None
    spearman_count_accuracy: float | None = None
    pearson_effective_number_accuracy: float | None = None
    spearman_effective_number_accuracy: float | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain-Python dict (JSON-serialisable; NaN stays NaN), without the fields that were not computed."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def scale_imbalance(
    scales: torch.Tensor,
    *,
    accuracies: torch.Tensor | None = None,
    counts: torch.Tensor | None = None,
    beta: float = 0.9999,
) -> ScaleImbalance:
    r"""Summarises how unequal the classes' semantic scales are.

    Args:
        scales (`torch.Tensor` of shape `(num_classes,)`): per-class semantic scales, NaN for unmeasured classes.
        accuracies (`torch.Tensor` of shape `(num_classes,)`, *optional*):
            Per-class accuracy; adds Pearson and Spearman correlations of scale with accuracy.
        counts (`torch.Tensor` of shape `(num_classes,)`, *optional*):
            Per-class training counts; with `accuracies`, adds the correlations of counts and of the effective number
            (Cui et al. 2019, with `beta`) with accuracy, for comparison.

    Example:

    >>> import torch
    >>> from semscale_hf import scale_imbalance
    >>> result = scale_imbalance(torch.tensor([2.0, 4.0, float("nan")]), accuracies=torch.tensor([0.9, 0.5, 0.1]))
    >>> result.max_min_ratio, result.normalized_scales
    (2.0, [0.5, 1.0, nan])
    """
    scales = as_float64(scales)
    if scales.ndim != 1:
        raise ValueError(f"scales must be 1-D (num_classes,), got shape {tuple(scales.shape)}")
    measured = torch.isfinite(scales)
    if bool((scales[measured] < 0).any()):
        raise ValueError("scales must be non-negative (NaN for unmeasured classes)")
    values = scales[measured]
    nan = float("nan")
    if values.numel() and float(values.max()) > 0:
        normalized = scales / values.max()
    else:  # nothing measured, or every scale is 0
        normalized = torch.full_like(scales, nan)
    # one measured class is not balanced: with nothing to compare it with, the imbalance is undefined
    if values.numel() >= 2 and float(values.max()) > 0:
        total = values.sum()
        shares = values / total
        positive = shares > 0
        kl = float((shares[positive] * torch.log(shares[positive] * values.numel())).sum())
        ratio = float(values.max() / values.min()) if float(values.min()) > 0 else math.inf
        mean = values.mean()
        cv = float(values.std(unbiased=False) / mean)
    else:
        kl = ratio = cv = nan
    result: dict[str, object] = {
        "normalized_scales": normalized.tolist(),
        "scale_deficits": (1.0 - normalized).tolist(),
        "max_min_ratio": ratio,
        "coefficient_of_variation": cv,
        "kl_from_uniform": kl,
        "num_measured": int(measured.sum()),
    }
    if accuracies is not None:
        accuracies = _vector_like(accuracies, scales, "accuracies")
        result["pearson_scale_accuracy"] = pearson_correlation(scales, accuracies)
        result["spearman_scale_accuracy"] = spearman_correlation(scales, accuracies)
        if counts is not None:
            counts = _vector_like(counts, scales, "counts")
            effective = effective_number(counts, beta)
            result["pearson_count_accuracy"] = pearson_correlation(counts, accuracies)
            result["spearman_count_accuracy"] = spearman_correlation(counts, accuracies)
            result["pearson_effective_number_accuracy"] = pearson_correlation(effective, accuracies)
            result["spearman_effective_number_accuracy"] = spearman_correlation(effective, accuracies)
    return ScaleImbalance(**result)  # type: ignore[arg-type]


def _vector_like(values: torch.Tensor, reference: torch.Tensor, name: str) -> torch.Tensor:
    values = as_float64(values)
    if values.shape != reference.shape:
        raise ValueError(f"{name} must have shape {tuple(reference.shape)} (one per class), got {tuple(values.shape)}")
    return values
