"""Model cards for `SemScaleTrainer`: Hub metadata, the semantic-scale report and the scale-vs-accuracy plot.

[`SemScaleReport`] holds what a card shows as plain values; `SemScaleReport.from_trainer` reads them from a trainer
(final scales and weights, the last evaluation's metrics from `trainer.state.log_history`, the `semscale_*` settings).
`SemScaleReport.render` fills the Jinja template `semscale_model_card.md` through `huggingface_hub.ModelCard` and does
no I/O besides reading the template; [`write_model_card`] writes `README.md` and the plot into a folder, which is what
`SemScaleTrainer` does before every push to the Hub.

The template is kept in the repository's `model_cards/` folder and shipped in the wheel as
`semscale_hf/templates/semscale_model_card.md` (hatchling `force-include`); an editable install reads it from
`model_cards/`. The plot needs matplotlib (extra `plots`); without it the card says why the image is missing.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .evaluation import shot_groups
from .imbalance import scale_imbalance
from .plots import plot_scale_vs_accuracy
from .report import ClassReport, SemanticScaleReport


__all__ = [
    "CITATION",
    "PLOT_FILE",
    "TEMPLATE_NAME",
    "SemScaleReport",
    "class_accuracies_from_log_history",
    "infer_task",
    "read_template",
    "write_model_card",
]

TEMPLATE_NAME = "semscale_model_card.md"
PLOT_FILE = "semscale_scale_vs_accuracy.png"
PAPER_URL = "https://arxiv.org/abs/2212.14613"
CITATION = """@inproceedings{ma2023delving,
  title     = {Delving into Semantic Scale Imbalance},
  author    = {Ma, Yanbiao and Jiao, Licheng and Liu, Fang and Li, Yuxin and Yang, Shuyuan and Liu, Xu},
  booktitle = {The Eleventh International Conference on Learning Representations (ICLR)},
  year      = {2023},
  eprint    = {2212.14613},
  archivePrefix = {arXiv},
  url       = {https://openreview.net/forum?id=07tc5kKRIo}
}"""
BASE_TAGS = ("semscale", "long-tailed", "generated_from_trainer", "arxiv:2212.14613")

# Task of the Hub metadata -> (name in model-index, Auto class for the usage snippet).
_TASKS = {
    "image-classification": ("Image Classification", "AutoModelForImageClassification"),
    "text-classification": ("Text Classification", "AutoModelForSequenceClassification"),
    "audio-classification": ("Audio Classification", "AutoModelForAudioClassification"),
}
# Summary metrics of `SemScaleTrainer.evaluate()` (without the `eval_` prefix): card label and model-index type.
_EVAL_METRICS = {
    "accuracy": ("Accuracy", "accuracy"),
    "balanced_accuracy": ("Balanced accuracy", "balanced_accuracy"),
    "acc_many": ("Many-shot accuracy", "accuracy"),
    "acc_medium": ("Medium-shot accuracy", "accuracy"),
    "acc_few": ("Few-shot accuracy", "accuracy"),
}
_SPEED_METRICS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "model_preparation_time")
# `datasets` builder names that are file formats, not Hub datasets (as transformers' TrainingSummary skips them).
_GENERIC_BUILDERS = {None, "", "csv", "json", "pandas", "parquet", "text", "arrow", "imagefolder", "audiofolder"}
_MAX_TABLE_ROWS = 100


def read_template() -> str:
    """The Jinja text of the model card template.

    Read from the installed package (`semscale_hf/templates/`, present in a wheel install) or, in an editable install
    or a source checkout, from the repository's `model_cards/` folder.

    Raises:
        `FileNotFoundError`: if neither location holds the template (a broken install).
    """
    packaged = resources.files("semscale_hf") / "templates" / TEMPLATE_NAME
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source = Path(__file__).resolve().parent.parent / "model_cards" / TEMPLATE_NAME
    if source.is_file():
        return source.read_text(encoding="utf-8")
    raise FileNotFoundError(
        f"the model card template {TEMPLATE_NAME} is neither in the installed package (semscale_hf/templates/) nor "
        f"in a source checkout ({source}); reinstall semscale-hf"
    )


def infer_task(model: torch.nn.Module) -> str | None:
    """Hub task of a classification model from its class: `"image-classification"`, `"text-classification"` (sequence
    classification), `"audio-classification"`, or `None` when the class says nothing."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    name = type(model).__name__
    mappings = {
        "image-classification": MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        "text-classification": MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        "audio-classification": MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES,
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
    ):
        if name.endswith(suffix):
            return task
    return None


def class_accuracies_from_log_history(log_history: list[dict[str, Any]], num_classes: int) -> list[float] | None:
    """Per-class accuracy of the last evaluation that logged `eval_acc_class_<c>` for every class, else `None`.

    `SemScaleTrainer.evaluate()` logs these keys when there are at most `semscale_log_per_class_max` classes.
    """
    keys = [f"eval_acc_class_{c}" for c in range(num_classes)]
    for entry in reversed(log_history):
        if all(key in entry for key in keys):
            return [float(entry[key]) for key in keys]
    return None


def _last_evaluation(log_history: list[dict[str, Any]]) -> dict[str, Any] | None:
    for entry in reversed(log_history):
        if "eval_loss" in entry or "eval_accuracy" in entry:
            return entry
    return None


@dataclass
class SemScaleReport:
    """Everything a `SemScaleTrainer` model card shows, as plain values (no trainer needed to render).

    Args:
        model_name (`str`): title of the card and `model-index` name.
        class_names (`list[str]`): one name per class (`config.id2label`).
        class_counts (`list[int]`): training samples per class.
        semantic_scales (`list[float]`): final scales, NaN for classes never measured.
        class_weights (`list[float]`): final class weights of the loss.
        class_accuracies (`list[float]`, *optional*): per-class accuracy of the last evaluation (NaN: no examples).
        eval_metrics (`dict[str, float]`, *optional*): the last evaluation's metrics without the `eval_` prefix.
        eval_step (`int`, *optional*): global step of that evaluation.
        semscale_settings (`dict[str, Any]`, *optional*): the `semscale_*` training arguments.
        training_state (`dict[str, Any]`, *optional*): stage, refreshes, schedule at the end of training.
        hyperparameters (`dict[str, Any]`, *optional*): general training hyperparameters.
        task (`str`, *optional*): Hub task, e.g. `"image-classification"` (see [`infer_task`]).
        repo_id (`str`, *optional*): Hub repository for the usage snippet (defaults to `model_name`).
        base_model (`str`, *optional*): Hub id of the model fine-tuned from.
        datasets (`list[str]`, *optional*): Hub dataset ids; the first one labels the `model-index` results.
        dataset_name (`str`, *optional*): display name of the evaluation dataset (defaults to the first id).
        dataset_config (`str`, *optional*), dataset_split (`str`, *optional*): of the evaluation dataset.
        language, license (`str`, *optional*): card metadata.
        tags (`list[str]`, *optional*): extra tags; `semscale`, `long-tailed`, the task and the paper are always set.
        framework_versions (`dict[str, str]`, *optional*): library versions (defaults to the installed ones).
    """

    model_name: str
    class_names: list[str]
    class_counts: list[int]
    semantic_scales: list[float]
    class_weights: list[float]
    class_accuracies: list[float] | None = None
    eval_metrics: dict[str, float] = field(default_factory=dict)
    eval_step: int | None = None
    semscale_settings: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    task: str | None = "image-classification"
    repo_id: str | None = None
    base_model: str | None = None
    datasets: list[str] | None = None
    dataset_name: str | None = None
    dataset_config: str | None = None
    dataset_split: str | None = None
    language: str | list[str] | None = None
    license: str | None = None
    tags: list[str] = field(default_factory=list)
    framework_versions: dict[str, str] = field(default_factory=lambda: _framework_versions())

    def __post_init__(self) -> None:
        lengths = {
            name: len(getattr(self, name))
            for name in ("class_names", "class_counts", "semantic_scales", "class_weights", "class_accuracies")
            if getattr(self, name) is not None
        }
        if len(set(lengths.values())) != 1:
            raise ValueError(f"the per-class lists must have one entry per class, got lengths {lengths}")
        if self.task is not None and self.task not in _TASKS:
            raise ValueError(f"task must be one of {tuple(_TASKS)} or None, got {self.task!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ------------------------------------------------------------------------------------------ from a trainer
    @classmethod
    def from_trainer(
        cls,
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
    ) -> SemScaleReport:
        """Reads a report from a `SemScaleTrainer` (the arguments are those of `Trainer.create_model_card`).

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
        one_dataset = trainer.eval_dataset if trainer.eval_dataset is not None else trainer.train_dataset
        builder = getattr(one_dataset, "builder_name", None)
        if not dataset_ids and builder not in _GENERIC_BUILDERS:
            dataset_ids = [builder]
            dataset_config = dataset_config or getattr(one_dataset, "config_name", None)
        if dataset_ids and getattr(one_dataset, "split", None) is not None:
            dataset_split = str(one_dataset.split)

        num_classes = balancer.num_classes
        id2label = getattr(config, "id2label", None) or {}
        names = [str(id2label.get(c, c)) for c in range(num_classes)]
        evaluation = _last_evaluation(trainer.state.log_history)
        eval_metrics = {}
        if evaluation is not None:
            eval_metrics = {
                key.removeprefix("eval_"): float(value)
                for key, value in evaluation.items()
                if key.startswith("eval_")
                and isinstance(value, (int, float))
                and not key.startswith("eval_acc_class_")
                and key.removeprefix("eval_") not in _SPEED_METRICS
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

        return cls(
            model_name=model_name,
            class_names=names,
            class_counts=[int(c) for c in balancer.class_counts.tolist()],
            semantic_scales=[float(s) for s in balancer.semantic_scales.tolist()],
            class_weights=[float(w) for w in balancer.class_weights.tolist()],
            class_accuracies=class_accuracies_from_log_history(trainer.state.log_history, num_classes),
            eval_metrics=eval_metrics,
            eval_step=None if evaluation is None else evaluation.get("step"),
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

    # ------------------------------------------------------------------------------------------------ metadata
    def card_data(self) -> ModelCardData:
        """Hub metadata: tags, task, datasets, metrics and, when a task and a dataset are known, `model-index`."""
        tags = _unique([*BASE_TAGS[:2], *([self.task] if self.task else []), *BASE_TAGS[2:], *self.tags])
        eval_results = None
        if self.task is not None and self.datasets:
            task_name = _TASKS[self.task][0]
            eval_results = [
                EvalResult(
                    task_type=self.task,
                    task_name=task_name,
                    dataset_type=self.datasets[0],
                    dataset_name=self.dataset_name or self.datasets[0],
                    dataset_config=self.dataset_config,
                    dataset_split=self.dataset_split,
                    metric_type=metric_type,
                    metric_name=label,
                    metric_value=round(self.eval_metrics[key], 4),
                )
                for key, (label, metric_type) in _EVAL_METRICS.items()
                # YAML has no portable NaN: a group without classes (e.g. no many-shot class) is left out
                if math.isfinite(self.eval_metrics.get(key, math.nan))
            ] or None
        return ModelCardData(
            model_name=self.model_name,
            base_model=self.base_model,
            datasets=self.datasets,
            language=self.language,
            license=self.license,
            library_name="transformers",
            pipeline_tag=self.task,
            metrics=["accuracy"],
            tags=tags,
            eval_results=eval_results,
        )

    # --------------------------------------------------------------------------------------------------- plot
    def plot_skip_reason(self) -> str | None:
        """Why the scale-vs-accuracy plot cannot be drawn, or `None` when it can."""
        if self.class_accuracies is None:
            return (
                "no per-class accuracy was logged (evaluate the model; per-class accuracy is logged for at most "
                "`semscale_log_per_class_max` classes)"
            )
        if not any(math.isfinite(s) and math.isfinite(a) for s, a in zip(self.semantic_scales, self.class_accuracies)):
            return "no class has both a measured semantic scale and an accuracy"
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return 'matplotlib is not installed (`pip install "semscale-hf[plots]"`)'
        return None

    def save_plot(self, path: str | os.PathLike) -> None:
        """Writes the scale-vs-accuracy scatter plot (PNG) to `path`.

        Raises:
            `RuntimeError`: when the plot cannot be drawn; the message is [`~SemScaleReport.plot_skip_reason`].
        """
        reason = self.plot_skip_reason()
        if reason is not None:
            raise RuntimeError(f"cannot draw the scale-vs-accuracy plot: {reason}")
        # the plot of `semscale analyze`, fed with this report's values: one look for both
        groups = shot_groups(self.class_counts)
        rows = [
            ClassReport(
                class_id=c,
                name=self.class_names[c],
                count=self.class_counts[c],
                scale=self.semantic_scales[c] if math.isfinite(self.semantic_scales[c]) else None,
                normalized_scale=None,
                weight=self.class_weights[c],
                accuracy=self.class_accuracies[c] if math.isfinite(self.class_accuracies[c]) else None,
                train_count=self.class_counts[c],
                group=groups[c],
            )
            for c in range(self.num_classes)
        ]
        plot_scale_vs_accuracy(SemanticScaleReport(classes=rows, summary={}, settings={}), path)

    # ------------------------------------------------------------------------------------------------- render
    def render(self, *, plot_file: str | None = None, template: str | None = None) -> ModelCard:
        """The model card, rendered from the template (default: [`read_template`]).

        Args:
            plot_file (`str`, *optional*):
                Repository path of the plot image to show; `None` puts the reason for its absence in the card.
            template (`str`, *optional*):
                Jinja text of another template; it receives the same variables.
        """
        accuracies = self.class_accuracies or [math.nan] * self.num_classes
        rows = [
            {
                "name": name.replace("|", "\\|"),
                "count": count,
                "scale": _format(scale, ".4g"),
                "weight": _format(weight, ".3f"),
                "accuracy": _format(accuracy, ".3f"),
            }
            for name, count, scale, weight, accuracy in zip(
                self.class_names, self.class_counts, self.semantic_scales, self.class_weights, accuracies
            )
        ][:_MAX_TABLE_ROWS]
        task_name, auto_class = _TASKS.get(self.task, (None, "AutoModel"))
        return ModelCard.from_template(
            self.card_data(),
            template_str=template if template is not None else read_template(),
            model_name=self.model_name,
            repo_id=self.repo_id or self.model_name,
            task_name=task_name,
            auto_module="transformers",
            auto_class=auto_class,
            dataset_name=self.dataset_name or (self.datasets[0] if self.datasets else None),
            eval_rows=self._eval_rows(),
            eval_step=self.eval_step,
            class_rows=rows,
            num_classes=self.num_classes,
            imbalance_rows=self._imbalance_rows(),
            plot_file=plot_file,
            plot_note=self.plot_skip_reason() or "the image was not written",
            semscale_rows=[(name, _format_setting(value)) for name, value in self.semscale_settings.items()],
            state_rows=list(self.training_state.items()),
            hyperparameters=self.hyperparameters,
            framework_versions=self.framework_versions,
            paper_url=PAPER_URL,
            citation=CITATION,
        )

    def _eval_rows(self) -> list[tuple[str, str]]:
        rows = [
            (label, _format(self.eval_metrics[key], ".4f"))
            for key, (label, _) in _EVAL_METRICS.items()
            if key in self.eval_metrics
        ]
        rows += [
            (key.replace("_", " ").capitalize(), _format(value, ".4f"))
            for key, value in self.eval_metrics.items()
            if key not in _EVAL_METRICS
        ]
        return rows

    def _imbalance_rows(self) -> list[tuple[str, str]]:
        scales = torch.tensor(self.semantic_scales, dtype=torch.float64)
        accuracies = None if self.class_accuracies is None else torch.tensor(self.class_accuracies)
        counts = torch.tensor(self.class_counts, dtype=torch.float64)
        summary = scale_imbalance(scales, accuracies=accuracies, counts=counts if accuracies is not None else None)
        weights = [w for w in self.class_weights if math.isfinite(w)]
        rows = [
            ("Classes measured", f"{summary.num_measured} of {self.num_classes}"),
            ("Largest over smallest semantic scale", _format(summary.max_min_ratio, ".3f")),
            ("Coefficient of variation of the scales", _format(summary.coefficient_of_variation, ".3f")),
            ("KL divergence of the scale shares from uniform (nats)", _format(summary.kl_from_uniform, ".4f")),
            ("Class weights", f"{min(weights):.3f} to {max(weights):.3f}" if weights else "n/a"),
        ]
        if count_ratio := _ratio(self.class_counts):
            rows.insert(1, ("Largest over smallest training count", count_ratio))
        if accuracies is not None:
            for label, pearson, spearman in (
                ("semantic scale", summary.pearson_scale_accuracy, summary.spearman_scale_accuracy),
                ("training count", summary.pearson_count_accuracy, summary.spearman_count_accuracy),
                (
                    "effective number",
                    summary.pearson_effective_number_accuracy,
                    summary.spearman_effective_number_accuracy,
                ),
            ):
                rows.append(
                    (
                        f"Correlation of {label} with accuracy (Pearson / Spearman)",
                        f"{_format(pearson, '.3f')} / {_format(spearman, '.3f')}",
                    )
                )
        return rows


def write_model_card(trainer: Any, output_dir: str | os.PathLike | None = None, **card_kwargs: Any) -> ModelCard:
    """Writes the model card (`README.md`) and, when it can be drawn, the plot (`PLOT_FILE`) into `output_dir`.

    Args:
        trainer (`SemScaleTrainer`):
            The trainer to report on.
        output_dir (`str` or `os.PathLike`, *optional*):
            Folder to write to (defaults to `trainer.args.output_dir`).
        card_kwargs:
            The arguments of [`SemScaleReport.from_trainer`] (those of `Trainer.create_model_card`).

    Returns:
        `huggingface_hub.ModelCard`: the card written.
    """
    output_dir = Path(output_dir if output_dir is not None else trainer.args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = SemScaleReport.from_trainer(trainer, **card_kwargs)
    plot_path = output_dir / PLOT_FILE
    if report.plot_skip_reason() is None:
        report.save_plot(plot_path)
        plot_file = PLOT_FILE
    else:
        plot_path.unlink(missing_ok=True)  # an older plot would contradict the card's note
        plot_file = None
    card = report.render(plot_file=plot_file)
    card.save(output_dir / "README.md")
    return card


def _framework_versions() -> dict[str, str]:
    versions = {}
    for distribution in ("semscale-hf", "transformers", "torch", "accelerate", "datasets", "huggingface_hub"):
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _format(value: float | None, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def _format_setting(value: Any) -> str:
    return "not set" if value is None else f"`{value}`"


def _ratio(counts: list[int]) -> str | None:
    present = [c for c in counts if c > 0]
    return f"{max(present) / min(present):.3f}" if present else None


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _first(value: str | list[str] | None) -> str | None:
    values = _as_list(value)
    return values[0] if values else None


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))
