r"""Class weights from semantic scales, and the count-based baselines, under one convention.

Convention (shared by every function here):

* weights are float64, finite and positive, with mean 1 over the *measured* classes;
* an unmeasured class (NaN scale, or count 0) gets the largest measured weight: it is a tail class by definition;
* optional bounds `[w_min, w_max]`: the weights are then `clamp(k * w, w_min, w_max)` with the `k` that gives mean 1.

$$ w_c = \frac{S_c^{-p}}{\operatorname{mean}_k S_k^{-p}} $$

A positive `power` up-weights classes with a small scale (the analogy with count re-weighting); a negative power
up-weights the more diverse classes. Which direction helps is an open question that the README answers by measurement.

This module imports only torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


__all__ = [
    "WEIGHTINGS",
    "blend_weights",
    "class_weights_by",
    "effective_number",
    "effective_number_weights",
    "inverse_frequency_weights",
    "scales_to_weights",
]

# Scales are floored at this fraction of the largest measured scale before the power, so that a class whose
# features all coincide (scale 0) gets a large but finite weight.
_SCALE_FLOOR = 1e-6


def scales_to_weights(
    scales: torch.Tensor,
    *,
    power: float = 1.0,
    w_min: float | None = None,
    w_max: float | None = None,
) -> torch.Tensor:
    r"""Class weights `w ~ S^(-power)` with mean 1 over the measured classes.

    Args:
        scales (`torch.Tensor` of shape `(num_classes,)`):
            Semantic scales; NaN marks an unmeasured class. Negative and infinite values are invalid (`ValueError`).
        power (`float`, *optional*, defaults to 1.0):
            Exponent `p`. Positive: small scale -> large weight. Negative: large scale -> large weight. 0: uniform.
        w_min (`float`, *optional*), w_max (`float`, *optional*):
            Bounds on the final weights; `w_min <= 1 <= w_max` is required so that mean 1 stays reachable.

    Returns:
        `torch.Tensor`: float64 weights of shape `(num_classes,)`, all finite and positive.

    Example:

    >>> import torch
    >>> from semscale_hf import scales_to_weights
    >>> weights = scales_to_weights(torch.tensor([1.0, 2.0, 4.0, float("nan")]))  # 1/S normalised to mean 1
    >>> [round(w, 4) for w in weights.tolist()]  # the unmeasured class gets the largest weight
    [1.7143, 0.8571, 0.4286, 1.7143]
    """
    scales = _as_float64_vector(scales, "scales")
    check_power(power)
    if bool(torch.isinf(scales).any()):  # an infinite volume is no measurement: never read it as "unmeasured"
        raise ValueError(
            f"scales must be finite (NaN marks an unmeasured class), got inf at classes "
            f"{torch.isinf(scales).nonzero().flatten().tolist()}"
        )
    measured = ~torch.isnan(scales)
    if bool((scales[measured] < 0).any()):
        raise ValueError(f"scales must be non-negative (or NaN for unmeasured classes), got {scales.tolist()}")
    raw = torch.ones_like(scales)
    if bool(measured.any()) and power != 0:
        top = scales[measured].max()
        if bool(top > 0):
            # floored at a fraction of the largest, and never at 0 (a denormal largest scale would give log 0)
            floored = scales[measured].clamp_min(max(float(top) * _SCALE_FLOOR, torch.finfo(torch.float64).tiny))
            # in log space, so that large |power| cannot overflow before normalisation
            log_raw = -power * torch.log(floored)
            raw[measured] = torch.exp(log_raw - log_raw.max())
    return _normalise(raw, measured, w_min, w_max)


def effective_number(counts: torch.Tensor, beta: float = 0.9999) -> torch.Tensor:
    r"""Effective number of samples (Cui et al. 2019), `E(n) = (1 - beta^n) / (1 - beta)`, in float64."""
    counts = _as_float64_vector(counts, "counts")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    return -torch.expm1(counts * math.log(beta)) / (1.0 - beta) if beta > 0 else (counts > 0).to(torch.float64)


def effective_number_weights(
    counts: torch.Tensor,
    *,
    beta: float = 0.9999,
    w_min: float | None = None,
    w_max: float | None = None,
) -> torch.Tensor:
    """Class-balanced weights `w ~ 1 / E(n_c)` (Cui et al. 2019), same conventions as [`scales_to_weights`].

    Classes with count 0 count as unmeasured and get the largest weight.
    """
    counts = _check_counts(counts)
    measured = counts > 0
    raw = torch.ones_like(counts)
    raw[measured] = 1.0 / effective_number(counts[measured], beta)
    return _normalise(raw, measured, w_min, w_max)


def inverse_frequency_weights(
    counts: torch.Tensor,
    *,
    power: float = 1.0,
    w_min: float | None = None,
    w_max: float | None = None,
) -> torch.Tensor:
    """Weights `w ~ n_c^(-power)` (conventions of [`scales_to_weights`]); count-0 classes get the largest weight."""
    counts = _check_counts(counts)
    check_power(power)
    measured = counts > 0
    raw = torch.ones_like(counts)
    log_raw = -power * torch.log(counts[measured])
    if log_raw.numel():
        raw[measured] = torch.exp(log_raw - log_raw.max())
    return _normalise(raw, measured, w_min, w_max)


def blend_weights(
    new: torch.Tensor,
    old: torch.Tensor | None,
    momentum: float,
    *,
    measured: torch.Tensor | None = None,
    w_min: float | None = None,
    w_max: float | None = None,
) -> torch.Tensor:
    """Smooths weights across refreshes: `(1 - momentum) * new + momentum * old`, with the conventions of the rules.

    The blend is renormalised to mean 1 over the `measured` classes (default: all) within `[w_min, w_max]`, and the
    unmeasured classes take the largest measured weight, as in [`scales_to_weights`]: blending weights with
    themselves returns them unchanged.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    new = _as_float64_vector(new, "new")
    if old is None or momentum == 0.0:
        return new
    old = _as_float64_vector(old, "old").to(new.device)
    if old.shape != new.shape:
        raise ValueError(f"old weights have shape {tuple(old.shape)}, new ones {tuple(new.shape)}")
    if measured is None:
        measured = torch.ones_like(new, dtype=torch.bool)
    elif measured.shape != new.shape:
        raise ValueError(f"measured has shape {tuple(measured.shape)}, the weights {tuple(new.shape)}")
    return _normalise((1.0 - momentum) * new + momentum * old, measured.to(new.device), w_min, w_max)


