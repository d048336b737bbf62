"""`SemScaleTrainer` and `SemScaleCallback` in the everyday workflows of `transformers.Trainer` (issue 11).

Streaming train sets, `model_init` and `hyperparameter_search`, `batch_eval_metrics`, `load_best_model_at_end`, a
second `train()`, a `compute_loss` that pops the labels, user metrics named like the built-in ones, and a resume
without false "missing keys" warnings. Tiny ViTs on the embedded digits, a few seconds each.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest
import torch
from _helpers.trainer_utils import (
    TRAINER_DEFAULTS,
    digits_dataset,
    make_args,
    multi_hot_digits,
    multi_label_vit,
    tiny_vit,
)
from safetensors.torch import load_file
from torch.nn import functional as F
from transformers import (
    AutoModelForImageClassification,
    BatchFeature,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

from semscale_hf import SemScaleCallback, SemScaleTrainer
from semscale_hf.core.balancer import STATE_FILE, SemScaleBalancer
from semscale_hf.core.metric_keys import CLASSES_MEASURED


COUNTS = [12, 6, 4, 2]  # 24 samples, batch 4: 6 steps per epoch


class _Refreshes(TrainerCallback):
    """Records the global step of every refresh (a `semscale/*` log with the count of measured classes)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.measured: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and CLASSES_MEASURED in logs:
            self.steps.append(state.global_step)
            self.measured.append(logs[CLASSES_MEASURED])


@contextlib.contextmanager
def _transformers_warnings():
    """Collects the warnings of the `transformers` loggers (they do not propagate to the root logger)."""
    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    try:
        yield records
    finally:
        library.removeHandler(handler)


# ------------------------------------------------------------------------------------------------ streaming data
@pytest.mark.parametrize("schedule", ["steps", "epochs"])
def test_an_iterable_train_set_trains_with_max_steps_and_class_counts(tmp_path, schedule):
    stream = digits_dataset(counts=COUNTS).to_iterable_dataset()
    options = {"semscale_warmup_steps": 2, "semscale_refresh_steps": 3}
    if schedule == "epochs":  # an epoch of a stream: one pass over the counted samples (24 / 4 = 6 steps)
        options = {"semscale_warmup_steps": None, "semscale_refresh_steps": None, "semscale_warmup_epochs": 1}
    args = make_args(tmp_path, max_steps=12, **options)
    refreshes = _Refreshes()
    trainer = SemScaleTrainer(
        model=tiny_vit(), args=args, train_dataset=stream, class_counts=COUNTS, callbacks=[refreshes]
    )
    trainer.train()
    assert trainer.state.global_step == 12
    assert refreshes.steps == ([2, 5, 8, 11] if schedule == "steps" else [6, 12])
    assert trainer.balancer.pool.counts.tolist() == COUNTS  # 12 steps of 4 = two passes: every slot filled
    assert trainer.balancer.stage == "balanced" and not torch.equal(trainer.class_weights, torch.ones(4).double())


def test_an_epoch_of_a_streamed_multi_label_set_is_not_guessed_from_its_counts(tmp_path):
    # an epoch of a stream was sum(class_counts) / batch: for a multi-label (or token) task the counts are positive
    # labels (tokens), not examples, so the warm-up and refresh ran several times too late
    data = multi_hot_digits()
    counts = np.asarray(data.with_format("numpy")["labels"][:]).sum(axis=0).astype(int).tolist()
    epochs = {"semscale_warmup_steps": None, "semscale_refresh_steps": None, "semscale_warmup_epochs": 1}
    trainer = SemScaleTrainer(
        model=multi_label_vit(),
        args=make_args(tmp_path / "epochs", max_steps=4, **epochs),
        train_dataset=data.to_iterable_dataset(),
        class_counts=counts,
    )
    with pytest.raises(ValueError, match=r"set semscale_warmup_steps and semscale_refresh_steps"):
        trainer.train()
    steps = {"semscale_warmup_steps": 2, "semscale_refresh_steps": 2}
    trainer = SemScaleTrainer(
        model=multi_label_vit(),
        args=make_args(tmp_path / "steps", max_steps=4, **steps),
        train_dataset=data.to_iterable_dataset(),
        class_counts=counts,
    )
    trainer.train()
    assert trainer.balancer.num_refreshes == 2
    # the same for the measure-only callback, in its own argument names
    plain = Trainer(
        model=multi_label_vit(),
        args=TrainingArguments(output_dir=str(tmp_path / "plain"), **{**TRAINER_DEFAULTS, "max_steps": 2}),
        train_dataset=data.to_iterable_dataset(),
    )
    SemScaleCallback.attach(plain, class_counts=counts, refresh_steps=1)
    with pytest.raises(ValueError, match=r"pass warmup_steps and refresh_steps to SemScaleCallback"):
        plain.train()


