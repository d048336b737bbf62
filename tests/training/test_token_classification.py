"""Token classification (NER-style tags) with `SemScaleTrainer` and the measure-only callback (issue 14).

A tiny BERT tagger from a config on a seeded synthetic tag set with a long tail ("O" most tokens), -100 on special
tokens, sub-words and padding (`tests/_helpers/token_data.py`).
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest
import torch
from _helpers.token_data import TAGS, collate, tiny_tagger, token_dataset
from _helpers.trainer_utils import (
    TRAINER_DEFAULTS,
    HeadInputs,
    assert_accumulation_equivalence,
    assert_trains_like_trainer,
    losses,
    make_args,
    plain_args,
)
from sklearn.metrics import f1_score
from torch.nn import functional as F
from transformers import Trainer, TrainingArguments

from semscale_hf import SemScaleCallback, SemScaleTrainer
from semscale_hf.core.balancer import TOKEN_POOL_MAX_PER_CLASS
from semscale_hf.data import count_labels
from semscale_hf.training.recorder import pool_memory_plan


def _token_counts(data) -> list[int]:
    tags = np.concatenate([np.asarray(row) for row in data["labels"]])
    return np.bincount(tags[tags != -100], minlength=len(TAGS)).tolist()


def _trainer(tmp_path, data=None, **overrides) -> SemScaleTrainer:
    data = token_dataset() if data is None else data
    options = {"max_steps": 6, "semscale_warmup_steps": 6, "remove_unused_columns": False, **overrides}
    return SemScaleTrainer(
        model=tiny_tagger(), args=make_args(tmp_path, **options), train_dataset=data, eval_dataset=data,
        data_collator=collate,
    )  # fmt: skip


def test_class_counts_are_the_labelled_tokens_of_the_label_column(tmp_path):
    data = token_dataset()
    expected = _token_counts(data)
    assert count_labels(data, len(TAGS), ignore_index=-100) == expected
    assert expected[0] > 2 * sum(expected[1:])  # "O" dominates
    trainer = _trainer(tmp_path, data)
    assert trainer.class_counts == expected


def test_a_tagger_trains_with_one_pool_row_per_labelled_token(tmp_path):
    data = token_dataset()
    trainer = _trainer(tmp_path, data, semscale_refresh_steps=2, max_steps=8)
    trainer.train()
    # 6 steps of 4 sentences = one pass: every labelled token entered the pool once, none of the -100 ones
    assert trainer.balancer.pool.num_seen.sum() >= sum(trainer.class_counts)
    assert trainer.balancer.pool.counts.tolist() == trainer.class_counts
    assert trainer.balancer.num_refreshes == 2 and torch.isfinite(trainer.semantic_scales).all()
    assert not torch.equal(trainer.class_weights, torch.ones(len(TAGS), dtype=torch.float64))
    assert all(np.isfinite(losses(trainer)))


@pytest.mark.parametrize("mode", ["trainer", "callback"])
def test_every_pooled_token_feature_is_the_head_input_at_a_token_of_its_tag(tmp_path, mode):
    data = token_dataset()
    if mode == "trainer":
        trainer = _trainer(tmp_path, data, max_steps=2)
    else:
        args = plain_args(tmp_path, max_steps=2, remove_unused_columns=False)
        trainer = Trainer(model=tiny_tagger(), args=args, train_dataset=data, data_collator=collate)
        callback = SemScaleCallback.attach(trainer, warmup_steps=6)
    seen = HeadInputs(trainer, trainer.model.classifier)
    trainer.train()
    pool = (trainer if mode == "trainer" else callback).balancer.pool
    assert len(seen.features) == 2
    for tag in range(len(TAGS)):
        expected = seen.rows_of(tag)
        assert expected.shape[0] > 0, tag
        assert torch.equal(pool.class_features(tag), expected), tag  # same tokens, same order


def test_the_pool_of_a_token_task_is_capped_by_default(tmp_path):
    data = token_dataset()
    counts = [5000, 800, 700, 600, 50]  # as a real NER corpus: millions of "O" tokens would not fit
    trainer = SemScaleTrainer(
        model=tiny_tagger(), args=make_args(tmp_path, remove_unused_columns=False), train_dataset=data,
        class_counts=counts, data_collator=collate,
    )  # fmt: skip
    assert trainer.balancer.pool.capacities.tolist() == [TOKEN_POOL_MAX_PER_CLASS, 800, 700, 600, 50]
    explicit = SemScaleTrainer(
        model=tiny_tagger(),
        args=make_args(tmp_path, remove_unused_columns=False, semscale_pool_max_per_class=100),
        train_dataset=data, class_counts=counts, data_collator=collate,
    )  # fmt: skip
    assert explicit.balancer.pool.capacities.tolist() == [100, 100, 100, 100, 50]


def test_an_unweighted_tagger_trains_exactly_like_trainer(tmp_path):
    """With weights 1 the loss is BERT's own: the mean cross-entropy over the labelled tokens of the batch."""
    data = token_dataset()
    plain = Trainer(
        model=tiny_tagger(), args=plain_args(tmp_path / "plain", max_steps=6, remove_unused_columns=False),
        train_dataset=data, data_collator=collate,
    )  # fmt: skip
    assert_trains_like_trainer(_trainer(tmp_path / "ours", data, semscale_weighting="none"), plain)


