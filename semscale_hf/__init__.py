"""semscale-hf: semantic-scale-balanced learning (Ma et al., ICLR 2023) for the Hugging Face ecosystem.

The names below are imported on first use (PEP 562): `import semscale_hf` and the math API load torch only, and
transformers, accelerate and evaluate only come in with the names that need them (importing them took ~5 s).
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from .analysis import (
        ClassReport,
        ExtractedFeatures,
        MarginalEffect,
        SaturatingFit,
        ScaleImbalance,
        SemanticScaleReport,
        extract_features,
        fit_saturating_curve,
        load_features,
        many_medium_few_accuracy,
        marginal_effect,
        pearson_correlation,
        per_class_accuracy,
        save_features,
        scale_imbalance,
        shot_groups,
        spearman_correlation,
    )
    from .core import (
        ClassMoments,
        blend_weights,
        class_semantic_scales,
        effective_number,
        effective_number_weights,
        init_moments,
        inverse_frequency_weights,
        merge_moments,
        moments_from_features,
        scales_from_moments,
        scales_to_weights,
        semantic_scale,
        update_moments,
    )
    from .metrics import semantic_scale_metric
    from .metrics.loading import load_metric, register_evaluate_module
    from .training import HubPushError, SemScaleCallback, SemScaleTrainer, SemScaleTrainingArguments

# the subpackage (or module) that defines each public name; imported on first use of one of its names
_SUBMODULE_EXPORTS = {
    "analysis": (
        "ClassReport",
        "ExtractedFeatures",
        "MarginalEffect",
        "SaturatingFit",
        "ScaleImbalance",
        "SemanticScaleReport",
        "extract_features",
        "fit_saturating_curve",
        "load_features",
        "many_medium_few_accuracy",
        "marginal_effect",
        "pearson_correlation",
        "per_class_accuracy",
        "save_features",
        "scale_imbalance",
        "shot_groups",
        "spearman_correlation",
    ),
    "core": (
        "ClassMoments",
        "blend_weights",
        "class_semantic_scales",
        "effective_number",
        "effective_number_weights",
        "init_moments",
        "inverse_frequency_weights",
        "merge_moments",
        "moments_from_features",
        "scales_from_moments",
        "scales_to_weights",
        "semantic_scale",
        "update_moments",
    ),
    "metrics": ("semantic_scale_metric",),
    "metrics.loading": ("load_metric", "register_evaluate_module"),
    "training": ("HubPushError", "SemScaleCallback", "SemScaleTrainer", "SemScaleTrainingArguments"),
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
