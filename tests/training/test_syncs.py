"""The per-step path makes the host wait for the device no more often than `Trainer` does.

A host synchronisation is counted as PyTorch's `aten::_local_scalar_dense` (what `.item()`, `bool(tensor)` and
`int(tensor)` dispatch to; on a GPU each one blocks the host until the device catches up), under a
`TorchDispatchMode`, for every optimizer step of the same tiny ViT on the same data.
"""

import pytest
import torch
from _helpers.trainer_utils import TRAINER_DEFAULTS, digits_dataset, make_args, tiny_vit
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import Trainer, TrainerCallback, TrainingArguments

from semscale_hf import SemScaleCallback, SemScaleTrainer


class SyncCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


class PerStep(TrainerCallback):
    """Syncs of every optimizer step: forward, loss, backward, optimizer and the callbacks' `on_step_end` (a refresh
    among them); registered last, so that it counts the other callbacks' work too."""

    def __init__(self, counter: SyncCounter) -> None:
        self.counter, self.steps, self._start = counter, [], 0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = self.counter.count

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(self.counter.count - self._start)


# logging and saving only at the end, so that the steps compared are ordinary training steps
QUIET = {"logging_steps": 1000, "num_train_epochs": 2, "save_strategy": "no"}


def _syncs_per_step(trainer) -> list[int]:
    counter = SyncCounter()
    per_step = PerStep(counter)
    trainer.add_callback(per_step)
    with counter:
        trainer.train()
    return per_step.steps


def _refresh_steps(trainer) -> set[int]:
    return {entry["step"] for entry in trainer.state.log_history if "semscale/refreshes" in entry}


def _plain_trainer(tmp_path, data):
    args = TrainingArguments(output_dir=str(tmp_path / "plain"), **{**TRAINER_DEFAULTS, **QUIET})
    return Trainer(model=tiny_vit(), args=args, train_dataset=data)


@pytest.mark.parametrize("base_loss", ["ce", "focal", "ldam"])
def test_semscale_trainer_syncs_no_more_than_trainer_outside_refresh_steps(tmp_path, base_loss):
    data = digits_dataset(counts=[40, 30, 20, 10])
    plain = _syncs_per_step(_plain_trainer(tmp_path, data))
    args = make_args(tmp_path / "ours", semscale_base_loss=base_loss, semscale_refresh_steps=10, **QUIET)
    trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=data)
    ours = _syncs_per_step(trainer)
    refreshes = _refresh_steps(trainer)
    assert len(ours) == len(plain) == 50 and refreshes == {2, 12, 22, 32, 42}
    ordinary = [step for step in range(1, 51) if step not in refreshes]
    assert [ours[step - 1] for step in ordinary] == [plain[step - 1] for step in ordinary]
    assert trainer.balancer.stage == "balanced"  # the weighted loss ran on those steps
    # refresh steps synchronise: the scale computation, the weights and the logged summary (about 20 times here)
    assert all(ours[step - 1] > plain[step - 1] for step in refreshes)


def test_measure_only_callback_syncs_no_more_than_trainer_outside_refresh_steps(tmp_path):
    data = digits_dataset(counts=[40, 30, 20, 10])
    plain = _syncs_per_step(_plain_trainer(tmp_path, data))
    watched = _plain_trainer(tmp_path, data)
    SemScaleCallback.attach(watched, warmup_steps=2, refresh_steps=10)
    ours = _syncs_per_step(watched)
    refreshes = _refresh_steps(watched)
    ordinary = [step for step in range(1, 51) if step not in refreshes]
    assert [ours[step - 1] for step in ordinary] == [plain[step - 1] for step in ordinary]


def test_loss_inputs_are_built_once_not_per_micro_batch(tmp_path, monkeypatch):
    from semscale_hf.core import losses

    args = make_args(tmp_path, semscale_base_loss="ldam", semscale_refresh_steps=5, num_train_epochs=1)
    trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=digits_dataset())
    margins = trainer._loss_options["margins"]
    assert margins.device == trainer.args.device and margins.dtype == torch.float32

    def no_margins(*args, **kwargs):
        raise AssertionError("LDAM margins rebuilt during training")

    monkeypatch.setattr(losses, "ldam_margins", no_margins)
    copies = []
    original = trainer.balancer.loss_weights

    def watch(*args, **kwargs):
        weights = original(*args, **kwargs)
        copies.append((trainer.balancer.num_refreshes, weights))
        return weights

    trainer.balancer.loss_weights = watch
    trainer.train()
    weighted = [(refreshes, w) for refreshes, w in copies if w is not None]
    assert weighted and all(w.dtype == torch.float32 and w.device == trainer.args.device for _, w in weighted)
    # one device copy per refresh: between two refreshes every micro-batch gets the same tensor
    for (refreshes_a, a), (refreshes_b, b) in zip(weighted, weighted[1:], strict=False):
        assert (a is b) == (refreshes_a == refreshes_b)


def test_nan_features_are_reported_at_the_next_save_before_it_is_written(tmp_path):
    # checks run at logging, saving, evaluation and refresh steps: here the save at step 4 finds the NaN features of
    # steps 2 and 3 and training stops before checkpoint-4 is written; checkpoint-2 (before them) stays intact
    args = make_args(
        tmp_path, save_strategy="steps", save_steps=2, logging_steps=100, semscale_refresh_steps=100, max_steps=8
    )
    trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=digits_dataset())

    def poison(module, inputs):
        if trainer.state.global_step >= 2:
            return (inputs[0] * float("nan"),)

    trainer.model.vit.layernorm.register_forward_pre_hook(poison)
    with pytest.raises(FloatingPointError, match="at global steps 2 to 3"):
        trainer.train()
    assert (tmp_path / "checkpoint-2").is_dir() and not (tmp_path / "checkpoint-4").exists()
    assert bool(torch.isfinite(trainer.balancer.pool.storage_and_labels()[0]).all())  # none entered the pool


def test_nan_features_are_reported_before_an_epoch_end_save(tmp_path):
    # Trainer sets should_save for save_strategy="epoch" only in on_epoch_end, after the step-end check: the
    # checkpoint of step 6 was written with the NaN weights of step 4, and the error then said it was not
    args = make_args(
        tmp_path, save_strategy="epoch", logging_steps=100, semscale_refresh_steps=100, max_steps=12
    )  # 24 samples, batch 4: 6 steps per epoch
    trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=digits_dataset(counts=[12, 6, 4, 2]))

    def poison(module, inputs):
        if trainer.state.global_step == 4:
            return (inputs[0] * float("nan"),)

    trainer.model.vit.layernorm.register_forward_pre_hook(poison)
    with pytest.raises(FloatingPointError, match=r"NaN or inf .* \(epoch 1.0\)"):
        trainer.train()
    assert not (tmp_path / "checkpoint-6").exists()
