import dataclasses
import math
import os

import pytest
import torch
from _helpers.trainer_utils import digits_dataset, losses, make_args, tiny_vit
from safetensors.torch import load_file
from transformers import HfArgumentParser, Trainer, TrainingArguments

from semscale_hf import SemScaleTrainer, SemScaleTrainingArguments, scales_to_weights
from semscale_hf.core.balancer import POOL_FILE, STATE_FILE


# ------------------------------------------------------------------------------------------------ arguments
def test_arguments_parse_from_command_line_and_do_not_collide():
    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    ours = {f.name for f in dataclasses.fields(SemScaleTrainingArguments)} - base
    assert ours and all(name.startswith("semscale_") for name in ours)
    (args,) = HfArgumentParser(SemScaleTrainingArguments).parse_args_into_dataclasses(
        [
            "--output_dir=/tmp/x",
            "--semscale_weighting=effective_number",
            "--semscale_base_loss=focal",
            "--semscale_power=-1",
            "--semscale_refresh_steps=7",
            "--semscale_pool_dtype=bfloat16",
            "--semscale_alpha=0.5",
            "--semscale_center=false",
        ]
    )
    assert args.semscale_weighting == "effective_number" and args.semscale_base_loss == "focal"
    assert args.semscale_power == -1.0 and args.semscale_refresh_steps == 7
    assert args.pool_dtype == torch.bfloat16 and args.scale_alpha == 0.5 and args.semscale_center is False
    assert "semscale_power" in args.to_dict()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"semscale_weighting": "magic"}, "semscale_weighting"),
        ({"semscale_momentum": 1.0}, "semscale_momentum"),
        ({"semscale_refresh_steps": 0}, "semscale_refresh_steps"),
        ({"semscale_weight_min": 1.5}, "semscale_weight_min"),
        ({"semscale_alpha": "-2"}, "semscale_alpha"),
        ({"semscale_pool_dtype": "int8"}, "semscale_pool_dtype"),
        # accepted before, then an OverflowError at train(), a NaN loss, or silently no smoothing
        ({"semscale_warmup_epochs": float("inf")}, "semscale_warmup_epochs"),
        ({"semscale_focal_gamma": float("nan")}, "semscale_focal_gamma"),
        ({"semscale_ldam_max_margin": float("nan")}, "semscale_ldam_max_margin"),
        ({"semscale_base_loss": "focal", "label_smoothing_factor": 0.1}, "label_smoothing_factor"),
        ({"semscale_base_loss": "ldam", "label_smoothing_factor": 0.1}, "label_smoothing_factor"),
    ],
)
def test_arguments_are_validated(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        SemScaleTrainingArguments(output_dir=str(tmp_path), **overrides)


# -------------------------------------------------------------------------------------------------- training
def test_unweighted_ce_trains_exactly_like_trainer(tmp_path):
    data = digits_dataset()
    plain_args = TrainingArguments(
        output_dir=str(tmp_path / "plain"),
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        num_train_epochs=1,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        lr_scheduler_type="constant",
    )
    ours_args = make_args(tmp_path / "ours", num_train_epochs=1, semscale_weighting="none")
    plain = Trainer(model=tiny_vit(), args=plain_args, train_dataset=data)
    plain.train()
    ours = SemScaleTrainer(model=tiny_vit(), args=ours_args, train_dataset=data)
    ours.train()
    assert len(losses(plain)) == 12
    assert losses(ours) == pytest.approx(losses(plain), rel=1e-5)
    for a, b in zip(plain.model.parameters(), ours.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_three_stages_weights_follow_the_pool_and_change_only_at_step_boundaries(tmp_path):
    data = digits_dataset(counts=[20, 12, 8, 4])
    # 44 samples, batch 4: 11 steps per epoch; refreshes at steps 2, 5, ..., 32, the last step
    trainer = SemScaleTrainer(model=tiny_vit(), args=make_args(tmp_path, max_steps=32), train_dataset=data)
    assert trainer.balancer.stage == "warmup" and torch.equal(
        trainer.class_weights, torch.ones(4, dtype=torch.float64)
    )
    seen = []
    original = trainer.balancer.loss_weights

    def spy(*args, **kwargs):
        weights = original(*args, **kwargs)
        seen.append((trainer.state.global_step, None if weights is None else weights.clone()))
        return weights

    trainer.balancer.loss_weights = spy
    trainer.train()
    # warm-up (steps 0-1) is unweighted, later steps are weighted
    assert all(w is None for step, w in seen if step < 2) and all(w is not None for step, w in seen if step >= 2)
    # weights are constant between refreshes, which happen at steps 2, 5, 8, ...
    for (step_a, w_a), (step_b, w_b) in zip(seen, seen[1:], strict=False):
        if w_a is not None and step_a == step_b:
            assert torch.equal(w_a, w_b)
    # the final weights are exactly what the pool's scales give
    scales = trainer.balancer.measure()
    torch.testing.assert_close(trainer.semantic_scales, scales)
    torch.testing.assert_close(trainer.class_weights, scales_to_weights(scales))
    assert trainer.balancer.pool.counts.tolist() == [20, 12, 8, 4]  # capacity = training count
    logged = [entry for entry in trainer.state.log_history if "semscale/weight_max" in entry]
    assert [entry["step"] for entry in logged] == list(range(2, 33, 3))
    assert {"semscale/scale_min", "semscale/imbalance_ratio", "semscale/stage", "semscale/weight/LABEL_3"} <= set(
        logged[0]
    )


@pytest.mark.parametrize("base_loss", ["ce", "focal", "ldam"])
def test_gradient_accumulation_equivalence(tmp_path, base_loss):
    """Per-device batch 4 x accumulation 1 == 2 x 2: same losses, weights and parameters."""
    data = digits_dataset(counts=[16, 10, 6, 4])
    args_a = make_args(tmp_path / "a", semscale_base_loss=base_loss, learning_rate=1e-3)
    args_b = make_args(
        tmp_path / "b",
        semscale_base_loss=base_loss,
        learning_rate=1e-3,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
    )
    a = SemScaleTrainer(model=tiny_vit(), args=args_a, train_dataset=data)
    a.train()
    b = SemScaleTrainer(model=tiny_vit(), args=args_b, train_dataset=data)
    b.train()
    assert a.balancer.num_refreshes >= 3
    assert losses(a) == pytest.approx(losses(b), rel=1e-4)
    torch.testing.assert_close(a.class_weights, b.class_weights, rtol=1e-4, atol=1e-6)
    assert not torch.equal(a.class_weights, torch.ones(4, dtype=torch.float64))
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        # Adam normalises near-zero gradients, so float32 rounding noise shows up at ~1e-5 in a few entries
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-4)


def test_ignored_labels_leave_accumulation_equivalence_intact(tmp_path):
    """-100 labels make micro-batches hold different item counts: the loss must still divide by the global count."""
    data = digits_dataset(counts=[16, 10, 6, 4], ignore_every=3)
    args_a = make_args(tmp_path / "a", learning_rate=1e-3)
    args_b = make_args(
        tmp_path / "b", learning_rate=1e-3, per_device_train_batch_size=2, gradient_accumulation_steps=2
    )
    a = SemScaleTrainer(model=tiny_vit(), args=args_a, train_dataset=data)
    a.train()
    b = SemScaleTrainer(model=tiny_vit(), args=args_b, train_dataset=data)
    b.train()
    assert sum(a.class_counts) == 24 and int(a.balancer.pool.counts.sum()) == 24
    assert losses(a) == pytest.approx(losses(b), rel=1e-4)
    torch.testing.assert_close(a.class_weights, b.class_weights, rtol=1e-4, atol=1e-6)


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path):
    data = digits_dataset(counts=[16, 10, 6, 4])
    full_args = make_args(tmp_path / "full", num_train_epochs=3, save_strategy="steps", save_steps=4)
    resumed_args = make_args(tmp_path / "resumed", num_train_epochs=3, save_strategy="steps", save_steps=4)
    full = SemScaleTrainer(model=tiny_vit(), args=full_args, train_dataset=data)
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-4"
    assert (checkpoint / STATE_FILE).is_file() and (checkpoint / POOL_FILE).is_file()
    pool_state = load_file(str(checkpoint / POOL_FILE))
    assert int(pool_state["num_seen"].sum()) == 4 * 4  # 4 steps of batch 4

    resumed = SemScaleTrainer(model=tiny_vit(seed=123), args=resumed_args, train_dataset=data)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    torch.testing.assert_close(resumed.class_weights, full.class_weights, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(resumed.semantic_scales, full.semantic_scales, rtol=1e-6, atol=1e-9)
    assert resumed.balancer.num_refreshes == full.balancer.num_refreshes
    assert losses(resumed) == pytest.approx(losses(full), rel=1e-5)  # the history includes the first 4 steps


def test_final_save_holds_small_state_without_pool(tmp_path):
    trainer = SemScaleTrainer(model=tiny_vit(), args=make_args(tmp_path), train_dataset=digits_dataset())
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    assert (tmp_path / "final" / STATE_FILE).is_file() and not (tmp_path / "final" / POOL_FILE).exists()
    state = load_file(str(tmp_path / "final" / STATE_FILE))
    torch.testing.assert_close(state["class_weights"], trainer.class_weights)


def test_evaluation_reports_per_class_and_shot_groups(tmp_path):
    data = digits_dataset(counts=[30, 12, 8, 4])
    trainer = SemScaleTrainer(
        model=tiny_vit(), args=make_args(tmp_path, num_train_epochs=1), train_dataset=data, eval_dataset=data
    )
    metrics = trainer.evaluate()
    assert {"eval_accuracy", "eval_balanced_accuracy", "eval_acc_many", "eval_acc_medium", "eval_acc_few"} <= set(
        metrics
    )
    assert {f"eval_acc_class_{c}" for c in range(4)} <= set(metrics)
    assert math.isnan(metrics["eval_acc_many"])  # no class has more than 100 training samples
    assert 0.0 <= metrics["eval_acc_few"] <= 1.0


# ------------------------------------------------------------------------------------------------- bad input
def test_nan_features_stop_training_with_step_and_keep_checkpoints(tmp_path):
    args = make_args(tmp_path, save_strategy="steps", save_steps=2, num_train_epochs=1)
    trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=digits_dataset())

    def poison(module, inputs):
        if trainer.state.global_step >= 3:
            return (inputs[0] * float("nan"),)

    trainer.model.vit.layernorm.register_forward_pre_hook(poison)
    with pytest.raises(FloatingPointError, match="global step 3"):
        trainer.train()
    assert (tmp_path / "checkpoint-2" / "model.safetensors").is_file()
    assert (tmp_path / "checkpoint-2" / STATE_FILE).is_file()


