"""The one record path of both modes: a training batch's head input -> gathered across processes -> feature pool.

A token batch enters as one row per labelled token, a multi-hot batch as one row per (example, positive class).
`SemScaleTrainer` records from `compute_loss`, the measure-only `SemScaleCallback` from a forward hook on the model;
both call [`record_batch`], so both share the gather, the order of the pool and the NaN policy. Recording never makes
the host wait for the device: rows with NaN/inf features or labels outside `[0, num_classes)` are left out of the pool
on the device and counted there, and [`check_recorded`] reads the counts back at the steps that synchronise anyway
(logging, saving, evaluating, refreshing, the last step). It stops training with a `FloatingPointError` (features)
or a `ValueError` (labels) that names the steps, on every rank (the counts come from the gathered batches) and
before any checkpoint is written after them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from ..core._validation import IGNORE_INDEX
from ..core.capture import is_token_classifier
from .distributed import gather_batch, real_samples_in_batch


if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..core.balancer import SemScaleBalancer
    from ..core.pool import FeaturePool

__all__ = ["check_recorded", "pool_memory_plan", "record_batch"]

LARGE_POOL_BYTES = 10**9  # a planned pool above this is logged as a warning, not as information


def record_batch(
    balancer: SemScaleBalancer,
    accelerator: Accelerator,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    multi_label: bool,
) -> None:
    """Adds one micro-batch to the pool; under several processes every rank adds every rank's batch, in rank order.

    Read it while the micro-batch is current (the even-batches repeats are found from the dataloader's state). A token
    batch (features `(batch, tokens, dim)`, labels `(batch, tokens)`) enters as one row per token; the -100 rows
    (special tokens, sub-words, padding) are skipped by the pool. `multi_label` (the model's
    `problem_type="multi_label_classification"`) reads labels `(batch, num_classes)` as multi-hot vectors, float or
    integer.
    """
    if accelerator.num_processes > 1:
        features, labels = gather_batch(accelerator, features, labels, real_samples_in_batch(accelerator))
    if multi_label:  # the features enter the pool of every positive class
        features, labels = multi_hot_rows(features, labels)
    elif labels.ndim == 2:
        features, labels = features.reshape(-1, features.shape[-1]), labels.reshape(-1)
    balancer.record(features, labels, validate=False)


def multi_hot_rows(features: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One `(feature, class)` row per positive entry of the multi-hot `targets` (others labelled -100).

    Every example is repeated once per class (`batch x num_classes` rows) instead of selecting the positive entries,
    whose number would have to be read back from the device.
    """
    batch, num_classes = targets.shape
    classes = torch.arange(num_classes, device=targets.device).expand(batch, num_classes)
    labels = torch.where(targets > 0.5, classes, IGNORE_INDEX).reshape(-1)
    return features.unsqueeze(1).expand(batch, num_classes, features.shape[-1]).reshape(-1, features.shape[-1]), labels


def pool_memory_plan(
    pool: FeaturePool, dim: int, model: torch.nn.Module, *, batch_size: int, num_processes: int, multi_label: bool
) -> tuple[int, str]:
    """The logging level and message of the pool's planned memory, logged once the trainer or the callback built it.

    The pool once filled, plus the scratch rows that `FeaturePool.add` keeps past its end for the rows it does not
    keep: one per row of the largest gathered micro-batch (`batch_size` per device x `num_processes`, times the
    classes of a multi-hot batch or the padded length of a token batch; the latter is bounded by the model's
    `max_position_embeddings` when it has one). A token batch longer than any before grows the scratch rows by copying
    the pool into a larger storage, which briefly holds both: the message says so for token tasks. `logging.WARNING`
    when the plan exceeds 1 GB, else `logging.INFO`.
    """
    row_bytes = dim * pool.dtype.itemsize
    capacity = int(pool.capacities.sum())
    filled = capacity * row_bytes
    tokens = not multi_label and is_token_classifier(model)
    examples = f"{batch_size} per device x {num_processes} process{'es' if num_processes > 1 else ''}"
    rows: int | None = batch_size * num_processes
    if multi_label:
        rows *= pool.num_classes
        unit = f"(example, class) pair: {examples} x {pool.num_classes} classes = {rows} rows"
    elif tokens:
        max_tokens = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if isinstance(max_tokens, int) and max_tokens > 0:
            rows *= max_tokens
            unit = f"token: {examples} x at most {max_tokens} tokens = {rows} rows"
        else:
            rows, unit = None, f"token: {examples} x the padded length"
    else:
        unit = f"example: {examples} = {rows} rows"
    message = (
        f"feature pool: {capacity} features of dimension {dim} in "
        f"{str(pool.dtype).removeprefix('torch.')} on {pool.device}, {_size(filled)} once filled, plus scratch rows "
        f"for the largest gathered micro-batch (one per {unit}): "
    )
    if rows is None:
        message += f"{_size(row_bytes)} per gathered row"
        planned = filled
    else:
        planned = filled + rows * row_bytes
        message += f"{_size(rows * row_bytes)}, {_size(planned)} in all"
    if tokens:
        message += " (a longer token batch than any before copies the pool to grow them: briefly twice the pool)"
    if planned > LARGE_POOL_BYTES:
        message += (
            "; lower the pool's cap per class or store it in float16 to use less (or keep it on the CPU to use less "
            "accelerator memory)"
        )
        return logging.WARNING, message
    return logging.INFO, message


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:.1f} MB" if num_bytes >= 10**6 else f"{num_bytes / 1e3:.1f} kB"


def check_recorded(
    balancer: SemScaleBalancer, *, first_step: int, last_step: int, epoch: float | None, output_dir: str
) -> None:
    """Raises if rows were left out of the pool since the last check, for the global steps `first_step..last_step`.

    One synchronisation (two counters read back from the pool's device).

    Raises:
        `FloatingPointError`: features held NaN or inf.
        `ValueError`: labels lay outside `[0, num_classes)` (and were not -100).
    """
    non_finite, bad_labels = balancer.pool.pop_rejected()
    if not (non_finite or bad_labels):
        return
    steps = f"global step {first_step}" if first_step >= last_step else f"global steps {first_step} to {last_step}"
    if non_finite:
        raise FloatingPointError(
            f"NaN or inf in {non_finite} feature vectors at {steps} (epoch {epoch}); none entered the feature pool, "
            f"and training stopped before any checkpoint was written after them, so the checkpoints in {output_dir} "
            "are intact. Lower the learning rate, enable gradient clipping (max_grad_norm) or check the inputs, then "
            "resume from the last checkpoint."
        )
    raise ValueError(
        f"{bad_labels} training labels at {steps} lie outside [0, {balancer.num_classes}) and are not -100; they "
        "were left out of the loss and the pool. Check num_labels of the model against the dataset (or class_counts)"
    )
