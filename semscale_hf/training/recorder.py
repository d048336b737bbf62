"""The one record path of both modes: a training batch's head input -> gathered across processes -> feature pool.

`SemScaleTrainer` records from `compute_loss`, the measure-only `SemScaleCallback` from a forward hook on the model;
both call [`record_batch`], so both share the gather, the order of the pool and the NaN policy: features with NaN
or inf stop training with a `FloatingPointError` that names the step, raised on every rank (the check runs on the
gathered batch) and before the step's optimizer update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..core._validation import NonFiniteFeaturesError
from .distributed import gather_batch, real_samples_in_batch


if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..core.balancer import SemScaleBalancer

__all__ = ["record_batch"]


def record_batch(
    balancer: SemScaleBalancer,
    accelerator: Accelerator,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    step: int,
    epoch: float | None,
    output_dir: str,
) -> None:
    """Adds one micro-batch to the pool; under several processes every rank adds every rank's batch, in rank order.

    Read it while the micro-batch is current (the even-batches repeats are found from the dataloader's state).

    Raises:
        `FloatingPointError`: the features hold NaN or inf; nothing of the batch enters the pool.
    """
    if accelerator.num_processes > 1:
        features, labels = gather_batch(accelerator, features, labels, real_samples_in_batch(accelerator))
    try:
        balancer.record(features, labels)  # the pool checks labels and NaN/inf (once, on the hot path)
    except NonFiniteFeaturesError as error:
        raise FloatingPointError(
            f"NaN or inf in {error.num_bad} of {error.num_rows} feature vectors at global step {step} (epoch "
            f"{epoch}); training stopped before this step's update, so the checkpoints in {output_dir} are intact. "
            "Lower the learning rate, enable gradient clipping (max_grad_norm) or check the inputs, then resume from "
            "the last checkpoint."
        ) from error