def test_labels_out_of_range_raise(tmp_path):
    data = digits_dataset(num_labels=5, num_samples=40)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        SemScaleTrainer(model=tiny_vit(num_labels=4), args=make_args(tmp_path), train_dataset=data)


def test_class_counts_mismatch_and_missing_head_raise(tmp_path):
    args = make_args(tmp_path)
    with pytest.raises(ValueError, match="class_counts has 3 entries but the model has num_labels=4"):
        SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=digits_dataset(), class_counts=[1, 2, 3])
    model = tiny_vit()
    model.classifier = torch.nn.Identity()
    with pytest.raises(ValueError, match="out_features"):
        SemScaleTrainer(model=model, args=args, train_dataset=digits_dataset())
    with pytest.raises(TypeError, match="SemScaleTrainingArguments"):
        SemScaleTrainer(model=tiny_vit(), args=TrainingArguments(output_dir=str(tmp_path)))


def test_class_absent_from_training_set_gets_largest_weight(tmp_path, caplog):
    data = digits_dataset(counts=[16, 10, 6, 0])
    trainer = SemScaleTrainer(model=tiny_vit(), args=make_args(tmp_path), train_dataset=data)
    trainer.train()
    weights = trainer.class_weights
    assert math.isnan(float(trainer.semantic_scales[3]))
    assert torch.isfinite(weights).all() and float(weights[3]) == float(weights.max())


def test_plain_trainer_checkpoint_resumes_with_warning(tmp_path):
    data = digits_dataset()
    plain_args = TrainingArguments(
        output_dir=str(tmp_path / "plain"),
        max_steps=2,
        save_strategy="steps",
        save_steps=2,
        report_to=[],
        use_cpu=True,
    )
    ours_args = make_args(tmp_path / "ours", max_steps=4)
    Trainer(model=tiny_vit(), args=plain_args, train_dataset=data).train()
    trainer = SemScaleTrainer(model=tiny_vit(), args=ours_args, train_dataset=data)
    trainer.train(resume_from_checkpoint=str(tmp_path / "plain" / "checkpoint-2"))
    assert trainer.balancer.num_refreshes >= 1
    assert not os.path.exists(tmp_path / "ours" / POOL_FILE)
