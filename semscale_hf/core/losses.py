"""Class-weighted classification losses with a reduction that is safe under gradient accumulation and DDP.

Every loss here is the semantic-scale-balanced scheme of Ma et al. (ICLR 2023) applied to a base loss: each sample's
loss $\\ell_i$ is multiplied by the weight of its class and the result is divided by a *count of items*:

$$\\mathcal{L} = \\frac{1}{N} \\sum_{i:\\, y_i \\neq \\text{ignore}} w_{y_i} \\, \\ell_i$$

where $N$ is the number of non-ignored labels in the batch, or `num_items` when given (e.g. Trainer's
`num_items_in_batch`, the count over a whole accumulated and gathered batch). The denominator is never the sum of the
batch's weights, which is what `F.cross_entropy(weight=..., reduction="mean")` does: that denominator changes with the
batch's class mix, so two micro-batches of 2 would no longer add up to one batch of 4, nor 2 processes to 1.

Base losses (see `BASE_LOSSES`): cross-entropy with optional label smoothing, focal loss (Lin et al., 2017) and LDAM
(Cao et al., 2019). This module imports only torch; it knows nothing about Trainer, accelerate or process groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from ._validation import IGNORE_INDEX, check_labels


__all__ = [
    "BASE_LOSSES",
    "BaseLossName",
    "class_weighted_loss",
    "focal_loss",
    "ldam_loss",
    "ldam_margins",
    "multi_label_weighted_loss",
    "weighted_cross_entropy",
]

BaseLossName = Literal["ce", "focal", "ldam"]


# ---------------------------------------------------------------------------------------------------------------------
# Per-sample base losses. They receive only the non-ignored rows, already upcast, with labels in [0, num_classes), and
# return one unweighted loss per row. The reduction lives in `class_weighted_loss` so that all of them share it.
# ---------------------------------------------------------------------------------------------------------------------


def _cross_entropy_per_sample(
    logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0
) -> torch.Tensor:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    # Unweighted smoothing, so that with uniform weights this equals F.cross_entropy(label_smoothing=...); the class
    # weight then multiplies the whole smoothed loss of the sample, as for every other base loss.
    return F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)


def _focal_per_sample(logits: torch.Tensor, labels: torch.Tensor, *, gamma: float = 2.0) -> torch.Tensor:
    if not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma must be a finite number >= 0 (0 gives cross-entropy), got {gamma}")
    log_p = F.log_softmax(logits, dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
    # 1 - p as -expm1(log p) keeps precision when p is close to 1; the floor keeps the gradient of x**gamma finite at
    # x = 0 for 0 < gamma < 1 (its value there, tiny**gamma, is indistinguishable from 0 in the loss).
    one_minus_p = (-torch.expm1(log_p)).clamp_min(torch.finfo(log_p.dtype).tiny)
    return one_minus_p.pow(gamma) * -log_p


def ldam_margins(
    class_counts: torch.Tensor | Sequence[int], max_margin: float = 0.5, *, device: torch.device | str | None = None
) -> torch.Tensor:
    r"""Per-class LDAM margins $m_c \propto n_c^{-1/4}$, rescaled so that the largest is `max_margin` (Cao et al.,
    2019).

    A class with count 0 has no samples to bound, so it gets the largest margin, `max_margin` (it is the rarest class);
    the rescaling uses only classes with a positive count. If every count is 0, every margin is `max_margin`.

    Args:
        class_counts (`torch.Tensor` or sequence of `int`, shape `(num_classes,)`):
            Number of training samples per class. Must be non-negative.
        max_margin (`float`, *optional*, defaults to `0.5`):
            The margin of the rarest class with a positive count. Must be >= 0.
        device (`torch.device` or `str`, *optional*):
            Device of the result; defaults to the device of `class_counts`.

    Returns:
        `torch.Tensor` of shape `(num_classes,)` and dtype float64.

    Example:

    ```python
    >>> ldam_margins([16, 1, 0], max_margin=0.5)
    tensor([0.2500, 0.5000, 0.5000], dtype=torch.float64)

    ```
    """
    if not (math.isfinite(max_margin) and max_margin >= 0):
        raise ValueError(f"max_margin must be a finite number >= 0, got {max_margin}")
    counts = torch.as_tensor(class_counts, device=device)
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError(f"class_counts must be 1-D (num_classes,), got shape {tuple(counts.shape)}")
    if counts.dtype == torch.bool or counts.is_complex():
        raise TypeError(f"class_counts must hold numbers of samples, got dtype {counts.dtype}")
    counts = counts.to(torch.float64)
    if not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
        raise ValueError(f"class_counts must be finite and >= 0, got {counts.tolist()}")
    seen = counts > 0
    raw = torch.where(seen, counts.clamp_min(1.0).pow(-0.25), torch.zeros_like(counts))
    largest = raw.max()
    margins = raw * (max_margin / largest) if bool(largest > 0) else raw
    return torch.where(seen, margins, torch.full_like(margins, max_margin))


def _ldam_per_sample(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    class_counts: torch.Tensor | Sequence[int] | None = None,
    max_margin: float = 0.5,
    scale: float = 30.0,
    margins: torch.Tensor | None = None,
) -> torch.Tensor:
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale}")
    if margins is None:  # a training loop passes the margins it built once from the counts
        if class_counts is None:
            raise TypeError("the ldam loss needs class_counts=[...] (training samples per class) or margins=")
        margins = ldam_margins(class_counts, max_margin)
    margins = margins.to(device=logits.device, dtype=logits.dtype)
    if margins.shape[0] != logits.shape[1]:
        raise ValueError(
            f"class_counts has {margins.shape[0]} entries but logits have {logits.shape[1]} classes; "
            "pass one count per class"
        )
    # Only the true-class logit is pushed down by its class's margin, then everything is scaled (as in the authors'
    # code); a scatter rather than F.one_hot, which reads the labels back to check them.
    shifted = logits.scatter_add(1, labels.unsqueeze(1), -margins[labels].unsqueeze(1))
    return F.cross_entropy(scale * shifted, labels, reduction="none")


BASE_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "ce": _cross_entropy_per_sample,
    "focal": _focal_per_sample,
    "ldam": _ldam_per_sample,
}
"""Base losses by name. Each maps `(logits (N, C), labels (N,), **options)` to unweighted per-sample losses `(N,)`; the
inputs are the non-ignored rows only, upcast to at least float32."""


# ---------------------------------------------------------------------------------------------------------------------
# Shared validation and reduction.
# ---------------------------------------------------------------------------------------------------------------------


def _check_inputs(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"logits and labels must be torch.Tensors, got {type(logits).__name__} and {type(labels).__name__}"
        )
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (batch, num_classes), got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor of class ids (e.g. torch.long), got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must be 1-D with one entry per row of logits: logits {tuple(logits.shape)}, "
            f"labels {tuple(labels.shape)}"
        )


def _check_weights(
    class_weights: torch.Tensor | Sequence[float], num_classes: int, device: torch.device
) -> torch.Tensor:
    weights = torch.as_tensor(class_weights)
    if weights.shape != (num_classes,):
        raise ValueError(
            f"class_weights must have shape ({num_classes},), one weight per class of the logits, "
            f"got shape {tuple(weights.shape)}"
        )
    if weights.dtype == torch.bool or weights.is_complex():
        raise TypeError(f"class_weights must be real numbers, got dtype {weights.dtype}")
    # Moved relative to the logits, never to a fixed device: weights usually live on CPU or on the trainer's device.
    return weights.to(device=device)


def class_weighted_loss(
    name: BaseLossName,
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    *,
    ignore_index: int = IGNORE_INDEX,
    num_items: int | torch.Tensor | None = None,
    validate: bool = True,
    **options,
) -> torch.Tensor:
    r"""Class-weighted base loss, summed over non-ignored items and divided by the number of items.

    $$\mathcal{L} = \frac{1}{N} \sum_{i:\, y_i \neq \text{ignore\_index}} w_{y_i} \, \ell_i$$

    The denominator $N$ is a count, never $\sum_i w_{y_i}$, so that losses of micro-batches (or of processes) add up to
    the loss of the whole batch: with `num_items=None` the mean over two equal micro-batches equals the full-batch
    loss, and with `num_items` set to the full batch's count the *sum* over micro-batches equals it, whatever the
    weights.

    Computation runs in float32 for half-precision and float32 logits (float16/bfloat16 are upcast) and in float64 for
    float64 logits; the returned scalar has that dtype, so it is float32 for every mixed-precision setup. Gradients
    flow back to `logits` in their own dtype.

    Args:
        name (`str`):
            Base loss, a key of `BASE_LOSSES`: `"ce"`, `"focal"` or `"ldam"`.
        logits (`torch.Tensor` of shape `(batch, num_classes)`):
            Unnormalised scores, any floating dtype.
        labels (`torch.Tensor` of shape `(batch,)`):
            Integer class ids in `[0, num_classes)`, or `ignore_index` for rows that take no part in the loss.
        class_weights (`torch.Tensor` of shape `(num_classes,)`, *optional*):
            Per-class weights $w_c$ (by convention mean 1). Moved to the logits' device. `None` means all ones.
        ignore_index (`int`, *optional*, defaults to `-100`):
            Label value of ignored rows (Hugging Face's convention).
        num_items (`int` or `torch.Tensor`, *optional*):
            Denominator $N$, e.g. Trainer's `num_items_in_batch` (non-ignored labels over the accumulated, gathered
            batch). Must be at least the number of non-ignored labels here. `None` means the number of non-ignored
            labels in this batch.
        validate (`bool`, *optional*, defaults to `True`):
            Check that labels lie in `[0, num_classes)` and that `num_items` counts at least this batch's labels.
            Both checks read values back from the device; a training loop that validates its labels elsewhere
            passes `False`, and then nothing in the loss makes the host wait for the device (labels out of range
            are left out like ignored ones).
        **options:
            Keyword arguments of the base loss (`label_smoothing` for `"ce"`, `gamma` for `"focal"`; for `"ldam"`
            `class_counts`, `max_margin` and `scale`, or precomputed `margins` from [`ldam_margins`] instead of the
            counts).

    Returns:
        `torch.Tensor`: a scalar. If every label is ignored it is 0 and still attached to the graph of `logits`, so
        `backward()` works (with zero gradients) instead of producing NaN.

    Raises:
        `ValueError`: unknown `name`, labels outside `[0, num_classes)` other than `ignore_index`, `class_weights`
            not of shape `(num_classes,)`, `num_items` smaller than the number of non-ignored labels, or bad
            base-loss options.
        `TypeError`: non-floating logits, non-integer labels, or an option the base loss does not take.
    """
    if name not in BASE_LOSSES:
        raise ValueError(f"Unknown base loss {name!r}; choose one of {sorted(BASE_LOSSES)}")
    _check_inputs(logits, labels)
    num_classes = logits.shape[1]
    labels = labels.to(device=logits.device, dtype=torch.long)

    if validate:
        check_labels(labels, logits.shape[0], num_classes, ignore_index)
    valid = (labels != ignore_index) & (labels >= 0) & (labels < num_classes)

    compute_dtype = torch.promote_types(logits.dtype, torch.float32)
    # Ignored rows are replaced by zero logits and class 0 before the base loss and their losses by 0 after it, so
    # whatever they hold (even inf or NaN from padding) cannot leak into the loss or the gradient; an all-ignored
    # batch gives 0. Masks rather than boolean indexing: indexing would read the number of kept rows back from the
    # device.
    safe_labels = torch.where(valid, labels, 0)
    safe_logits = torch.where(valid.unsqueeze(1), logits, 0.0).to(compute_dtype)
    per_sample = torch.where(valid, BASE_LOSSES[name](safe_logits, safe_labels, **options), 0.0)

    if class_weights is not None:
        weights = _check_weights(class_weights, num_classes, logits.device).to(compute_dtype)
        per_sample = weights[safe_labels] * per_sample
    total = per_sample.sum()

    if num_items is None:
        denominator = valid.sum().to(compute_dtype).clamp_min(1.0)
    else:
        if isinstance(num_items, torch.Tensor):
            if num_items.numel() != 1:
                raise ValueError(f"num_items must be a scalar, got a tensor of shape {tuple(num_items.shape)}")
            denominator = num_items.reshape(()).to(device=total.device, dtype=compute_dtype)
        elif isinstance(num_items, (int, float)) and not isinstance(num_items, bool):
            denominator = total.new_tensor(float(num_items))
        else:
            raise TypeError(f"num_items must be an int, a scalar tensor or None, got {type(num_items).__name__}")
        if validate:
            n_valid = int(valid.sum())
            count = num_items.item() if isinstance(num_items, torch.Tensor) else num_items
            if not count >= n_valid:
                raise ValueError(
                    f"num_items={count} is smaller than the {n_valid} non-ignored labels of this batch; it must "
                    "count the items of the whole (accumulated, gathered) batch, or be None for this batch's own "
                    "count"
                )
        # 0 items everywhere: the sum is 0 too, and 0 / 1 keeps the result finite.
        denominator = denominator.clamp_min(1.0)
    return total / denominator


def weighted_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    *,
    ignore_index: int = IGNORE_INDEX,
    num_items: int | torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    r"""Class-weighted cross-entropy, divided by the number of items (not by the sum of weights).

    With `class_weights=None` (or all ones) this equals `F.cross_entropy(logits, labels, label_smoothing=...)`. With
    non-uniform weights it is $\frac{1}{N}\sum_i w_{y_i} \ell_i$, which differs from
    `F.cross_entropy(weight=class_weights)` (that one divides by $\sum_i w_{y_i}$). Label smoothing is unweighted
    inside each sample's loss, and the sample's class weight scales the whole smoothed loss.

    Args:
        logits (`torch.Tensor` of shape `(batch, num_classes)`): Unnormalised scores, any floating dtype.
        labels (`torch.Tensor` of shape `(batch,)`): Class ids, or `ignore_index`.
        class_weights (`torch.Tensor` of shape `(num_classes,)`, *optional*): Per-class weights; `None` means all ones.
        ignore_index (`int`, *optional*, defaults to `-100`): Label value of ignored rows.
        num_items (`int` or `torch.Tensor`, *optional*): Denominator; `None` means the non-ignored labels here.
        label_smoothing (`float`, *optional*, defaults to `0.0`): In `[0, 1]`, as in `F.cross_entropy`.

    Returns:
        `torch.Tensor`: a float32 scalar (float64 for float64 logits). See [`class_weighted_loss`] for the details.

    Example:

    ```python
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> labels = torch.tensor([0, 1, -100])
    >>> weighted_cross_entropy(logits, labels, torch.tensor([1.0, 3.0]))  # (1 + 3) * 0.1269 / 2 items
    tensor(0.2539)

    ```
    """
    return class_weighted_loss(
        "ce",
        logits,
        labels,
        class_weights,
        ignore_index=ignore_index,
        num_items=num_items,
        label_smoothing=label_smoothing,
    )


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    *,
    gamma: float = 2.0,
    ignore_index: int = IGNORE_INDEX,
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Class-weighted focal loss (Lin et al., 2017), divided by the number of items.

    $\ell_i = -(1 - p_{i,y_i})^{\gamma} \log p_{i,y_i}$ with $p$ the softmax of the logits. The paper's $\alpha_t$ is
    the class weight $w_{y_i}$. `gamma=0` gives [`weighted_cross_entropy`].

    Args:
        logits (`torch.Tensor` of shape `(batch, num_classes)`): Unnormalised scores, any floating dtype.
        labels (`torch.Tensor` of shape `(batch,)`): Class ids, or `ignore_index`.
        class_weights (`torch.Tensor` of shape `(num_classes,)`, *optional*): Per-class weights ($\alpha$).
        gamma (`float`, *optional*, defaults to `2.0`): Focusing parameter, >= 0.
        ignore_index (`int`, *optional*, defaults to `-100`): Label value of ignored rows.
        num_items (`int` or `torch.Tensor`, *optional*): Denominator; `None` means the non-ignored labels here.

    Returns:
        `torch.Tensor`: a float32 scalar (float64 for float64 logits). See [`class_weighted_loss`].
    """
    return class_weighted_loss(
        "focal", logits, labels, class_weights, ignore_index=ignore_index, num_items=num_items, gamma=gamma
    )


