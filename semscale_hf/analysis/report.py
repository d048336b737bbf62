"""The semantic-scale analysis report: a per-class table, dataset-level imbalance, correlations and marginal effects.

[`SemanticScaleReport.from_features`] measures everything from features (the input of a classifier's head), labels
and, optionally, predictions and training counts; the report renders as Markdown and JSON and saves its plots
([`semscale_hf.analysis.plots`], needs the optional matplotlib). `semscale analyze` (see
[`semscale_hf.commands.analyze`]) builds one from a saved model and a dataset.

Shot groups follow the canonical split by *training* counts: many-shot (> 100), medium-shot (20 to 100), few-shot
(< 20).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ..core._validation import IGNORE_INDEX, check_features, check_labels
from ..core.scales import class_semantic_scales
from ..core.weights import scales_to_weights
from ._format import finite_or_none, format_number, json_safe, none_to_nan
from .evaluation import SHOT_GROUPS, many_medium_few_accuracy, overall_accuracy, per_class_accuracy, shot_groups
from .imbalance import scale_imbalance
from .marginal_effect import MarginalEffect, SaturatingFit, marginal_effect


__all__ = ["ClassReport", "SemanticScaleReport"]

REPORT_FILES = {"markdown": "report.md", "json": "report.json"}
# Rows shown in the summary table: (key in `summary`, label)
_SUMMARY_ROWS = [
    ("max_min_ratio", "Scale imbalance ratio (max / min)"),
    ("coefficient_of_variation", "Coefficient of variation of scales"),
    ("kl_from_uniform", "KL divergence from uniform (nats)"),
    ("accuracy", "Accuracy"),
    ("mean_class_accuracy", "Mean per-class accuracy"),
    ("pearson_scale_accuracy", "Pearson r (scale, accuracy)"),
    ("spearman_scale_accuracy", "Spearman r (scale, accuracy)"),
    ("pearson_count_accuracy", "Pearson r (train count, accuracy)"),
    ("spearman_count_accuracy", "Spearman r (train count, accuracy)"),
    ("pearson_effective_number_accuracy", "Pearson r (effective number, accuracy)"),
    ("spearman_effective_number_accuracy", "Spearman r (effective number, accuracy)"),
]


@dataclass(frozen=True)
class ClassReport:
    """One row of the per-class table. `None` marks a value that does not exist for this class."""

    class_id: int
    name: str
    count: int
    """Examples of this class in the analysed features."""
    scale: float | None
    """Semantic scale in bits; `None` if the class has fewer than `min_count` examples."""
    normalized_scale: float | None
    """`scale / max scale`."""
    weight: float
    """Class weight `w ~ S^(-power)`, mean 1 over measured classes (an unmeasured class gets the largest)."""
    accuracy: float | None = None
    """Per-class accuracy, when predictions were given (`None` without examples)."""
    train_count: int | None = None
    """Training samples, when given."""
    group: str | None = None
    """`"many"`, `"medium"` or `"few"` by training count, when given."""


@dataclass
class SemanticScaleReport:
    """Semantic-scale analysis of one set of features; build it with [`~SemanticScaleReport.from_features`].

    Attributes:
        classes (`list[ClassReport]`): the per-class table.
        summary (`dict`): dataset-level numbers: `max_min_ratio`, `coefficient_of_variation`, `kl_from_uniform`,
            `num_measured`, and with predictions `accuracy`, `mean_class_accuracy` and the Pearson/Spearman
            correlations of scale (and, with training counts, of count and effective number) with accuracy.
        group_accuracy (`dict[str, float]` or `None`): mean per-class accuracy of the many/medium/few groups.
        marginal_effects (`dict[int, MarginalEffect]`): scale versus number of samples for the chosen classes.
        settings (`dict`): how the scales were measured (`alpha`, `center`, `normalize`, `min_count`, `power`) and
            the data shape (`num_samples`, `feature_dim`, `num_classes`).
    """

    classes: list[ClassReport]
    summary: dict[str, float | int | None]
    settings: dict[str, Any]
    group_accuracy: dict[str, float] | None = None
    marginal_effects: dict[int, MarginalEffect] = field(default_factory=dict)

    @classmethod
    def from_features(
        cls,
        features: torch.Tensor,
        labels: torch.Tensor,
        *,
        predictions: torch.Tensor | None = None,
        train_counts: torch.Tensor | Sequence[int] | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        alpha: float | str = "dim",
        center: bool = True,
        normalize: bool = False,
        min_count: int = 2,
        power: float = 1.0,
        marginal_classes: Sequence[int] | Literal["auto"] | None = "auto",
        marginal_repeats: int = 5,
        seed: int = 0,
    ) -> SemanticScaleReport:
        """Measures scales, weights, accuracies, correlations and marginal effects.

        Args:
            features (`torch.Tensor` of shape `(num_samples, dim)`):
                One feature vector per example (the input of the classification head).
            labels (`torch.Tensor` of shape `(num_samples,)`):
                Integer class ids.
            predictions (`torch.Tensor` of shape `(num_samples,)` or `(num_samples, num_classes)`, *optional*):
                Predicted class ids or logits; adds per-class accuracy and the correlations.
            train_counts (`torch.Tensor` or `Sequence[int]` of length `num_classes`, *optional*):
                Training samples per class; adds the many/medium/few groups and the count correlations.
            num_classes (`int`, *optional*):
                Defaults to the largest of: the length of `train_counts` or `class_names`, the largest label plus
                one, and the number of columns of logits given as `predictions`.
            class_names (`Sequence[str]`, *optional*):
                Display names; defaults to the class ids.
            alpha, center, normalize, min_count:
                As in [`class_semantic_scales`].
            power (`float`, *optional*, defaults to 1.0):
                Exponent of the weight column, as in [`scales_to_weights`].
            marginal_classes (`Sequence[int]`, `"auto"` or `None`, *optional*, defaults to `"auto"`):
                Classes whose marginal-effect curve is measured; `"auto"` takes the largest, the median and the
                smallest measured class (by training count if given, else by count); `None` skips the curves.
            marginal_repeats (`int`, *optional*, defaults to 5):
                Random subsets per size for the curves.
            seed (`int`, *optional*, defaults to 0):
                Seed of the subset draws.

        Example:

        >>> import torch
        >>> from semscale_hf import SemanticScaleReport
        >>> features = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
        >>> labels = torch.arange(300) % 3
        >>> report = SemanticScaleReport.from_features(features, labels, train_counts=[500, 60, 10])
        >>> [row.group for row in report.classes]
        ['many', 'medium', 'few']
        """
        check_features(features)
        labels = torch.as_tensor(labels)
        if predictions is not None:
            predictions = torch.as_tensor(predictions)
        labelled = labels[labels != IGNORE_INDEX]
        if num_classes is None:
            # the largest candidate, so that a too-short train_counts or class_names gets its own error below
            candidates = [max(int(labelled.max()) + 1, 1) if labelled.numel() else 1]
            candidates += [len(v) for v in (train_counts, class_names) if v is not None]
            if predictions is not None and predictions.ndim == 2:
                candidates.append(predictions.shape[1])  # logits: one column per class, predicted or not
            num_classes = max(candidates)
        labels = check_labels(labels, features.shape[0], num_classes).cpu()
        if features.shape[0] == 0:
            raise ValueError("got no features: the report needs at least one example")
        if labelled.numel() == 0:
            raise ValueError("every label is -100 (ignored): the report needs labelled examples")
        if class_names is None:
            class_names = [str(c) for c in range(num_classes)]
        elif len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} entries but there are {num_classes} classes")
        groups: list[str | None] = [None] * num_classes
        train: list[int | None] = [None] * num_classes
        if train_counts is not None:
            groups = list(shot_groups(train_counts))
            if len(groups) != num_classes:
                raise ValueError(f"train_counts has {len(groups)} entries but there are {num_classes} classes")
            train = [int(n) for n in torch.as_tensor(train_counts).tolist()]

        scales = class_semantic_scales(
            features, labels.to(features.device), num_classes, alpha=alpha, center=center, normalize=normalize,
            min_count=min_count,
        ).cpu()  # fmt: skip
        weights = scales_to_weights(scales, power=power)
        counts = torch.bincount(labels[labels >= 0], minlength=num_classes)
        accuracies = None
        if predictions is not None:
            accuracies = per_class_accuracy(torch.as_tensor(predictions).cpu(), labels, num_classes)
        imbalance = scale_imbalance(
            scales,
            accuracies=accuracies,
            counts=None if train_counts is None else torch.tensor(train, dtype=torch.float64),
        )
        summary: dict[str, float | int | None] = {
            k: v for k, v in imbalance.to_dict().items() if k not in ("normalized_scales", "scale_deficits")
        }
        group_accuracy = None
        if accuracies is not None:
            summary["accuracy"] = overall_accuracy(torch.as_tensor(predictions).cpu(), labels)
            summary["mean_class_accuracy"] = float(accuracies[~accuracies.isnan()].mean())
            if train_counts is not None:
                group_accuracy = many_medium_few_accuracy(accuracies, train)

        rows = []
        for c in range(num_classes):
            rows.append(
                ClassReport(
                    class_id=c,
                    name=str(class_names[c]),
                    count=int(counts[c]),
                    scale=finite_or_none(scales[c]),
                    normalized_scale=finite_or_none(imbalance.normalized_scales[c]),
                    weight=float(weights[c]),
                    accuracy=None if accuracies is None else finite_or_none(accuracies[c]),
                    train_count=train[c],
                    group=groups[c],
                )
            )
        chosen = _choose_marginal_classes(marginal_classes, rows)
        effects = {}
        for c in chosen:
            class_features = features[(labels == c).to(features.device)]
            effects[c] = marginal_effect(
                class_features, repeats=marginal_repeats, seed=seed, alpha=alpha, center=center, normalize=normalize
            )
        settings = {
            "alpha": alpha,
            "center": center,
            "normalize": normalize,
            "min_count": min_count,
            "power": power,
            "num_samples": int(features.shape[0]),
            "feature_dim": int(features.shape[1]),
            "num_classes": num_classes,
        }
        return cls(
            classes=rows, summary=summary, settings=settings, group_accuracy=group_accuracy, marginal_effects=effects
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python, strictly JSON-serialisable dict (NaN and infinities become `None`)."""
        marginal = {
            str(c): {
                "sizes": list(effect.sizes),
                "mean": effect.mean.tolist(),
                "std": effect.std.tolist(),
                "fit": asdict(effect.fit),
            }
            for c, effect in self.marginal_effects.items()
        }
        return json_safe(
            {
                "settings": self.settings,
                "summary": self.summary,
                "group_accuracy": self.group_accuracy,
                "classes": [asdict(row) for row in self.classes],
                "marginal_effects": marginal,
            }
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SemanticScaleReport:
        """Rebuilds a report from [`~SemanticScaleReport.to_dict`] output (e.g. a saved `report.json`)."""
        effects = {}
        for c, effect in data.get("marginal_effects", {}).items():
            fit = {k: math.nan if v is None else v for k, v in effect["fit"].items()}
            effects[int(c)] = MarginalEffect(
                sizes=list(effect["sizes"]),
                mean=torch.tensor(none_to_nan(effect["mean"]), dtype=torch.float64),
                std=torch.tensor(none_to_nan(effect["std"]), dtype=torch.float64),
                fit=SaturatingFit(**fit),
            )
        return cls(
            classes=[ClassReport(**row) for row in data["classes"]],
            summary=dict(data["summary"]),
            settings=dict(data["settings"]),
            group_accuracy=data.get("group_accuracy"),
            marginal_effects=effects,
        )

    def to_json(self, indent: int | None = 2) -> str:
        """The report as a JSON string (strict JSON: no NaN)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @property
    def has_accuracy(self) -> bool:
        return any(row.accuracy is not None for row in self.classes)

    @property
    def has_train_counts(self) -> bool:
        return any(row.train_count is not None for row in self.classes)

    def to_markdown(self) -> str:
        """The report as Markdown: settings, summary, per-class table and marginal-effect fits."""
        s = self.settings
        lines = [
            "# Semantic scale report",
            "",
            f"{s['num_samples']} examples, {s['feature_dim']}-dimensional features, {s['num_classes']} classes "
            f"({self.summary.get('num_measured', 0)} measured). Scale `S = 1/2 log2 det(I + alpha/m Zc^T Zc)` in bits "
            f"with alpha={s['alpha']}, center={s['center']}, normalize={s['normalize']}, min_count={s['min_count']}; "
            f"weights `w ~ S^(-{s['power']})`, mean 1 over measured classes.",
            "",
            "## Summary",
            "",
            "| Statistic | Value |",
            "|---|---|",
        ]
        for key, label in _SUMMARY_ROWS:
            if key in self.summary:
                lines.append(f"| {label} | {_cell(self.summary[key])} |")
        if self.group_accuracy is not None:
            for group in SHOT_GROUPS:
                size = sum(row.group == group for row in self.classes)
                lines.append(
                    f"| {group.capitalize()}-shot accuracy ({size} classes) | {_cell(self.group_accuracy[group])} |"
                )
        columns = ["Class", "Name", "Count"]
        columns += ["Train count"] if self.has_train_counts else []
        columns += ["Scale (bits)", "Normalised scale", "Weight"]
        columns += ["Accuracy"] if self.has_accuracy else []
        columns += ["Group"] if self.has_train_counts else []
        lines += ["", "## Per-class", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in self.classes:
            cells = [str(row.class_id), _escape(row.name), str(row.count)]
            cells += [_cell(row.train_count)] if self.has_train_counts else []
            cells += [_cell(row.scale), _cell(row.normalized_scale), _cell(row.weight)]
            cells += [_cell(row.accuracy)] if self.has_accuracy else []
            cells += [row.group or "–"] if self.has_train_counts else []
            lines.append("| " + " | ".join(cells) + " |")
        if self.marginal_effects:
            lines += [
                "",
                "## Marginal effect",
                "",
                "Fit of `S(m) = a (1 - exp(-m / tau))` to the mean scale of random subsets of `m` examples; `m95` is "
                "the size at which 95% of the asymptote `a` is reached.",
                "",
                "| Class | Name | Count | Asymptote a | tau | m95 | R² | Saturated |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for c, effect in self.marginal_effects.items():
                fit = effect.fit
                lines.append(
                    f"| {c} | {_escape(self.classes[c].name)} | {effect.sizes[-1]} | {_cell(fit.asymptote)} | "
                    f"{_cell(fit.tau)} | {_cell(fit.m95)} | {_cell(fit.r_squared)} | "
                    f"{'yes' if effect.saturated else 'no'} |"
                )
        return "\n".join(lines) + "\n"

    def save(self, directory: str | os.PathLike[str], *, plots: bool = True) -> dict[str, Path]:
        """Writes `report.md`, `report.json` and, with `plots=True`, the PNG plots into `directory`.

        Plots need matplotlib (`pip install 'semscale-hf[plots]'`); an `ImportError` says so when it is missing.

        Returns:
            `dict[str, Path]`: the written files by kind (`"markdown"`, `"json"` and the plot names of
            [`semscale_hf.analysis.plots.save_report_plots`]).
        """
        directory = Path(directory)
        written: dict[str, Path] = {}
        if plots:
            from .plots import save_report_plots

            directory.mkdir(parents=True, exist_ok=True)
            written.update(save_report_plots(self, directory))
        directory.mkdir(parents=True, exist_ok=True)
        written["markdown"] = directory / REPORT_FILES["markdown"]
        written["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        written["json"] = directory / REPORT_FILES["json"]
        written["json"].write_text(self.to_json() + "\n", encoding="utf-8")
        return written


def _choose_marginal_classes(choice: Sequence[int] | str | None, rows: list[ClassReport]) -> list[int]:
    if choice is None:
        return []
    if isinstance(choice, str):
        if choice != "auto":
            raise ValueError(f'marginal_classes must be "auto", None or a list of class ids, got {choice!r}')
        # the curve needs at least 3 examples to have two sizes
        candidates = [r for r in rows if r.scale is not None and r.count >= 3]
        key = (
            (lambda r: (r.train_count, r.count))
            if all(r.train_count is not None for r in rows)
            else (lambda r: r.count)
        )
        ordered = sorted(candidates, key=key, reverse=True)
        if not ordered:
            return []
        picks = [ordered[0], ordered[len(ordered) // 2], ordered[-1]]
        return list(dict.fromkeys(r.class_id for r in picks))
    chosen = [int(c) for c in choice]
    for c in chosen:
        if not 0 <= c < len(rows):
            raise ValueError(f"marginal class {c} is outside [0, {len(rows)})")
        if rows[c].count < 3:
            raise ValueError(f"class {c} has {rows[c].count} examples; a marginal-effect curve needs at least 3")
    return list(dict.fromkeys(chosen))


def _cell(value: float | int | None) -> str:
    return format_number(value, ".4g", missing="–", infinity="∞")


def _escape(text: str) -> str:
    return text.replace("|", "\\|")
