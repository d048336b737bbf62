r"""The marginal effect of semantic scale: how a class's scale grows, and saturates, with its number of samples.

For sizes `m_1 < m_2 < ...`, draw `repeats` subsets of each size without replacement, measure their scales, and fit

$$ S(m) \approx a \, (1 - e^{-m / \tau}) $$

by least squares on the mean curve. The fit reports `R^2` and `m_95 = tau ln 20`, the sample count at which 95% of the
asymptote `a` is reached. Compare with the count-only effective number `E(n) = (1 - beta^n) / (1 - beta)` of Cui et al.
(2019), the same curve shape with `tau = -1 / ln(beta)`.

This module imports only torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..core._validation import check_features
from ..core.scales import class_semantic_scales


__all__ = ["MarginalEffect", "SaturatingFit", "fit_saturating_curve", "marginal_effect"]

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class SaturatingFit:
    """Least-squares fit of `S(m) = asymptote * (1 - exp(-m / tau))`."""

    asymptote: float
    tau: float
    r_squared: float
    m95: float
    """Sample count at which 95% of the asymptote is reached, `tau * ln 20`."""

    def predict(self, sizes: torch.Tensor) -> torch.Tensor:
        sizes = torch.as_tensor(sizes, dtype=torch.float64)
        return self.asymptote * -torch.expm1(-sizes / self.tau)


@dataclass(frozen=True)
class MarginalEffect:
    """Scale versus number of samples for one class (result of [`marginal_effect`])."""

    sizes: list[int]
    mean: torch.Tensor
    """Mean scale over the repeats, float64 `(len(sizes),)`."""
    std: torch.Tensor
    """Standard deviation over the repeats (0 at the full size, which has one subset)."""
    fit: SaturatingFit

    @property
    def saturated(self) -> bool:
        """Whether 95% of the fitted asymptote is reached within the measured sizes."""
        return self.fit.m95 <= self.sizes[-1]


def marginal_effect(
    features: torch.Tensor,
    *,
    sizes: list[int] | None = None,
    repeats: int = 5,
    seed: int = 0,
    alpha: float | str = "dim",
    center: bool = True,
    normalize: bool = False,
) -> MarginalEffect:
    """Measures the scale of random subsets of one class's features, by size, and fits a saturating curve.

    Args:
        features (`torch.Tensor` of shape `(m, d)`): the features of one class.
        sizes (`list[int]`, *optional*):
            Subset sizes in `[2, m]`, at least two distinct ones; by default about 12 sizes spaced geometrically
            from 2 to `m`.
        repeats (`int`, *optional*, defaults to 5): random subsets per size.
        seed (`int`, *optional*, defaults to 0): seed of the subset draws.
        alpha, center, normalize: as in [`semantic_scale`].
    """
    check_features(features)
    total = features.shape[0]
    if total < 3:  # the curve is fitted to at least two sizes, 2 and 3
        raise ValueError(f"marginal_effect needs at least 3 features (two subset sizes to fit the curve), got {total}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if sizes is None:
        grid = torch.logspace(math.log10(2), math.log10(total), steps=12, dtype=torch.float64)
        sizes = sorted({int(round(float(s))) for s in grid})
    else:
        sizes = sorted(set(int(s) for s in sizes))
        if not sizes or sizes[0] < 2 or sizes[-1] > total:
            raise ValueError(f"sizes must lie in [2, {total}], got {sizes}")
        if len(sizes) < 2:
            raise ValueError(f"sizes must hold at least two distinct sizes to fit the curve, got {sizes}")
    generator = torch.Generator().manual_seed(seed)
    means, stds = [], []
    for size in sizes:
        draws = 1 if size == total else repeats
        # all draws of one size go through one batched call, each draw as its own "class"
        index = torch.stack([torch.randperm(total, generator=generator)[:size] for _ in range(draws)])
        labels = torch.arange(draws).repeat_interleave(size)
        scales = class_semantic_scales(
            features[index.flatten().to(features.device)],
            labels.to(features.device),
            draws,
            alpha=alpha,
            center=center,
            normalize=normalize,
            min_count=1,
        ).cpu()
        means.append(scales.mean())
        stds.append(scales.std(unbiased=False))
    mean = torch.stack(means)
    return MarginalEffect(sizes=sizes, mean=mean, std=torch.stack(stds), fit=fit_saturating_curve(sizes, mean))


def fit_saturating_curve(sizes: list[int] | torch.Tensor, values: torch.Tensor) -> SaturatingFit:
    """Least-squares fit of `values ~ a (1 - exp(-sizes / tau))`.

    For a fixed `tau` the best `a` is linear least squares; `tau` is found by a log-spaced scan refined by
    golden-section search, so no optimiser dependency is needed.
    """
    x = torch.as_tensor(sizes, dtype=torch.float64)
    y = torch.as_tensor(values, dtype=torch.float64)
    if x.shape != y.shape or x.numel() < 2:
        raise ValueError("need at least two (size, value) pairs of equal length to fit the curve")
    if not bool(torch.isfinite(x).all()) or bool((x < 0).any()):
        raise ValueError(f"sizes must be non-negative numbers of samples, got {x.tolist()}")
    positive = x[x > 0]
    if positive.numel() == 0:
        raise ValueError(f"need a positive size to fit the curve, got sizes {x.tolist()}")

    def solve(log_tau: float) -> tuple[float, float]:
        basis = -torch.expm1(-x / math.exp(log_tau))
        asymptote = float((basis * y).sum() / (basis * basis).sum())
        residual = float(((y - asymptote * basis) ** 2).sum())
        return residual, asymptote

    # size 0 (scale 0) is a valid point, but the tau grid starts from the smallest positive size
    low, high = math.log(float(positive.min()) / 10.0), math.log(float(x.max()) * 1000.0)
    grid = torch.linspace(low, high, 200).tolist()
    best = min(range(len(grid)), key=lambda i: solve(grid[i])[0])
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    for _ in range(60):
        c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        if solve(c)[0] < solve(d)[0]:
            b = d
        else:
            a = c
    log_tau = (a + b) / 2.0
    residual, asymptote = solve(log_tau)
    total = float(((y - y.mean()) ** 2).sum())
    r_squared = 1.0 - residual / total if total > 0 else float("nan")
    tau = math.exp(log_tau)
    return SaturatingFit(asymptote=asymptote, tau=tau, r_squared=r_squared, m95=tau * math.log(20.0))