def ldam_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    *,
    class_counts: torch.Tensor | Sequence[int],
    max_margin: float = 0.5,
    scale: float = 30.0,
    ignore_index: int = IGNORE_INDEX,
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Class-weighted LDAM loss (Cao et al., 2019), divided by the number of items.

    The true-class logit of each sample is lowered by its class's margin $m_{y_i}$ (see [`ldam_margins`]:
    $m_c \propto n_c^{-1/4}$, largest `max_margin`, and `max_margin` for classes with count 0), all logits are
    multiplied by `scale`, and cross-entropy follows. The authors pair it with deferred re-weighting (DRW), which here
    is simply `class_weights`.

    Args:
        logits (`torch.Tensor` of shape `(batch, num_classes)`): Unnormalised scores, any floating dtype (typically
            cosine similarities from a normalised head, hence the `scale`).
        labels (`torch.Tensor` of shape `(batch,)`): Class ids, or `ignore_index`.
        class_weights (`torch.Tensor` of shape `(num_classes,)`, *optional*): Per-class weights.
        class_counts (`torch.Tensor` or sequence of `int`, shape `(num_classes,)`): Training samples per class.
        max_margin (`float`, *optional*, defaults to `0.5`): Largest margin, >= 0.
        scale (`float`, *optional*, defaults to `30.0`): Multiplier of the logits, > 0.
        ignore_index (`int`, *optional*, defaults to `-100`): Label value of ignored rows.
        num_items (`int` or `torch.Tensor`, *optional*): Denominator; `None` means the non-ignored labels here.

    Returns:
        `torch.Tensor`: a float32 scalar (float64 for float64 logits). See [`class_weighted_loss`].
    """
    return class_weighted_loss(
        "ldam",
        logits,
        labels,
        class_weights,
        ignore_index=ignore_index,
        num_items=num_items,
        class_counts=class_counts,
        max_margin=max_margin,
        scale=scale,
    )


def multi_label_weighted_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    *,
    num_items: int | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Class-weighted binary cross-entropy of multi-label classification (one sigmoid per class).

    $$\mathcal{L} = \frac{1}{N} \sum_{i, c} w_c \, \mathrm{BCE}(z_{ic}, t_{ic})$$

    The weight of class $c$ multiplies both terms of its binary problem (the positive and the negative examples of
    $c$), so `class_weights` of ones give `F.binary_cross_entropy_with_logits(reduction="mean")`. $N$ is the number
    of (example, class) terms, `num_items` when given (Trainer's `num_items_in_batch` counts the entries of the
    multi-hot labels over the accumulated batch), so micro-batches add up as in [`class_weighted_loss`]. Entries of
    `targets` equal to -100 take no part. Nothing here reads a value back from the device.

    Args:
        logits (`torch.Tensor` of shape `(batch, num_classes)`): Unnormalised scores, any floating dtype.
        targets (`torch.Tensor` of shape `(batch, num_classes)`): Multi-hot labels in `[0, 1]` (soft labels work).
        class_weights (`torch.Tensor` of shape `(num_classes,)`, *optional*): Per-class weights; `None` means ones.
        num_items (`int` or `torch.Tensor`, *optional*): Denominator; `None` means the non-ignored entries here.

    Returns:
        `torch.Tensor`: a float32 scalar (float64 for float64 logits).
    """
    if logits.ndim != 2 or targets.shape != logits.shape:
        raise ValueError(
            f"multi-label logits and targets must both be (batch, num_classes), got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    compute_dtype = torch.promote_types(logits.dtype, torch.float32)
    targets = targets.to(device=logits.device, dtype=compute_dtype)
    valid = targets != IGNORE_INDEX
    safe_targets = torch.where(valid, targets, 0.0)
    terms = F.binary_cross_entropy_with_logits(logits.to(compute_dtype), safe_targets, reduction="none")
    if class_weights is not None:
        terms = terms * _check_weights(class_weights, logits.shape[1], logits.device).to(compute_dtype)
    total = torch.where(valid, terms, 0.0).sum()
    count = valid.sum() if num_items is None else num_items
    return total / torch.as_tensor(count, device=logits.device).clamp_min(1).to(compute_dtype)
