"""Multi-label classification (`problem_type="multi_label_classification"`, multi-hot labels) with `SemScaleTrainer`.

A tiny ViT on the embedded digits with multi-hot labels: the digit's own class plus, for a seeded third of the images,
a second class; so every image enters the pool of each class it is positive for (issue 14).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from _helpers.trainer_utils import (
    TRAINER_DEFAULTS,
    HeadInputs,
    assert_accumulation_equivalence,
    assert_trains_like_trainer,
    losses,
    make_args,
    multi_hot_digits,
    multi_label_vit,
    plain_args,
    tiny_vit,
)
from sklearn.metrics import average_precision_score
from torch.nn import functional as F
from transformers import Trainer, TrainingArguments

from semscale_hf import SemScaleCallback, SemScaleTrainer
from semscale_hf.analysis.evaluation import average_precision
from semscale_hf.core.losses import multi_label_weighted_loss
from semscale_hf.data import count_positives


COUNTS = [12, 6, 4, 2]


def _trainer(tmp_path, **overrides) -> SemScaleTrainer:
    data = multi_hot_digits()
    args = make_args(tmp_path, **{"max_steps": 6, "semscale_warmup_steps": 6, **overrides})
    return SemScaleTrainer(model=multi_label_vit(), args=args, train_dataset=data, eval_dataset=data)


def test_positives_per_class_are_the_class_counts(tmp_path):
    data = multi_hot_digits()
    positives = (np.stack([t.numpy() for t in data["labels"]]) > 0.5).sum(0).tolist()
    assert count_positives(data, 4) == positives and sum(positives) > sum(COUNTS)
    assert _trainer(tmp_path).class_counts == positives


def test_every_example_enters_the_pool_of_each_positive_class(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="semscale_hf.training.trainer"):
        trainer = _trainer(tmp_path, semscale_refresh_steps=2, max_steps=8)
    # the pool's scratch takes a row per (example, class) pair of the micro-batch
    assert "(one per (example, class) pair: 4 per device x 1 process x 4 classes = 16 rows): 1.0 kB" in caplog.text
    trainer.train()
    # one pass over 24 images: every positive (image, class) pair is in the pool, nothing else
    assert trainer.balancer.pool.counts.tolist() == trainer.class_counts
    assert trainer.balancer.num_refreshes == 2 and torch.isfinite(trainer.semantic_scales).all()
    assert not torch.equal(trainer.class_weights, torch.ones(4, dtype=torch.float64))
    assert all(np.isfinite(losses(trainer)))


@pytest.mark.parametrize("mode", ["trainer", "callback"])
def test_every_pooled_feature_is_the_head_input_of_an_example_positive_for_its_class(tmp_path, mode):
    if mode == "trainer":
        trainer = _trainer(tmp_path, max_steps=3)
    else:
        trainer = Trainer(
            model=multi_label_vit(), args=plain_args(tmp_path, max_steps=3), train_dataset=multi_hot_digits()
        )
        callback = SemScaleCallback.attach(trainer, warmup_steps=6)
    seen = HeadInputs(trainer, trainer.model.classifier)
    trainer.train()
    pool = (trainer if mode == "trainer" else callback).balancer.pool
    assert len(seen.features) == 3
    for c in range(4):
        expected = seen.rows_of(c, multi_label=True)
        assert expected.shape[0] > 0, c
        assert torch.equal(pool.class_features(c), expected), c  # same examples, same order


def test_the_loss_weights_each_class_on_both_terms_of_its_binary_problem():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    targets = (torch.rand(6, 4, generator=generator) < 0.4).double()
    weights = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64)
    terms = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    assert multi_label_weighted_loss(logits, targets, weights) == pytest.approx(float((terms * weights).mean()))
    assert multi_label_weighted_loss(logits, targets) == pytest.approx(float(terms.mean()))
    halves = sum(
        multi_label_weighted_loss(logits[s], targets[s], weights, num_items=24) for s in (slice(3), slice(3, 6))
    )
    assert halves == pytest.approx(float((terms * weights).mean()))  # micro-batches add up with the global count


def test_unweighted_multi_label_trains_exactly_like_trainer(tmp_path):
    """With weights 1 the loss is ViT's own BCEWithLogitsLoss: the mean over every (example, class) term."""
    plain = Trainer(
        model=multi_label_vit(), args=plain_args(tmp_path / "plain", max_steps=6), train_dataset=multi_hot_digits()
    )
    assert_trains_like_trainer(_trainer(tmp_path / "ours", semscale_weighting="none"), plain)


