import math

import pytest
import torch
from _helpers.trainer_utils import TRAINER_DEFAULTS, digits_dataset, tiny_vit
from transformers import Trainer, TrainerCallback, TrainingArguments

from semscale_hf import SemScaleCallback, class_semantic_scales


def test_measure_only_on_plain_trainer_logs_scales_and_leaves_training_alone(tmp_path):
    data = digits_dataset(counts=[16, 10, 6, 4])
    watched_args = TrainingArguments(output_dir=str(tmp_path / "watched"), **TRAINER_DEFAULTS)
    plain_args = TrainingArguments(output_dir=str(tmp_path / "plain"), **TRAINER_DEFAULTS)
    watched = Trainer(model=tiny_vit(), args=watched_args, train_dataset=data)
    callback = SemScaleCallback.attach(watched, warmup_steps=3, refresh_steps=4)
    watched.train()
    plain = Trainer(model=tiny_vit(), args=plain_args, train_dataset=data)
    plain.train()

    def train_losses(trainer):
        return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    assert train_losses(watched) == train_losses(plain)  # measure-only: the loss is untouched
    logged = [entry for entry in watched.state.log_history if "semscale/scale_mean" in entry]
    assert [entry["step"] for entry in logged] == [3, 7, 11, 15]
    assert all(entry["semscale/weight_max"] == 1.0 for entry in logged)
    # the pool holds the head inputs of training batches; measuring it again gives the logged scales
    features, labels = callback.balancer.pool.features_and_labels()
    assert callback.balancer.pool.counts.tolist() == [16, 10, 6, 4]
    assert features.shape[1] == watched.model.config.hidden_size
    assert torch.equal(class_semantic_scales(features, labels, 4), callback.balancer.measure())
    assert not math.isnan(logged[-1]["semscale/scale_min"])
    # hooks are gone after training
    assert not watched.model._forward_hooks and not watched.model._forward_pre_hooks
    assert not watched.model.classifier._forward_pre_hooks


def test_unlinked_callback_says_how_to_link(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=tiny_vit(), args=args, train_dataset=digits_dataset(), callbacks=[SemScaleCallback()])
    with pytest.raises(RuntimeError, match=r"SemScaleCallback\.attach\(trainer\)"):
        trainer.train()


def _plain_trainer(tmp_path, data=None, eval_dataset=None, **overrides):
    args = TrainingArguments(output_dir=str(tmp_path), **{**TRAINER_DEFAULTS, **overrides})
    data = data if data is not None else digits_dataset()
    return Trainer(model=tiny_vit(), args=args, train_dataset=data, eval_dataset=eval_dataset)


def test_measure_only_nan_features_stop_training_like_the_trainer(tmp_path):
    # one NaN policy for both modes: a diverged batch stops training with the step, before that step's update
    trainer = _plain_trainer(tmp_path)
    SemScaleCallback.attach(trainer, warmup_steps=2, refresh_steps=2)

    def poison(module, inputs):
        if trainer.state.global_step >= 3:
            return (inputs[0] * float("nan"),)

    trainer.model.vit.layernorm.register_forward_pre_hook(poison)
    with pytest.raises(FloatingPointError, match="global step 3"):
        trainer.train()


def test_measure_only_broadcasts_rank_zero_weights_after_every_refresh(tmp_path, monkeypatch):
    from semscale_hf.training import callback as callback_module

    calls = []

    def spy(accelerator, *tensors):
        calls.append(accelerator)
        return tensors

    monkeypatch.setattr(callback_module, "broadcast_from_main", spy)
    trainer = _plain_trainer(tmp_path)
    callback = SemScaleCallback.attach(trainer, warmup_steps=3, refresh_steps=4)
    trainer.train()
    assert callback.balancer.num_refreshes == len(calls) > 0
    assert all(accelerator is trainer.accelerator for accelerator in calls)


def test_measure_only_pools_training_batches_only_and_skips_ignored_labels(tmp_path):
    # -100 rows never enter the pool; evaluation forward passes do not either
    data = digits_dataset(counts=[16, 10, 6, 4], ignore_every=4)
    evaluation = {"eval_strategy": "steps", "eval_steps": 3, "per_device_eval_batch_size": 8}
    trainer = _plain_trainer(tmp_path, data, digits_dataset(counts=[8, 8, 8, 8]), **evaluation)
    callback = SemScaleCallback.attach(trainer, warmup_steps=2, refresh_steps=3)
    trainer.train()
    labels = torch.as_tensor(data.with_format(None)["labels"])
    expected = torch.bincount(labels[labels >= 0], minlength=4).tolist()
    assert callback.balancer.class_counts.tolist() == expected  # counted from the column, -100 dropped
    assert callback.balancer.pool.counts.tolist() == expected  # each labelled sample once (the newest copy)
    assert callback.balancer.pool.num_seen.tolist() == [2 * n for n in expected]  # 2 epochs, no evaluation batch