def test_class_counts_that_contradict_the_train_set_are_reported(tmp_path, caplog):
    # they set the pool's capacities: counts of 1 per class left every class unmeasured, without a word
    data = digits_dataset(counts=COUNTS)
    with caplog.at_level(logging.WARNING, logger="semscale_hf.training.trainer"):
        SemScaleTrainer(model=tiny_vit(), args=make_args(tmp_path), train_dataset=data, class_counts=[1, 1, 1, 1])
    assert f"differ from the labels of the train set ({COUNTS})" in caplog.text
    with pytest.raises(ValueError, match=r"class_counts must be non-negative integers, got \[12.7"):
        SemScaleTrainer(model=tiny_vit(), args=make_args(tmp_path), train_dataset=data, class_counts=[12.7, 6, 4, 2])


def test_an_iterable_train_set_without_class_counts_fails_at_construction_without_reading_it(tmp_path):
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            raise AssertionError("the stream was read")

    for stream in (Stream(), digits_dataset(counts=COUNTS).to_iterable_dataset()):
        with pytest.raises(ValueError, match=r"iterable \(streaming\) dataset .*pass class_counts=\[\.\.\.\]"):
            SemScaleTrainer(model=tiny_vit(), args=make_args(tmp_path, max_steps=4), train_dataset=stream)


def test_the_measure_only_callback_needs_class_counts_for_a_stream(tmp_path):
    stream = digits_dataset(counts=COUNTS).to_iterable_dataset()
    args = TrainingArguments(output_dir=str(tmp_path), **{**TRAINER_DEFAULTS, "max_steps": 2})
    trainer = Trainer(model=tiny_vit(), args=args, train_dataset=stream)
    with pytest.raises(ValueError, match="iterable .*pass class_counts"):  # at attach, before any training
        SemScaleCallback.attach(trainer)
    # a callback given its balancer counts nothing: no class_counts needed
    given = Trainer(model=tiny_vit(), args=args, train_dataset=stream)
    SemScaleCallback.attach(given, balancer=SemScaleBalancer(COUNTS))
    trainer = Trainer(model=tiny_vit(), args=args, train_dataset=stream)
    callback = SemScaleCallback.attach(trainer, class_counts=COUNTS, warmup_steps=1, refresh_steps=1)
    trainer.train()
    assert callback.balancer.num_refreshes == 2 and int(callback.balancer.pool.counts.sum()) == 8


# ---------------------------------------------------------------------------------- model_init and search trials
def test_model_init_hooks_the_model_that_train_builds(tmp_path):
    built = []

    def model_init():
        built.append(tiny_vit(seed=len(built)))
        return built[-1]

    refreshes = _Refreshes()
    args = make_args(tmp_path, max_steps=6)
    trainer = SemScaleTrainer(
        model_init=model_init, args=args, train_dataset=digits_dataset(counts=COUNTS), callbacks=[refreshes]
    )
    trainer.train()
    assert len(built) == 2 and trainer.model is built[1]  # the constructor's model, then the one train() built
    assert trainer.capture.head is built[1].classifier
    assert refreshes.steps == [2, 5] and refreshes.measured[-1] == 4


class _TrialStart(TrainerCallback):
    def __init__(self, trainer) -> None:
        self.trainer, self.seen, self.suggested = trainer, [], []

    def on_train_begin(self, args, state, control, **kwargs):
        balancer = self.trainer.balancer
        self.seen.append((int(balancer.pool.counts.sum()), balancer.stage, balancer.power, args.learning_rate))
        self.suggested.append(dict(state.trial_params))  # what the search drew for this trial


