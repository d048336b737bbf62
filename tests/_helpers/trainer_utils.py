"""Tiny models and data for trainer tests: a ViT from a config (random init) and the embedded digits images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from sklearn.datasets import load_digits
from transformers import AutoModelForImageClassification, TrainingArguments, ViTConfig

from semscale_hf import SemScaleTrainingArguments


def tiny_vit(num_labels: int = 4, seed: int = 0, hidden_size: int = 16):
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        num_labels=num_labels,
    )
    return AutoModelForImageClassification.from_config(config)


def digits_dataset(
    num_samples: int = 48, num_labels: int = 4, counts: list[int] | None = None, ignore_every: int | None = None
) -> Dataset:
    """Digits images (1 x 8 x 8, scaled to [0, 1]) of the first `num_labels` classes; `counts` picks per class.

    `ignore_every=k` relabels every k-th row -100 (ignored by the loss and the pool).
    """
    digits = load_digits(n_class=num_labels)
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    if counts is not None:
        rows = np.concatenate([np.flatnonzero(labels == c)[:n] for c, n in enumerate(counts)])
        rows.sort()
    else:
        rows = np.arange(num_samples)
    labels = labels[rows]
    if ignore_every is not None:
        labels[::ignore_every] = -100
    return Dataset.from_dict({"pixel_values": images[rows], "labels": labels}).with_format("torch")


def multi_hot_digits(counts: list[int] | None = None, seed: int = 0, dtype=np.float32) -> Dataset:
    """`digits_dataset(counts)` with multi-hot labels: the digit's class plus, for a seeded third, a second class."""
    single = digits_dataset(counts=counts or [12, 6, 4, 2]).with_format(None)
    rng = np.random.default_rng(seed)
    targets = np.eye(4, dtype=dtype)[np.asarray(single["labels"])]
    second = rng.random(len(targets)) < 1 / 3
    targets[second, rng.integers(0, 4, int(second.sum()))] = 1.0
    return Dataset.from_dict({"pixel_values": single["pixel_values"], "labels": targets}).with_format("torch")


def multi_label_vit(seed: int = 0):
    model = tiny_vit(seed=seed)
    model.config.problem_type = "multi_label_classification"
    return model


# Trainer arguments every tiny test run shares (also for plain `TrainingArguments`)
TRAINER_DEFAULTS = {
    "per_device_train_batch_size": 4,
    "learning_rate": 1e-2,
    "num_train_epochs": 2,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": [],
    "use_cpu": True,
    "disable_tqdm": True,
    "seed": 0,
}


def make_args(output_dir, **overrides) -> SemScaleTrainingArguments:
    defaults = {
        "per_device_eval_batch_size": 16,
        "lr_scheduler_type": "constant",
        "semscale_warmup_steps": 2,
        "semscale_refresh_steps": 3,
    }
    return SemScaleTrainingArguments(output_dir=str(output_dir), **{**TRAINER_DEFAULTS, **defaults, **overrides})


def plain_args(output_dir, **overrides) -> TrainingArguments:
    """Arguments of a plain `Trainer` that match `make_args` (constant learning rate)."""
    return TrainingArguments(
        output_dir=str(output_dir), **{**TRAINER_DEFAULTS, "lr_scheduler_type": "constant", **overrides}
    )


def assert_trains_like_trainer(ours, plain) -> None:
    """Trains both: an unweighted `SemScaleTrainer` takes the same steps as a plain `Trainer` (losses, parameters)."""
    plain.train()
    ours.train()
    assert len(losses(plain)) >= 4
    assert losses(ours) == pytest.approx(losses(plain), rel=1e-5)
    for p, q in zip(plain.model.parameters(), ours.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


# options of the accumulation-equivalence runs: 4 x 1 (the defaults) against 2 x 2 (`ACCUMULATED`)
EQUIVALENCE_RUN = {"max_steps": 8, "semscale_warmup_steps": 2, "semscale_refresh_steps": 2, "learning_rate": 1e-3}
ACCUMULATED = {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2}


def assert_accumulation_equivalence(make_trainer, tmp_path) -> None:
    """`make_trainer(output_dir, **options)` trained 4 x 1 and 2 x 2 takes the same steps (`assert_same_training`)."""
    a = make_trainer(tmp_path / "a", **EQUIVALENCE_RUN)
    a.train()
    b = make_trainer(tmp_path / "b", **EQUIVALENCE_RUN, **ACCUMULATED)
    b.train()
    assert_same_training(a, b)


def assert_same_training(a, b) -> None:
    """Two trained trainers took the same steps: losses, class weights and every parameter (1e-4)."""
    assert losses(a) == pytest.approx(losses(b), rel=1e-4)
    torch.testing.assert_close(a.class_weights, b.class_weights, rtol=1e-4, atol=1e-6)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        # Adam normalises near-zero gradients, so float32 rounding noise shows up at ~1e-5 in a few entries
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-4)


class HeadInputs:
    """Our own record of each training step: the classification head's input (own hook) and the batch's labels.

    What the feature pool must hold, row for row, to check that every pooled feature sits with its own label.
    """

    def __init__(self, trainer, head: torch.nn.Module) -> None:
        self.features: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.handle = head.register_forward_pre_hook(self._hook)
        original = trainer.training_step

        def training_step(model, inputs, *args, **kwargs):
            self.labels.append(inputs["labels"].detach().clone())
            return original(model, inputs, *args, **kwargs)

        trainer.training_step = training_step

    def _hook(self, module, args) -> None:
        if module.training:
            self.features.append(args[0].detach().clone())

    def rows_of(self, class_id: int, multi_label: bool = False) -> torch.Tensor:
        """Head inputs of the tokens tagged `class_id` (or of the examples positive for it), in training order."""
        rows = []
        for features, labels in zip(self.features, self.labels, strict=True):
            if multi_label:
                rows.append(features[labels[:, class_id] > 0.5])
            else:
                rows.append(features.reshape(-1, features.shape[-1])[labels.reshape(-1) == class_id])
        return torch.cat(rows)
