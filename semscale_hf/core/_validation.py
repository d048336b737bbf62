"""Every argument check that the package shares: alpha, features, labels, positive integers, `IGNORE_INDEX`.

Pure torch, no Trainer imports. Messages follow one style: lower-case, what was wrong, what to pass instead.
"""

from __future__ import annotations

import math

import torch


IGNORE_INDEX = -100
"""Label of rows that take no part in the loss, the pool or the scales (the Hugging Face convention)."""


class NonFiniteFeaturesError(ValueError):
    """Features hold NaN or inf; `num_bad` of `num_rows` rows are affected."""

    def __init__(self, message: str, *, num_bad: int, num_rows: int) -> None:
        super().__init__(message)
        self.num_bad, self.num_rows = num_bad, num_rows


def parse_alpha(value: float | str) -> float | str:
    """`alpha` as the math functions take it, from a number or its text (a command-line value): `"dim"` or a float.

    Example:

    >>> parse_alpha("dim"), parse_alpha("0.5"), parse_alpha(2)
    ('dim', 0.5, 2.0)
    """
    if value == "dim":
        return "dim"
    try:
        alpha = float(value)
    except (TypeError, ValueError):
        raise ValueError(f'alpha must be "dim" or a positive number, got {value!r}') from None
    if isinstance(value, bool) or not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f'alpha must be "dim" or a positive number, got {value!r}')
    return alpha


def resolve_alpha(alpha: float | str, dim: int) -> float:
    """Returns the numeric `alpha` of the scale formula; `"dim"` means the feature dimension."""
    if isinstance(alpha, str):
        if alpha != "dim":
            raise ValueError(f'alpha must be a positive number or "dim", got {alpha!r}')
        return float(dim)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f'alpha must be a positive number or "dim", got {type(alpha).__name__}')
    return float(parse_alpha(alpha))


def check_features(features: torch.Tensor, name: str = "features") -> torch.Tensor:
    """Checks that `features` is a finite 2-D floating tensor and returns it."""
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (num_samples, dim), got {type(features).__name__}")
    if features.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_samples, dim), got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {features.dtype}")
    # A row sum is NaN or inf whenever the row holds one, so one summing pass clears the common case at a small
    # fraction of the cost of `isfinite` (230,000 x 768 float32: 0.03 s against 0.9 s, and no boolean copy). Only
    # then is the exact per-row check run, since a sum of large finite values can also overflow.
    if bool(torch.isfinite(features.sum(dim=1)).all()):
        return features
    finite_rows = torch.isfinite(features).all(dim=1)
    if not bool(finite_rows.all()):
        bad = int((~finite_rows).sum())
        raise NonFiniteFeaturesError(
            f"{name} contains NaN or inf in {bad} of {features.shape[0]} rows; "
            "check the model for divergence or filter those samples out",
            num_bad=bad,
            num_rows=features.shape[0],
        )
    return features


def check_labels(
    labels: torch.Tensor,
    num_samples: int,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    *,
    check_range: bool = True,
) -> torch.Tensor:
    """Checks that `labels` is a 1-D integer tensor of class ids (or `ignore_index`) matching `num_samples`.

    `check_range=False` skips the one check that reads a value back from the device (labels within
    `[0, num_classes)`), for training loops that must not wait for the device.
    """
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor of class ids, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor of class ids, got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (num_samples,), got shape {tuple(labels.shape)}")
    if labels.shape[0] != num_samples:
        raise ValueError(f"features have {num_samples} rows but labels have {labels.shape[0]} entries")
    check_num_classes(num_classes)
    if not check_range:
        return labels.long()
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        values = sorted({int(v) for v in labels[bad][:10].tolist()})
        raise ValueError(
            f"{int(bad.sum())} labels are outside [0, {num_classes}) and are not the ignore index {ignore_index}: "
            f"e.g. {values}"
        )
    return labels.long()


def check_num_classes(num_classes: int) -> int:
    return check_int("num_classes", num_classes, minimum=1)


def check_int(name: str, value: int | None, *, minimum: int, optional: bool = False) -> int | None:
    """Checks that `value` is an integer (not a bool) of at least `minimum`, or `None` when `optional`."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {wanted}{' or None' if optional else ''}, got {value!r}")
    return value