def test_hyperparameter_search_gives_every_trial_a_fresh_pool_and_its_own_semscale_options(tmp_path):
    pytest.importorskip("optuna")
    args = make_args(tmp_path, max_steps=4, eval_strategy="no")
    data = digits_dataset(counts=COUNTS)
    trainer = SemScaleTrainer(model_init=lambda: tiny_vit(), args=args, train_dataset=data, eval_dataset=data)
    trial_start = _TrialStart(trainer)
    trainer.add_callback(trial_start)

    def hp_space(trial):
        return {
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 1e-2, log=True),
            "semscale_power": trial.suggest_categorical("semscale_power", [0.5, -1.0]),
        }

    best = trainer.hyperparameter_search(
        hp_space=hp_space,
        backend="optuna",
        n_trials=2,
        direction="minimize",
        compute_objective=lambda m: m["eval_loss"],
    )
    assert len(trial_start.seen) == 2
    for (pooled, stage, power, learning_rate), params in zip(trial_start.seen, trial_start.suggested, strict=True):
        assert (pooled, stage) == (0, "warmup"), params
        assert power == params["semscale_power"] and learning_rate == params["learning_rate"]
    assert best.run_id is not None and {"learning_rate", "semscale_power"} <= set(best.hyperparameters)


def test_a_search_trial_cleans_up_what_a_killed_save_left_in_its_run_folder(tmp_path, caplog):
    # a trial writes into output_dir/run-N, whose staging folder the train() of output_dir does not look at
    pytest.importorskip("optuna")
    from semscale_hf.training.checkpoints import STAGING_DIR

    args = make_args(tmp_path, max_steps=2, eval_strategy="no", save_strategy="no")
    leftover = tmp_path / "run-0" / STAGING_DIR / "checkpoint-7"  # cut short by a kill in an earlier search
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"")
    data = digits_dataset(counts=COUNTS)
    trainer = SemScaleTrainer(model_init=lambda: tiny_vit(), args=args, train_dataset=data, eval_dataset=data)
    with caplog.at_level(logging.WARNING, logger="semscale_hf.training.trainer"):
        trainer.hyperparameter_search(
            hp_space=lambda trial: {"learning_rate": trial.suggest_float("learning_rate", 1e-3, 1e-2)},
            backend="optuna",
            n_trials=1,
            direction="minimize",
            compute_objective=lambda m: m["eval_loss"],
        )
    assert not (tmp_path / "run-0" / STAGING_DIR).exists()
    assert f"removed {leftover}" in caplog.text


# ----------------------------------------------------------------------------------------------------- evaluation
def test_batch_eval_metrics_gives_the_metrics_of_the_default_path(tmp_path):
    data = digits_dataset(counts=COUNTS)
    results = []
    for batched in (False, True):
        args = make_args(
            tmp_path / str(batched), max_steps=4, batch_eval_metrics=batched, per_device_eval_batch_size=5
        )
        calls = []

        def user_metrics(prediction, compute_result=True, calls=calls):
            calls.append(compute_result)
            return {"user_calls": float(len(calls))} if compute_result else {}

        trainer = SemScaleTrainer(
            model=tiny_vit(), args=args, train_dataset=data, eval_dataset=data, compute_metrics=user_metrics
        )
        trainer.train()
        results.append((trainer.evaluate(), calls))
    (default, default_calls), (batched, batched_calls) = results
    assert default_calls == [True] and batched_calls == [False] * 4 + [True]  # 24 samples in batches of 5
    for key in ("eval_accuracy", "eval_balanced_accuracy", "eval_acc_many", "eval_acc_few", "eval_acc_class_3"):
        assert batched[key] == pytest.approx(default[key], nan_ok=True), key


