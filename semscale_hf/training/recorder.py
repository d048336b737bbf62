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

from typing import TYPE_CHECKING

import torch

from ..core._validation import IGNORE_INDEX
from .distributed import gather_batch, real_samples_in_batch


if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..core.balancer import SemScaleBalancer

__all__ = ["check_recorded", "record_batch"]


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