def _from_scales(scales, counts, *, power, beta, w_min, w_max) -> torch.Tensor:
    return scales_to_weights(scales, power=power, w_min=w_min, w_max=w_max)


def _from_effective_number(scales, counts, *, power, beta, w_min, w_max) -> torch.Tensor:
    return effective_number_weights(counts, beta=beta, w_min=w_min, w_max=w_max)


def _from_inverse_frequency(scales, counts, *, power, beta, w_min, w_max) -> torch.Tensor:
    return inverse_frequency_weights(counts, w_min=w_min, w_max=w_max)


def _uniform(scales, counts, *, power, beta, w_min, w_max) -> torch.Tensor:
    return torch.ones(torch.as_tensor(counts).shape[0], dtype=torch.float64)


WEIGHTINGS: dict[str, Callable[..., torch.Tensor]] = {
    "semantic_scale": _from_scales,
    "effective_number": _from_effective_number,
    "inverse_frequency": _from_inverse_frequency,
    "none": _uniform,
}
"""Weighting rules by name (the single source of the names `semscale_weighting` accepts). Each maps
`(scales, counts, *, power, beta, w_min, w_max)` to float64 weights of mean 1; see [`class_weights_by`]."""


def class_weights_by(
    weighting: str,
    scales: torch.Tensor,
    counts: torch.Tensor,
    *,
    power: float = 1.0,
    beta: float = 0.9999,
    w_min: float | None = None,
    w_max: float | None = None,
) -> torch.Tensor:
    """Class weights of the rule `weighting` (a key of `WEIGHTINGS`) from scales and training counts.

    `"semantic_scale"` is [`scales_to_weights`] with `power`, `"effective_number"` is [`effective_number_weights`]
    with `beta`, `"inverse_frequency"` is [`inverse_frequency_weights`], and `"none"` gives all ones (the scales are
    still measured and reported); `w_min` and `w_max` bound every rule but `"none"`.

    Example:

    >>> import torch
    >>> weights = class_weights_by("inverse_frequency", torch.tensor([1.0, 1.0]), torch.tensor([30, 10]))
    >>> [round(w, 6) for w in weights.tolist()]
    [0.5, 1.5]
    """
    rule = WEIGHTINGS.get(weighting)
    if rule is None:
        raise ValueError(f"unknown weighting {weighting!r}; pass one of {sorted(WEIGHTINGS)}")
    return rule(scales, counts, power=power, beta=beta, w_min=w_min, w_max=w_max)