def test_the_token_loss_is_the_weighted_sum_over_labelled_tokens_divided_by_their_count(tmp_path):
    trainer = _trainer(tmp_path)
    weights = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0], dtype=torch.float64)
    trainer.balancer.class_weights, trainer.balancer.stage = weights, "balanced"  # as after a refresh
    batch = collate([trainer.train_dataset[i] for i in range(4)])
    model = trainer.model.train()
    count = batch["labels"].ne(-100).sum()
    loss = trainer.compute_loss(model, batch, num_items_in_batch=count)
    trainer.current_gradient_accumulation_steps = 2  # without Trainer's count: this batch's tokens x 2
    loss_without_count = trainer.compute_loss(model, batch)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()
    labels = batch["labels"].reshape(-1)
    kept = labels != -100
    ce = F.cross_entropy(logits.reshape(-1, len(TAGS))[kept], labels[kept], reduction="none")
    expected = float((weights[labels[kept]] * ce).sum() / kept.sum())
    assert expected != pytest.approx(float(ce.mean()), rel=1e-3)  # the weights matter on this batch
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(loss_without_count) == pytest.approx(expected / 2, rel=1e-5)


def _pool_log(caplog, logger: str):
    (record,) = [r for r in caplog.records if r.name == logger and r.getMessage().startswith("feature pool:")]
    return record


def test_the_pool_memory_log_counts_the_scratch_rows_and_the_callback_logs_the_same(tmp_path, caplog):
    data = token_dataset()
    with caplog.at_level(logging.INFO, logger="semscale_hf.training.trainer"):
        trainer = _trainer(tmp_path, data)
    record = _pool_log(caplog, "semscale_hf.training.trainer")
    filled, scratch = sum(trainer.class_counts) * 32 * 4, 4 * 512 * 32 * 4  # float32 rows of dimension 32
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        f"feature pool: {sum(trainer.class_counts)} features of dimension 32 in float32 on cpu, "
        f"{filled / 1e3:.1f} kB once filled, plus scratch rows for the largest gathered micro-batch (one per token: "
        f"4 per device x 1 process x at most 512 tokens = 2048 rows): {scratch / 1e3:.1f} kB, "
        f"{(filled + scratch) / 1e3:.1f} kB in all (a longer token batch than any before copies the pool to grow "
        "them: briefly twice the pool)"
    )
    # the measure-only callback logs the same plan for the same model, data and batch size
    plain = Trainer(
        model=tiny_tagger(), args=plain_args(tmp_path / "plain", max_steps=1, remove_unused_columns=False),
        train_dataset=data, data_collator=collate,
    )  # fmt: skip
    SemScaleCallback.attach(plain, warmup_steps=6)
    with caplog.at_level(logging.INFO, logger="semscale_hf.training.callback"):
        plain.train()
    assert _pool_log(caplog, "semscale_hf.training.callback").getMessage() == record.getMessage()

    pool, model = trainer.balancer.pool, trainer.model
    level, message = pool_memory_plan(pool, 32, model, batch_size=4, num_processes=2, multi_label=False)
    assert "4 per device x 2 processes x at most 512 tokens = 4096 rows" in message

    class UnboundedForTokenClassification(torch.nn.Module):  # no max_position_embeddings: a size per row instead
        config = None

    model = UnboundedForTokenClassification()
    level, message = pool_memory_plan(pool, 32, model, batch_size=4, num_processes=2, multi_label=False)
    assert "(one per token: 4 per device x 2 processes x the padded length): 0.1 kB per gathered row (" in message


