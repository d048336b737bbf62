"""The model card of a trainer: a `SemScaleTrainer` read into [`SemScaleCardData`], written as `README.md` + plot.

The trainer is read through its attributes only (`args`, `model`, `balancer`, `state`, `semscale_callback`, the
datasets), so this module imports no Trainer code.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard

from ..core import metric_keys as keys
from ..core.capture import is_multi_label
from .card import PLOT_FILE, SemScaleCardData


__all__ = ["card_data_from_trainer", "class_accuracies_from_log_history", "infer_task", "write_model_card"]

_SPEED_METRICS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "model_preparation_time")

# `datasets` builder names that are file formats, not Hub datasets (as transformers' TrainingSummary skips them).
_GENERIC_BUILDERS = {None, "", "csv", "json", "pandas", "parquet", "text", "arrow", "imagefolder", "audiofolder"}


def card_data_from_trainer(
    trainer: Any,
    *,
    language: str | list[str] | None = None,
    license: str | None = None,
    tags: str | list[str] | None = None,
    model_name: str | None = None,
    finetuned_from: str | None = None,
    tasks: str | list[str] | None = None,
    dataset_tags: str | list[str] | None = None,
    dataset: str | list[str] | None = None,
    dataset_args: str | list[str] | None = None,
) -> SemScaleCardData:
    """Reads the card data of a `SemScaleTrainer` (the arguments are those of `Trainer.create_model_card`).

    Defaults: `model_name` from `hub_model_id` or `output_dir`; `finetuned_from` from the model's
    `config._name_or_path` unless it is a local folder; the task from the model class; the dataset from
    `dataset_tags` or `dataset`, else from the evaluation (or training) dataset's builder name when it is a Hub
    dataset.
    """
    args, model, balancer = trainer.args, trainer.model, trainer.balancer
    if model_name is None:
        hub_id = getattr(trainer, "hub_model_id", None) or args.hub_model_id
        model_name = hub_id.split("/")[-1] if hub_id else Path(args.output_dir).absolute().name
    config = getattr(model, "config", None)
    if finetuned_from is None:
        name_or_path = getattr(config, "_name_or_path", None)
        if name_or_path and not os.path.isdir(name_or_path):
            finetuned_from = name_or_path
    task = _first(tasks) if tasks is not None else infer_task(model)
    dataset_ids = _as_list(dataset_tags) or _as_list(dataset)
    dataset_name = _first(dataset)
    dataset_config, dataset_split = _first(dataset_args), None
    # with a dict of evaluation sets Trainer logs `eval_<name>_*` for each: the card shows the first one
    eval_sets = trainer.eval_dataset if isinstance(trainer.eval_dataset, dict) and trainer.eval_dataset else None
    eval_set = next(iter(eval_sets)) if eval_sets else None
    prefix = f"{keys.EVAL_PREFIX}{eval_set}_" if eval_set is not None else keys.EVAL_PREFIX
    other_prefixes = [f"{keys.EVAL_PREFIX}{name}_" for name in eval_sets or () if name != eval_set]
    one_dataset = eval_sets[eval_set] if eval_sets else trainer.eval_dataset
    if one_dataset is None:
        one_dataset = trainer.train_dataset
    builder = getattr(one_dataset, "builder_name", None)
    if not dataset_ids and builder not in _GENERIC_BUILDERS:
        dataset_ids = [builder]
        dataset_config = dataset_config or getattr(one_dataset, "config_name", None)
    if dataset_ids and getattr(one_dataset, "split", None) is not None:
        dataset_split = str(one_dataset.split)

    num_classes = balancer.num_classes
    multi_label = is_multi_label(model)
    class_key = keys.class_average_precision if multi_label else keys.class_accuracy
    class_metric = "average precision" if multi_label else "accuracy"
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label.get(c, c)) for c in range(num_classes)]
    evaluation = _last_evaluation(trainer.state.log_history, prefix)
    eval_metrics = {}
    if evaluation is not None:
        eval_metrics = {
            key.removeprefix(prefix): float(value)
            for key, value in evaluation.items()
            if key.startswith(prefix)
            # "eval_val_" also begins the keys of a set named "val_hard"
            and not any(key.startswith(other) and len(other) > len(prefix) for other in other_prefixes)
            and isinstance(value, (int, float))
            and not key.startswith(prefix + keys.class_accuracy(""))
            and not key.startswith(prefix + keys.class_average_precision(""))
            and key.removeprefix(prefix) not in _SPEED_METRICS
        }
    callback = getattr(trainer, "semscale_callback", None)
    state = {
        "stage": balancer.stage,
        "refreshes": balancer.num_refreshes,
        "last refresh at step": balancer.last_refresh_step,
        "global step": trainer.state.global_step,
        "features in the pool": int(balancer.pool.counts.sum()),
    }
    if callback is not None and trainer.state.global_step > 0:
        state["warm-up steps"] = callback.warmup_total
        state["refresh every (steps)"] = callback.refresh_every
    from transformers.modelcard import extract_hyperparameters_from_trainer

    return SemScaleCardData(
        model_name=model_name,
        class_names=names,
        class_counts=[int(c) for c in balancer.class_counts.tolist()],
        semantic_scales=[float(s) for s in balancer.semantic_scales.tolist()],
        class_weights=[float(w) for w in balancer.class_weights.tolist()],
        class_accuracies=class_accuracies_from_log_history(
            trainer.state.log_history, num_classes, key=class_key, prefix=prefix
        ),
        class_metric=class_metric,
        eval_metrics=eval_metrics,
        eval_step=None if evaluation is None else evaluation.get("step"),
        eval_set=eval_set,
        semscale_settings={
            f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.name.startswith("semscale_")
        },
        training_state=state,
        hyperparameters=extract_hyperparameters_from_trainer(trainer),
        task=task,
        repo_id=getattr(trainer, "hub_model_id", None) or args.hub_model_id,
        base_model=finetuned_from,
        datasets=dataset_ids or None,
        dataset_name=dataset_name,
        dataset_config=dataset_config,
        dataset_split=dataset_split,
        language=language,
        license=license,
        tags=_as_list(tags) + list(getattr(model, "model_tags", None) or []),
    )


def write_model_card(trainer: Any, output_dir: str | os.PathLike | None = None, **card_kwargs: Any) -> ModelCard:
    """Writes the model card (`README.md`) and, when it can be drawn, the plot (`PLOT_FILE`) into `output_dir`.

    Args:
        trainer (`SemScaleTrainer`):
            The trainer to report on.
        output_dir (`str` or `os.PathLike`, *optional*):
            Folder to write to (defaults to `trainer.args.output_dir`).
        card_kwargs:
            The arguments of [`card_data_from_trainer`] (those of `Trainer.create_model_card`).

    Returns:
        `huggingface_hub.ModelCard`: the card written.
    """
    output_dir = Path(output_dir if output_dir is not None else trainer.args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    card_data = card_data_from_trainer(trainer, **card_kwargs)
    plot_path = output_dir / PLOT_FILE
    if card_data.plot_skip_reason() is None:
        card_data.save_plot(plot_path)
        plot_file = PLOT_FILE
    else:
        plot_path.unlink(missing_ok=True)  # an older plot would contradict the card's note
        plot_file = None
    card = card_data.render(plot_file=plot_file)
    card.save(output_dir / "README.md")
    return card


def infer_task(model: torch.nn.Module) -> str | None:
    """Hub task of a classification model from its class: `"image-classification"`, `"text-classification"` (sequence
    classification), `"audio-classification"`, `"token-classification"`, or `None` when the class says nothing."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
    )

    name = type(model).__name__
    mappings = {
        "image-classification": MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        "text-classification": MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        "audio-classification": MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES,
        "token-classification": MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
    }
    for task, mapping in mappings.items():
        classes = {c for value in mapping.values() for c in ((value,) if isinstance(value, str) else value)}
        if name in classes:
            return task
    # a user's subclass or a model outside the Auto mappings: go by the naming convention
    for suffix, task in (
        ("ForImageClassification", "image-classification"),
        ("ForSequenceClassification", "text-classification"),
        ("ForAudioClassification", "audio-classification"),
        ("ForTokenClassification", "token-classification"),
    ):
        if name.endswith(suffix):
            return task
    return None


def class_accuracies_from_log_history(
    log_history: list[dict[str, Any]],
    num_classes: int,
    *,
    key: Callable[[int], str] = keys.class_accuracy,
    prefix: str = keys.EVAL_PREFIX,
) -> list[float] | None:
    """Per-class accuracy of the last evaluation that logged `eval_acc_class_<c>` for every class, else `None`.

    `SemScaleTrainer.evaluate()` logs these keys when there are at most `semscale_log_per_class_max` classes. `key`
    picks another per-class metric, e.g. `metric_keys.class_average_precision` (multi-label); `prefix` another
    evaluation set (`"eval_<name>_"` for a dict of evaluation sets).
    """
    wanted = [prefix + key(c) for c in range(num_classes)]
    for entry in reversed(log_history):
        if all(key in entry for key in wanted):
            return [float(entry[key]) for key in wanted]
    return None


def _last_evaluation(log_history: list[dict[str, Any]], prefix: str) -> dict[str, Any] | None:
    for entry in reversed(log_history):
        if f"{prefix}loss" in entry or f"{prefix}accuracy" in entry:
            return entry
    return None


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _first(value: str | list[str] | None) -> str | None:
    values = _as_list(value)
    return values[0] if values else None