def _normalise(raw: torch.Tensor, measured: torch.Tensor, w_min: float | None, w_max: float | None) -> torch.Tensor:
    """Mean 1 over measured classes within `[w_min, w_max]`; unmeasured classes take the largest measured weight.

    With bounds, the result is `clamp(k * raw, w_min, w_max)` with the one `k` that gives mean 1 (the mean is monotone
    in `k`, so bisection on `log k` finds it to machine precision).
    """
    low, high = check_bounds(w_min, w_max)
    if not bool(measured.any()) or low == 1.0 or high == 1.0:
        return torch.ones_like(raw)
    weights = raw[measured] / raw[measured].mean()
    if low > 0.0 or high < math.inf:
        # a weight that underflowed to 0 counts as the smallest positive float: log 0 = -inf would end the
        # bisection at inf and make every weight NaN
        log_weights = torch.log(weights.clamp_min(torch.finfo(torch.float64).tiny))
        log_low = math.log(torch.finfo(torch.float64).tiny) - float(log_weights.max())  # every weight below w_min
        log_high = 0.0 if high == math.inf else math.log(high) - float(log_weights.min())  # mean >= 1 from here
        for _ in range(200):
            middle = 0.5 * (log_low + log_high)
            if float(torch.exp(log_weights + middle).clamp(low, high).mean()) < 1.0:
                log_low = middle
            else:
                log_high = middle
        weights = torch.exp(log_weights + log_high).clamp(low, high)
    out = torch.empty_like(raw)
    out[measured] = weights
    out[~measured] = weights.max()
    # A class whose weight underflowed to 0 would never be trained: keep the smallest positive float instead.
    return out.clamp_min(torch.finfo(torch.float64).tiny)


def _as_float64_vector(values: torch.Tensor, name: str) -> torch.Tensor:
    values = torch.as_tensor(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D (num_classes,), got shape {tuple(values.shape)}")
    return values.to(torch.float64)


def _check_counts(counts: torch.Tensor) -> torch.Tensor:
    counts = _as_float64_vector(counts, "counts")
    if not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
        raise ValueError(f"counts must be finite and non-negative, got {counts.tolist()}")
    return counts


def check_bounds(w_min: float | None, w_max: float | None) -> tuple[float, float]:
    """The weight bounds as numbers (0 and inf when unset); they must satisfy `0 <= w_min <= 1 <= w_max`."""
    low = 0.0 if w_min is None else float(w_min)
    high = math.inf if w_max is None else float(w_max)
    if not (0.0 <= low <= 1.0 <= high) or math.isnan(high):
        raise ValueError(f"the weight bounds must satisfy 0 <= w_min <= 1 <= w_max, got w_min={w_min}, w_max={w_max}")
    return low, high


def check_power(power: float) -> None:
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not math.isfinite(power):
        raise ValueError(f"power must be a finite number, got {power!r}")