def test_a_pool_planned_above_1_gb_is_logged_as_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="semscale_hf.training.trainer"):
        SemScaleTrainer(
            model=tiny_tagger(),
            args=make_args(tmp_path, remove_unused_columns=False, semscale_pool_max_per_class=2_000_000),
            class_counts=[2_000_000] * len(TAGS), data_collator=collate,
        )  # fmt: skip
    record = _pool_log(caplog, "semscale_hf.training.trainer")
    assert record.levelno == logging.WARNING and "1280.0 MB once filled" in record.getMessage()
    assert "lower the pool's cap per class" in record.getMessage()


def test_token_gradient_accumulation_equivalence(tmp_path):
    """4 x 1 == 2 x 2: the loss divides by the labelled tokens of the whole accumulated batch."""
    assert_accumulation_equivalence(_trainer, tmp_path)


def test_token_evaluation_reports_per_tag_accuracy_macro_f1_and_entities(tmp_path):
    trainer = _trainer(tmp_path, max_steps=12)  # trained enough that every score lies strictly between 0 and 1
    trainer.train()
    metrics = trainer.evaluate()
    prediction = trainer.predict(trainer.eval_dataset)
    labels, predicted = prediction.label_ids, prediction.predictions.argmax(-1)
    kept = labels != -100
    assert metrics["eval_accuracy"] == pytest.approx(float((predicted[kept] == labels[kept]).mean()))
    for tag in range(len(TAGS)):
        of_tag = labels == tag
        assert metrics[f"eval_acc_class_{tag}"] == pytest.approx(float((predicted[of_tag] == tag).mean()))
    assert 0.0 < metrics["eval_macro_f1"] < 1.0
    assert metrics["eval_macro_f1"] == pytest.approx(f1_score(labels[kept], predicted[kept], average="macro"))
    entity_keys = ("eval_entity_precision", "eval_entity_recall", "eval_entity_f1")
    if importlib.util.find_spec("seqeval") is None:
        assert not any(key in metrics for key in entity_keys)
    else:
        from seqeval.metrics import f1_score as entity_f1
        from seqeval.metrics import precision_score, recall_score

        names = trainer.model.config.id2label  # one row per sentence: the tag names of its labelled tokens
        rows = [[names[t] for t in row[keep]] for row, keep in zip(labels, kept, strict=True)]
        predicted_rows = [[names[t] for t in row[keep]] for row, keep in zip(predicted, kept, strict=True)]
        expected = [score(rows, predicted_rows) for score in (precision_score, recall_score, entity_f1)]
        assert [metrics[key] for key in entity_keys] == pytest.approx(expected)
        assert 0.0 < metrics["eval_entity_f1"] < 1.0

    batched = _trainer(tmp_path / "batched", max_steps=12, batch_eval_metrics=True, per_device_eval_batch_size=5)
    batched.train()
    batched_metrics = batched.evaluate()
    for key in ("eval_accuracy", "eval_balanced_accuracy", "eval_macro_f1", "eval_acc_class_4", *entity_keys):
        if key in metrics:
            assert batched_metrics[key] == pytest.approx(metrics[key]), key


def test_entity_scores_follow_seqeval():
    seqeval = pytest.importorskip("seqeval.metrics")
    from semscale_hf.analysis.evaluation import entity_scores

    labels = [[1, 2, 0, 3], [0, 3, 4]]
    predicted = [[1, 2, 0, 0], [0, 3, 4]]
    names = [[TAGS[t] for t in row] for row in labels], [[TAGS[t] for t in row] for row in predicted]
    scores = entity_scores(predicted, labels, TAGS)
    assert scores["entity_f1"] == pytest.approx(seqeval.f1_score(*names))
    assert scores["entity_precision"] == 1.0 and scores["entity_recall"] == pytest.approx(2 / 3)
    assert entity_scores(predicted, labels, ["a", "b", "c", "d", "e"]) is None  # not IOB: no entity scores


def test_the_measure_only_callback_pools_tokens(tmp_path):
    data = token_dataset()
    args = TrainingArguments(
        output_dir=str(tmp_path), **{**TRAINER_DEFAULTS, "max_steps": 6, "remove_unused_columns": False}
    )
    trainer = Trainer(model=tiny_tagger(), args=args, train_dataset=data, data_collator=collate)
    callback = SemScaleCallback.attach(trainer, warmup_steps=6)
    trainer.train()
    assert callback.balancer.pool.counts.tolist() == _token_counts(data)
    assert torch.isfinite(callback.balancer.semantic_scales).all()
