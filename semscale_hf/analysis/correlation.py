"""Pearson and Spearman correlation of two per-class vectors, over the entries where both are finite (torch only)."""

from __future__ import annotations

import torch


__all__ = ["pearson_correlation", "spearman_correlation"]


def pearson_correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation over the entries where both are finite; NaN when undefined."""
    x, y = _paired_finite(x, y)
    if x.numel() < 2 or bool(x.max() == x.min()) or bool(y.max() == y.min()):  # a constant correlates with nothing
        return float("nan")
    # correlation is scale-free: dividing by the largest magnitude keeps tiny or huge values from under/overflowing
    # (the mean of equal tiny values is not always that value, so constant input must be caught before centring)
    x, y = x / x.abs().max(), y / y.abs().max()
    xc, yc = x - x.mean(), y - y.mean()
    denominator = torch.sqrt((xc * xc).sum() * (yc * yc).sum())
    if float(denominator) == 0.0:
        return float("nan")
    return float(((xc * yc).sum() / denominator).clamp(-1.0, 1.0))


def spearman_correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation (average ranks for ties) over the entries where both are finite."""
    x, y = _paired_finite(x, y)
    return pearson_correlation(_average_ranks(x), _average_ranks(y))


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    sorted_values, order = torch.sort(values, stable=True)
    ranks = torch.empty_like(values)
    # ties share the mean of their ranks
    _, inverse, tie_counts = torch.unique_consecutive(sorted_values, return_inverse=True, return_counts=True)
    first = torch.cumsum(tie_counts, 0) - tie_counts
    mean_rank = first.to(torch.float64) + (tie_counts.to(torch.float64) - 1.0) / 2.0
    ranks[order] = mean_rank[inverse]
    return ranks


def _paired_finite(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_float64(x).flatten(), as_float64(y).flatten()
    if x.shape != y.shape:
        raise ValueError(f"cannot correlate vectors of lengths {x.numel()} and {y.numel()}")
    keep = torch.isfinite(x) & torch.isfinite(y)
    return x[keep], y[keep]


def as_float64(values: torch.Tensor) -> torch.Tensor:
    """`values` as a float64 CPU tensor."""
    # a list is read in float64 directly: through float32 first, 1 + 1e-8 would become 1 and 1e39 inf
    if isinstance(values, torch.Tensor):
        return values.detach().to(torch.float64).cpu()
    return torch.as_tensor(values, dtype=torch.float64)