def test_an_evaluation_that_raised_leaves_no_batches_for_the_next_one(tmp_path):
    # with batch_eval_metrics the batches wait for the last one; an evaluation that raised midway left its batches
    # to be counted into the next evaluation
    data = digits_dataset(counts=COUNTS)
    args = make_args(tmp_path, max_steps=1, batch_eval_metrics=True, per_device_eval_batch_size=5)
    trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=data, eval_dataset=data)
    trainer.train()
    clean = trainer.evaluate()
    original = trainer.compute_metrics.user_metrics

    def fail_on_the_third(prediction, compute_result):
        fail_on_the_third.calls += 1
        if fail_on_the_third.calls == 3:
            raise RuntimeError("stopped")
        return {}

    fail_on_the_third.calls = 0
    trainer.compute_metrics.user_metrics = fail_on_the_third
    with pytest.raises(RuntimeError, match="stopped"):
        trainer.evaluate()
    trainer.compute_metrics.user_metrics = original
    again = trainer.evaluate()
    for key in ("eval_accuracy", "eval_balanced_accuracy", "eval_acc_class_0"):
        assert again[key] == pytest.approx(clean[key]), key


@pytest.mark.parametrize("task", ["image", "token"])
def test_evaluation_without_concatenated_batches_gives_the_default_metrics(tmp_path, task):
    # eval_do_concat_batches=False hands the metrics one array per batch: only the first batch was kept, and the
    # labels stayed a list of batches (a crash)
    from _helpers.token_data import collate, tiny_tagger, token_dataset

    results = []
    for concatenated in (True, False):
        options = {"max_steps": 2, "per_device_eval_batch_size": 5, "eval_do_concat_batches": concatenated}
        args = make_args(tmp_path / f"{task}{concatenated}", **options)
        if task == "image":
            data = digits_dataset(counts=COUNTS)
            trainer = SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=data, eval_dataset=data)
        else:
            data = token_dataset()
            trainer = SemScaleTrainer(
                model=tiny_tagger(), args=args, train_dataset=data, eval_dataset=data, data_collator=collate
            )
        trainer.train()
        results.append(trainer.evaluate())
    concatenated, per_batch = results
    for key in ("eval_accuracy", "eval_balanced_accuracy", "eval_acc_class_1"):
        assert per_batch[key] == pytest.approx(concatenated[key], nan_ok=True), key


def test_a_model_that_returns_tuples_is_evaluated(tmp_path):
    # with return_dict=False the logits are outputs[0]; Trainer reads outputs[1:] as the logits when they come back
    # from compute_loss, so the loss must lead the tuple (evaluation crashed)
    from _helpers.tiny_configs import bert_config
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification

    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor(sum(([c] * n for c, n in enumerate(COUNTS)), []))
    data = Dataset.from_dict(
        {"input_ids": torch.randint(5, 99, (len(labels), 8), generator=generator).tolist(), "labels": labels.tolist()}
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(bert_config(len(COUNTS), return_dict=False))
    trainer = SemScaleTrainer(
        model=model, args=make_args(tmp_path, max_steps=2), train_dataset=data, eval_dataset=data
    )
    trainer.train()
    metrics = trainer.evaluate()
    plain = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "plain"), **TRAINER_DEFAULTS))
    prediction = plain.predict(data)
    accuracy = float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
    assert metrics["eval_accuracy"] == pytest.approx(accuracy)


def test_a_model_whose_forward_takes_no_labels_trains_and_evaluates(tmp_path):
    # Trainer finds no label names in such a forward and passed `labels` to it at evaluation (a TypeError after the
    # whole training); the loss always reads `labels`
    class NoLabels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vit = tiny_vit()
            self.config = self.vit.config

        def forward(self, pixel_values=None):
            return {"logits": self.vit(pixel_values=pixel_values).logits}

    data = digits_dataset(counts=COUNTS)
    trainer = SemScaleTrainer(
        model=NoLabels(), args=make_args(tmp_path, max_steps=2), train_dataset=data, eval_dataset=data
    )
    assert trainer.label_names == ["labels"]
    trainer.train()
    assert "eval_accuracy" in trainer.evaluate()


