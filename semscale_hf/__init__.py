"""semscale-hf: semantic-scale-balanced learning (Ma et al., ICLR 2023) for the Hugging Face ecosystem.

The names below are imported on first use (PEP 562): `import semscale_hf` and the math API load torch only, and
transformers, accelerate and evaluate only come in with the names that need them (importing them took ~5 s).
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from .callback import SemScaleCallback
    from .config import SemScaleTrainingArguments
    from .evaluation import many_medium_few_accuracy, per_class_accuracy, shot_groups
    from .features import ExtractedFeatures, extract_features, load_features, save_features
    from .hub import HubPushError
    from .imbalance import ScaleImbalance, pearson_correlation, scale_imbalance, spearman_correlation
    from .marginal import MarginalEffect, SaturatingFit, fit_saturating_curve, marginal_effect
    from .metric_loading import load_metric, register_evaluate_module
    from .metrics import semantic_scale_metric
    from .report import ClassReport, SemanticScaleReport
    from .scales import class_semantic_scales, semantic_scale
    from .stats import (
        ClassMoments,
        init_moments,
        merge_moments,
        moments_from_features,
        scales_from_moments,
        update_moments,
    )
    from .trainer import SemScaleTrainer
    from .weights import (
        blend_weights,
        effective_number,
        effective_number_weights,
        inverse_frequency_weights,
        scales_to_weights,
    )

_SUBMODULE_EXPORTS = {
    "callback": ("SemScaleCallback",),
    "config": ("SemScaleTrainingArguments",),
    "evaluation": ("many_medium_few_accuracy", "per_class_accuracy", "shot_groups"),
    "features": ("ExtractedFeatures", "extract_features", "load_features", "save_features"),
    "hub": ("HubPushError",),
    "imbalance": ("ScaleImbalance", "pearson_correlation", "scale_imbalance", "spearman_correlation"),
    "marginal": ("MarginalEffect", "SaturatingFit", "fit_saturating_curve", "marginal_effect"),
    "metric_loading": ("load_metric", "register_evaluate_module"),
    "metrics": ("semantic_scale_metric",),
    "report": ("ClassReport", "SemanticScaleReport"),
    "scales": ("class_semantic_scales", "semantic_scale"),
    "stats": (
        "ClassMoments",
        "init_moments",
        "merge_moments",
        "moments_from_features",
        "scales_from_moments",
        "update_moments",
    ),
    "trainer": ("SemScaleTrainer",),
    "weights": (
        "blend_weights",
        "effective_number",
        "effective_number_weights",
        "inverse_frequency_weights",
        "scales_to_weights",
    ),
}
_SUBMODULE_OF = {name: module for module, names in _SUBMODULE_EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _SUBMODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


try:
    __version__ = version("semscale-hf")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "ClassMoments",
    "ClassReport",
    "ExtractedFeatures",
    "HubPushError",
    "MarginalEffect",
    "SaturatingFit",
    "ScaleImbalance",
    "SemScaleCallback",
    "SemScaleTrainer",
    "SemScaleTrainingArguments",
    "SemanticScaleReport",
    "__version__",
    "blend_weights",
    "class_semantic_scales",
    "effective_number",
    "effective_number_weights",
    "extract_features",
    "fit_saturating_curve",
    "init_moments",
    "inverse_frequency_weights",
    "load_features",
    "load_metric",
    "many_medium_few_accuracy",
    "marginal_effect",
    "merge_moments",
    "moments_from_features",
    "pearson_correlation",
    "per_class_accuracy",
    "register_evaluate_module",
    "save_features",
    "scale_imbalance",
    "scales_from_moments",
    "scales_to_weights",
    "semantic_scale",
    "semantic_scale_metric",
    "shot_groups",
    "spearman_correlation",
    "update_moments",
]
