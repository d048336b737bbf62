"""The semantic-scale model card: Hub metadata, the per-class table, the imbalance summary and the plot.

[`SemScaleCardData`] holds what a card shows as plain values; `SemScaleCardData.render` fills the Jinja template
`semscale_model_card.md` through `huggingface_hub.ModelCard` and does no I/O besides reading the template.
[`~semscale_hf.hub.trainer_card`] reads the values from a trainer and writes the card into a folder.

The template is kept in the repository's `model_cards/` folder and shipped in the wheel as
`semscale_hf/templates/semscale_model_card.md` (hatchling `force-include`); an editable install reads it from
`model_cards/`. The plot needs matplotlib (extra `plots`); without it the card says why the image is missing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..analysis._format import format_number
from ..analysis.evaluation import shot_groups
from ..analysis.imbalance import scale_imbalance
from ..analysis.plots import draw_scale_vs_accuracy
from ..core import metric_keys as keys


__all__ = ["CITATION", "PLOT_FILE", "TEMPLATE_NAME", "SemScaleCardData", "read_template"]

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
    "token-classification": ("Token Classification", "AutoModelForTokenClassification"),
}

# What the loss did under the other `semscale_weighting` values (the card describes semantic-scale weighting itself).
_BASELINE_WEIGHTINGS = {
    "none": "the loss is not re-weighted",
    "inverse_frequency": "the loss of each class is re-weighted by the inverse of the class's training count",
    "effective_number": (
        "the loss of each class is re-weighted by the inverse of the class's effective number of samples "
        "(Cui et al., 2019)"
    ),
}
# Summary metrics of `SemScaleTrainer.evaluate()` (without the `eval_` prefix): card label and model-index type.
_EVAL_METRICS = {
    keys.ACCURACY: ("Accuracy", "accuracy"),
    keys.BALANCED_ACCURACY: ("Balanced accuracy", "balanced_accuracy"),
    keys.group_accuracy("many"): ("Many-shot accuracy", "accuracy"),
    keys.group_accuracy("medium"): ("Medium-shot accuracy", "accuracy"),
    keys.group_accuracy("few"): ("Few-shot accuracy", "accuracy"),
    keys.MACRO_F1: ("Macro F1", "f1"),
    keys.ENTITY_F1: ("Entity F1 (seqeval)", "f1"),
    keys.MEAN_AVERAGE_PRECISION: ("Mean average precision", "map"),
    keys.group_average_precision("many"): ("Many-shot mean AP", "map"),
    keys.group_average_precision("medium"): ("Medium-shot mean AP", "map"),
    keys.group_average_precision("few"): ("Few-shot mean AP", "map"),
}

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
    source = Path(__file__).resolve().parents[2] / "model_cards" / TEMPLATE_NAME
    if source.is_file():
        return source.read_text(encoding="utf-8")
    raise FileNotFoundError(
        f"the model card template {TEMPLATE_NAME} is neither in the installed package (semscale_hf/templates/) nor "
        f"in a source checkout ({source}); reinstall semscale-hf"
    )


@dataclass
class SemScaleCardData:
    """Everything a `SemScaleTrainer` model card shows, as plain values (no trainer needed to render).

    Build it from a trainer with [`~semscale_hf.hub.trainer_card.card_data_from_trainer`].

    Args:
        model_name (`str`): title of the card and `model-index` name.
        class_names (`list[str]`): one name per class (`config.id2label`).
        class_counts (`list[int]`): training samples per class.
        semantic_scales (`list[float]`): final scales, NaN for classes never measured.
        class_weights (`list[float]`): final class weights of the loss.
        class_accuracies (`list[float]`, *optional*): per-class score of the last evaluation (NaN: no examples),
            accuracy unless `class_metric` says otherwise.
        class_metric (`str`, *optional*, defaults to `"accuracy"`): what `class_accuracies` holds, e.g.
            `"average precision"` for multi-label models.
        eval_metrics (`dict[str, float]`, *optional*): the last evaluation's metrics without the `eval_` prefix
            (or `eval_<name>_` for a dict of evaluation sets).
        eval_step (`int`, *optional*): global step of that evaluation.
        eval_set (`str`, *optional*): name of the evaluation set shown, when the trainer had several (a dict).
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
    class_metric: str = "accuracy"
    eval_metrics: dict[str, float] = field(default_factory=dict)
    eval_step: int | None = None
    eval_set: str | None = None
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
            metrics=["accuracy"] if self.class_metric == "accuracy" else None,
            tags=tags,
            eval_results=eval_results,
        )

    # --------------------------------------------------------------------------------------------------- plot
    def plot_skip_reason(self) -> str | None:
        """Why the scale-vs-accuracy plot cannot be drawn, or `None` when it can."""
        if self.class_accuracies is None:
            return (
                f"no per-class {self.class_metric} was logged (evaluate the model; it is logged for at most "
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
            `RuntimeError`: when the plot cannot be drawn; the message is [`~SemScaleCardData.plot_skip_reason`].
        """
        reason = self.plot_skip_reason()
        if reason is not None:
            raise RuntimeError(f"cannot draw the scale-vs-accuracy plot: {reason}")
        # the plot of `semscale analyze`, fed with this card's values: one look for both
        draw_scale_vs_accuracy(
            self.class_names,
            self.semantic_scales,
            self.class_accuracies,
            shot_groups(self.class_counts),
            path,
            metric=self.class_metric,
        )

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
                "scale": format_number(scale, ".4g"),
                "weight": format_number(weight, ".3f"),
                "accuracy": format_number(accuracy, ".3f"),
            }
            for name, count, scale, weight, accuracy in zip(
                self.class_names, self.class_counts, self.semantic_scales, self.class_weights, accuracies
            )
        ][:_MAX_TABLE_ROWS]
        task_name, auto_class = _TASKS.get(self.task, (None, "AutoModel"))
        weighting = self.semscale_settings.get("semscale_weighting", "semantic_scale")  # the arguments' default
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
            eval_set=self.eval_set,
            weighting=weighting,
            weighting_text=_BASELINE_WEIGHTINGS.get(weighting, f"the classes' loss weights follow `{weighting}`"),
            class_rows=rows,
            class_metric=self.class_metric,
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
            (label, format_number(self.eval_metrics[key], ".4f"))
            for key, (label, _) in _EVAL_METRICS.items()
            if key in self.eval_metrics
        ]
        rows += [
            (key.replace("_", " ").capitalize(), format_number(value, ".4f"))
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
            ("Largest over smallest semantic scale", format_number(summary.max_min_ratio, ".3f")),
            ("Coefficient of variation of the scales", format_number(summary.coefficient_of_variation, ".3f")),
            ("KL divergence of the scale shares from uniform (nats)", format_number(summary.kl_from_uniform, ".4f")),
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
                        f"Correlation of {label} with {self.class_metric} (Pearson / Spearman)",
                        f"{format_number(pearson, '.3f')} / {format_number(spearman, '.3f')}",
                    )
                )
        return rows


def _framework_versions() -> dict[str, str]:
    versions = {}
    for distribution in ("semscale-hf", "transformers", "torch", "accelerate", "datasets", "huggingface_hub"):
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _format_setting(value: Any) -> str:
    return "not set" if value is None else f"`{value}`"


def _ratio(counts: list[int]) -> str | None:
    present = [c for c in counts if c > 0]
    if not present:
        return None
    text = f"{max(present) / min(present):.3f}"
    if empty := len(counts) - len(present):
        text += f" ({empty} class{'es' if empty > 1 else ''} without training samples left out)"
    return text


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))