def test_compute_metrics_passed_by_position_is_kept(tmp_path):
    data = digits_dataset(counts=COUNTS)

    def mine(prediction):
        return {"mine": 1.0}

    trainer = SemScaleTrainer(tiny_vit(), make_args(tmp_path, max_steps=1), None, data, data, None, None, None, mine)
    metrics = trainer.evaluate()
    assert metrics["eval_mine"] == 1.0 and "eval_accuracy" in metrics


def test_batch_eval_metrics_needs_compute_result_in_the_users_function(tmp_path):
    args = make_args(tmp_path, max_steps=2, batch_eval_metrics=True)
    with pytest.raises(ValueError, match="compute_result"):
        SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=digits_dataset(), compute_metrics=lambda p: {})


def test_user_metrics_never_silently_replace_the_built_in_ones(tmp_path, caplog):
    data = digits_dataset(counts=COUNTS)
    trainer = SemScaleTrainer(
        model=tiny_vit(),
        args=make_args(tmp_path, max_steps=2),
        train_dataset=data,
        eval_dataset=data,
        compute_metrics=lambda prediction: {"accuracy": 0.125, "f1": 0.5},
    )
    with caplog.at_level(logging.WARNING, logger="semscale_hf.training.eval_metrics"):
        first, second = trainer.evaluate(), trainer.evaluate()
    assert first["eval_accuracy"] == 0.125 and first["eval_f1"] == 0.5
    assert first["eval_semscale_accuracy"] == second["eval_semscale_accuracy"] != 0.125
    assert caplog.text.count("compute_metrics returned 'accuracy'") == 1  # once, naming both keys
    assert "eval_semscale_accuracy" in caplog.text


def test_compute_loss_func_is_rejected_at_construction(tmp_path):
    with pytest.raises(ValueError, match="semscale_base_loss"):
        SemScaleTrainer(
            model=tiny_vit(),
            args=make_args(tmp_path),
            train_dataset=digits_dataset(),
            compute_loss_func=lambda outputs, labels, num_items_in_batch=None: outputs.logits.sum(),
        )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"problem_type": "regression"}, "problem_type='regression'"),
        ({"num_labels": 1}, "num_labels=1 is regression"),
    ],
)
def test_unsupported_tasks_fail_at_construction(tmp_path, config, message):
    model = tiny_vit()
    for key, value in config.items():
        setattr(model.config, key, value)
    pattern = message.replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=f"SemScaleTrainer .*{pattern}"):
        SemScaleTrainer(model=model, args=make_args(tmp_path), class_counts=COUNTS)
    # the measure-only callback refuses them with the same error, when it is attached
    plain = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), **TRAINER_DEFAULTS))
    with pytest.raises(ValueError, match=f"SemScaleCallback .*{pattern}"):
        SemScaleCallback.attach(plain, class_counts=COUNTS)
    assert not any(isinstance(callback, SemScaleCallback) for callback in plain.callback_handler.callbacks)


# ----------------------------------------------------------------------------------------- best model, resume
def test_load_best_model_at_end_restores_the_whole_best_model_and_its_semscale_state(tmp_path):
    data = digits_dataset(counts=COUNTS)
    scores = iter([3.0, 1.0, 2.0])  # the first evaluation (step 2) is the best

    args = make_args(
        tmp_path,
        max_steps=6,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="score",
        greater_is_better=True,
        semscale_warmup_steps=1,
        semscale_refresh_steps=1,
    )
    trainer = SemScaleTrainer(
        model=tiny_vit(),
        args=args,
        train_dataset=data,
        eval_dataset=data,
        compute_metrics=lambda prediction: {"score": next(scores, 0.0)},
    )
    trainer.train()
    best = tmp_path / "checkpoint-2"
    assert trainer.state.best_model_checkpoint == str(best)
    expected = AutoModelForImageClassification.from_pretrained(best).state_dict()
    actual = trainer.model.state_dict()
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], msg=name)
    best_eval = next(e for e in trainer.state.log_history if e.get("step") == 2 and "eval_loss" in e)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(best_eval["eval_loss"], abs=1e-6)
    torch.testing.assert_close(trainer.class_weights, load_file(best / STATE_FILE)["class_weights"])
    assert trainer.balancer.last_refresh_step == 2