def test_measure_only_with_accumulation_and_balancer_options(tmp_path):
    trainer = _plain_trainer(tmp_path, digits_dataset(counts=[16, 10, 6, 4]), gradient_accumulation_steps=2)
    callback = SemScaleCallback.attach(
        trainer, class_counts=[16, 10, 6, 4], warmup_epochs=1.0, pool_max_per_class=5, pool_dtype=torch.float16
    )
    trainer.train()
    pool = callback.balancer.pool
    assert pool.dtype == torch.float16 and pool.capacities.tolist() == [5, 5, 5, 4]
    assert pool.counts.tolist() == [5, 5, 5, 4]
    # 36 samples, batch 4, 2 accumulation steps: 5 optimizer steps per epoch, measured after epoch 1, then per epoch
    logged = [entry["step"] for entry in trainer.state.log_history if "semscale/refreshes" in entry]
    assert logged == [5, 10]


def test_measure_only_logs_per_class_values_by_label_name(tmp_path):
    trainer = _plain_trainer(tmp_path, max_steps=4)
    trainer.model.config.id2label = {0: "zero", 1: "one", 2: "two/2", 3: "three"}
    SemScaleCallback.attach(trainer, warmup_steps=0, refresh_steps=2)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "semscale/refreshes" in entry]
    assert [entry["step"] for entry in logged] == [0, 2, 4]  # warm-up 0: measured once before the first step
    assert {"semscale/scale/zero", "semscale/weight/two_2", "semscale/scale/three"} <= set(logged[-1])
    assert logged[0]["semscale/classes_measured"] == 0.0 and logged[-1]["semscale/classes_measured"] == 4.0


def test_class_counts_of_another_length_than_the_model_fail_at_attach(tmp_path):
    # found only at the first refresh before (an unrelated zip error after the whole warm-up)
    trainer = _plain_trainer(tmp_path)  # tiny_vit has 4 labels
    with pytest.raises(ValueError, match=r"class_counts has 3 entries, but the model has num_labels=4"):
        SemScaleCallback.attach(trainer, class_counts=[10, 10, 10])
    # linked by hand (attach not called): checked when training starts, against the model train() uses
    late = _plain_trainer(tmp_path / "late")
    callback = SemScaleCallback(class_counts=[10, 10, 10])
    callback.trainer = late
    late.add_callback(callback)
    with pytest.raises(ValueError, match=r"class_counts has 3 entries, but the model has num_labels=4"):
        late.train()


def test_a_resumed_run_warms_its_pool_up_again_in_measure_only_mode(tmp_path):
    # measure-only state is not saved with checkpoints: after a resume the warm-up counts from the resume step, or
    # the first refresh would measure the features of one batch
    overrides = {"save_strategy": "steps", "save_steps": 10, "max_steps": 16}
    data = digits_dataset(counts=[12, 12, 12, 12])
    first = _plain_trainer(tmp_path, data, **overrides)
    SemScaleCallback.attach(first, warmup_steps=4, refresh_steps=100)
    first.train()
    resumed = _plain_trainer(tmp_path, data, **overrides)
    SemScaleCallback.attach(resumed, warmup_steps=4, refresh_steps=100)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-10"))
    refreshes = [entry for entry in resumed.state.log_history if "semscale/stage" in entry and entry["step"] > 10]
    assert [entry["step"] for entry in refreshes] == [14]
    assert refreshes[0]["semscale/pool_features"] == 4 * TRAINER_DEFAULTS["per_device_train_batch_size"]


def test_a_run_that_raised_leaves_no_hooks_behind_for_the_next_train(tmp_path):
    # on_train_end does not run when train() raises: the next train() (model_init: a new model) found the old
    # hooks in place, hooked nothing, and measured an empty pool
    class Fail(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise RuntimeError("stopped")

    args = TrainingArguments(output_dir=str(tmp_path), **{**TRAINER_DEFAULTS, "max_steps": 6})
    trainer = Trainer(model_init=lambda: tiny_vit(), args=args, train_dataset=digits_dataset())
    SemScaleCallback.attach(trainer, warmup_steps=3, refresh_steps=100)
    fail = Fail()
    trainer.add_callback(fail)
    with pytest.raises(RuntimeError, match="stopped"):
        trainer.train()
    first = trainer.model
    trainer.remove_callback(fail)
    trainer.train()
    assert trainer.model is not first
    assert not first._forward_hooks and not first._forward_pre_hooks
    refresh = next(entry for entry in trainer.state.log_history if "semscale/pool_features" in entry)
    batch = TRAINER_DEFAULTS["per_device_train_batch_size"]
    assert refresh["step"] == 3 and refresh["semscale/pool_features"] == 3 * batch


def test_a_later_train_on_another_train_set_counts_that_set(tmp_path):
    # the counts of the first train set stayed in force (the pool's capacities included)
    trainer = _plain_trainer(tmp_path, digits_dataset(counts=[12, 6, 4, 2]), max_steps=2)
    callback = SemScaleCallback.attach(trainer, warmup_steps=1, refresh_steps=1)
    trainer.train()
    assert callback.balancer.class_counts.tolist() == [12, 6, 4, 2]
    trainer.train_dataset = digits_dataset(counts=[4, 4, 4, 4])
    trainer.train()
    assert callback.balancer.class_counts.tolist() == [4, 4, 4, 4]
    assert callback.balancer.pool.capacities.tolist() == [4, 4, 4, 4]
