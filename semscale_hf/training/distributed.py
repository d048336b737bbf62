"""The only module that talks to accelerate: gathers of micro-batches for the pool, broadcast of the class weights.

With `even_batches` (accelerate's default) the last global batch of an epoch is filled up with repeated samples so
that every process gets a full batch; `accelerate.Accelerator.gather_for_metrics` drops them for evaluation, and
these helpers do the same for training, so that the pool of several processes equals the pool of one process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..core._validation import IGNORE_INDEX


if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["broadcast_from_main", "gather_batch", "real_samples_in_batch"]


def real_samples_in_batch(accelerator: Accelerator) -> int | None:
    """Number of real samples in the current global micro-batch if `even_batches` filled it with repeats, else None.

    Read it while the micro-batch is current. Trainer fetches a whole gradient-accumulation window ahead, so the
    dataloader's end flag is already set for every micro-batch of the last window; of those, only the epoch's last
    micro-batch also has `sync_gradients` set (Trainer sets it per micro-batch).
    """
    state = accelerator.gradient_state
    last = state.end_of_dataloader and state.sync_gradients
    if accelerator.num_processes > 1 and accelerator.even_batches and last and state.remainder > 0:
        return int(state.remainder)
    return None


def gather_batch(
    accelerator: Accelerator, features: torch.Tensor, labels: torch.Tensor, real_samples: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gathers one micro-batch from every process in rank order, the same on every process.

    Batches of different sizes are padded (padding rows are labelled -100, which the pool skips); `real_samples`
    (from [`real_samples_in_batch`]) keeps only the leading real samples, as `gather_for_metrics` does. Token batches
    (labels `(batch, tokens)`, features `(batch, tokens, dim)`) are padded to the longest sequence first.
    """
    if features.ndim == 3:
        features = accelerator.pad_across_processes(features.contiguous(), dim=1, pad_index=0)
        labels = accelerator.pad_across_processes(labels.contiguous(), dim=1, pad_index=IGNORE_INDEX)
    features = accelerator.gather(accelerator.pad_across_processes(features.contiguous(), dim=0, pad_index=0))
    labels = accelerator.gather(accelerator.pad_across_processes(labels.contiguous(), dim=0, pad_index=IGNORE_INDEX))
    if real_samples is not None:
        features, labels = features[:real_samples], labels[:real_samples]
    return features, labels


def broadcast_from_main(accelerator: Accelerator, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Rank 0's values of `tensors` on every rank, each back on its own device (unchanged in one process).

    Used after a refresh: every rank holds the same pool and computes the same weights, and the broadcast rules out
    any difference that floating-point reductions could still leave between ranks.
    """
    if accelerator.num_processes == 1:
        return tensors
    from accelerate.utils import broadcast

    return tuple(broadcast(t.to(accelerator.device), from_process=0).to(t.device) for t in tensors)