def test_a_resume_that_restores_every_weight_warns_of_no_missing_keys(tmp_path):
    data = digits_dataset(counts=COUNTS)
    args = make_args(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    SemScaleTrainer(model=tiny_vit(), args=args, train_dataset=data).train()
    args = make_args(tmp_path, max_steps=4, save_strategy="no")
    trainer = SemScaleTrainer(model=tiny_vit(seed=1), args=args, train_dataset=data)
    with _transformers_warnings() as warnings:
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert not [w for w in warnings if "missing keys" in w or "unexpected keys" in w], warnings


def test_a_second_train_restarts_the_semscale_schedule(tmp_path):
    refreshes = _Refreshes()
    args = make_args(tmp_path, max_steps=6)
    trainer = SemScaleTrainer(
        model=tiny_vit(), args=args, train_dataset=digits_dataset(counts=COUNTS), callbacks=[refreshes]
    )
    trainer.train()
    assert refreshes.steps == [2, 5]
    trainer.train()  # Trainer starts its step count, optimizer and scheduler anew; so does the schedule
    assert refreshes.steps == [2, 5, 2, 5]
    assert trainer.balancer.num_refreshes == 2 and trainer.balancer.last_refresh_step == 5


# -------------------------------------------------------------------------------------- measure-only callback
class _PopLabelsTrainer(Trainer):
    """The common custom-loss pattern: pop the labels, call the model without them, compute the loss here."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = F.cross_entropy(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss


def _measure(trainer_class, tmp_path, **trainer_options) -> SemScaleCallback:
    args = TrainingArguments(output_dir=str(tmp_path), **{**TRAINER_DEFAULTS, "max_steps": 6})
    data = digits_dataset(counts=COUNTS)
    trainer = trainer_class(model=tiny_vit(), args=args, train_dataset=data, **trainer_options)
    callback = SemScaleCallback.attach(trainer, warmup_steps=2, refresh_steps=3)
    trainer.train()
    return callback


@pytest.mark.parametrize("batch_type", ["dict", "BatchFeature"])  # collators of processors return a BatchFeature
def test_the_callback_records_labels_that_compute_loss_pops(tmp_path, batch_type):
    options = {}
    if batch_type == "BatchFeature":
        options["data_collator"] = lambda rows: BatchFeature(default_data_collator(rows))
    popped = _measure(_PopLabelsTrainer, tmp_path / "pop", **options)
    plain = _measure(Trainer, tmp_path / "plain")
    assert popped.balancer.pool.counts.tolist() == plain.balancer.pool.counts.tolist() == COUNTS
    torch.testing.assert_close(popped.balancer.semantic_scales, plain.balancer.semantic_scales)


class _HeadlessLossTrainer(Trainer):
    """A loss that never runs the classification head: nothing can reach the pool."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return model.vit(inputs["pixel_values"]).last_hidden_state.square().mean()


def test_a_refresh_on_an_empty_pool_warns_once(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="semscale_hf.training.callback"):
        callback = _measure(_HeadlessLossTrainer, tmp_path)
    assert callback.balancer.num_refreshes == 2
    assert caplog.text.count("found an empty feature pool") == 1


def test_a_refresh_before_the_first_step_does_not_warn_of_an_empty_pool(tmp_path, caplog):
    # warm-up 0 measures at step 0, before any batch could reach the pool: no warning, and a genuinely empty pool
    # later still gets its one warning
    for trainer_class, expected in [(Trainer, 0), (_HeadlessLossTrainer, 1)]:
        args = TrainingArguments(output_dir=str(tmp_path), **{**TRAINER_DEFAULTS, "max_steps": 4})
        trainer = trainer_class(model=tiny_vit(), args=args, train_dataset=digits_dataset(counts=COUNTS))
        callback = SemScaleCallback.attach(trainer, warmup_steps=0, refresh_steps=2)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="semscale_hf.training.callback"):
            trainer.train()
        assert callback.balancer.num_refreshes == 3  # steps 0, 2 and 4
        assert caplog.text.count("found an empty feature pool") == expected, trainer_class