def test_the_training_loss_weights_each_class_and_divides_by_the_number_of_terms(tmp_path):
    trainer = _trainer(tmp_path)
    weights = torch.tensor([0.5, 1.0, 1.5, 3.0], dtype=torch.float64)
    trainer.balancer.class_weights, trainer.balancer.stage = weights, "balanced"  # as after a refresh
    batch = {key: torch.stack([trainer.train_dataset[i][key] for i in range(6)]) for key in ("pixel_values", "labels")}
    model = trainer.model.train()
    loss = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(batch["labels"].numel()))
    with torch.no_grad():
        logits = model(pixel_values=batch["pixel_values"]).logits.double()
    terms = F.binary_cross_entropy_with_logits(logits, batch["labels"].double(), reduction="none")
    expected = float((terms * weights).sum() / terms.numel())
    assert expected != pytest.approx(float(terms.mean()), rel=1e-3)  # the weights matter on this batch
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_multi_label_gradient_accumulation_equivalence(tmp_path):
    assert_accumulation_equivalence(_trainer, tmp_path)


def test_evaluation_reports_average_precision_per_class_and_per_shot_group(tmp_path):
    trainer = _trainer(tmp_path, max_steps=4)
    trainer.train()
    metrics = trainer.evaluate()
    prediction = trainer.predict(trainer.eval_dataset)
    for c in range(4):
        expected = average_precision_score(prediction.label_ids[:, c], prediction.predictions[:, c])
        assert metrics[f"eval_ap_class_{c}"] == pytest.approx(expected)
    assert metrics["eval_mean_average_precision"] == pytest.approx(
        np.mean([metrics[f"eval_ap_class_{c}"] for c in range(4)])
    )
    assert "eval_ap_few" in metrics and "eval_accuracy" not in metrics
    batched = _trainer(tmp_path / "b", max_steps=4, batch_eval_metrics=True, per_device_eval_batch_size=5)
    batched.train()
    assert batched.evaluate()["eval_mean_average_precision"] == pytest.approx(metrics["eval_mean_average_precision"])


def test_average_precision_matches_scikit_learn():
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(50, 3, generator=generator)
    targets = (torch.rand(50, 3, generator=generator) < 0.3).float()
    expected = [average_precision_score(targets[:, c].numpy(), scores[:, c].numpy()) for c in range(3)]
    assert average_precision(scores, targets).tolist() == pytest.approx(expected)


@pytest.mark.parametrize("base_loss", ["focal", "ldam"])
def test_multi_label_refuses_losses_it_does_not_define(tmp_path, base_loss):
    with pytest.raises(ValueError, match='semscale_base_loss="ce"'):
        _trainer(tmp_path, semscale_base_loss=base_loss)


def test_integer_multi_hot_labels_train_as_float_ones(tmp_path):
    """The model's problem_type, not the labels' dtype, makes labels multi-hot (0/1 int64 vectors are common)."""
    ints = multi_hot_digits(dtype=np.int64)
    assert ints[0]["labels"].dtype == torch.int64
    trainer = SemScaleTrainer(
        model=multi_label_vit(), args=make_args(tmp_path / "ints", max_steps=6, semscale_warmup_steps=2),
        train_dataset=ints, eval_dataset=ints,
    )  # fmt: skip
    trainer.train()
    floats = _trainer(tmp_path / "floats", max_steps=6, semscale_warmup_steps=2)
    floats.train()
    assert trainer.class_counts == floats.class_counts
    assert trainer.balancer.pool.counts.tolist() == floats.balancer.pool.counts.tolist() == trainer.class_counts
    assert losses(trainer) == pytest.approx(losses(floats), rel=1e-5)
    assert trainer.evaluate()["eval_mean_average_precision"] == pytest.approx(
        floats.evaluate()["eval_mean_average_precision"]
    )

    # measure-only, with a loss of the user's own (ViT's BCEWithLogitsLoss needs float targets)
    def loss(outputs, labels, num_items_in_batch=None):
        return F.binary_cross_entropy_with_logits(outputs.logits, labels.float())

    args = TrainingArguments(output_dir=str(tmp_path / "cb"), **{**TRAINER_DEFAULTS, "max_steps": 6})
    plain = Trainer(model=multi_label_vit(), args=args, train_dataset=ints, compute_loss_func=loss)
    callback = SemScaleCallback.attach(plain, warmup_steps=6)
    plain.train()
    assert callback.balancer.pool.counts.tolist() == count_positives(ints, 4)


def test_the_measure_only_callback_pools_every_positive_class(tmp_path):
    data = multi_hot_digits()
    args = TrainingArguments(output_dir=str(tmp_path), **{**TRAINER_DEFAULTS, "max_steps": 6})
    trainer = Trainer(model=multi_label_vit(), args=args, train_dataset=data)
    callback = SemScaleCallback.attach(trainer, warmup_steps=6)
    trainer.train()
    assert callback.balancer.pool.counts.tolist() == count_positives(data, 4)


def test_multi_hot_labels_for_a_model_not_set_to_multi_label_say_what_to_set(tmp_path):
    with pytest.raises(TypeError, match=r'problem_type = "multi_label_classification"'):
        SemScaleTrainer(model=tiny_vit(), args=make_args(tmp_path), train_dataset=multi_hot_digits())
