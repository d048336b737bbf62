"""semscale-hf: semantic-scale-balanced learning (Ma et al., ICLR 2023) for the Hugging Face ecosystem."""

from importlib.metadata import PackageNotFoundError, version

from .callback import SemScaleCallback
from .config import SemScaleTrainingArguments
from .evaluation import many_medium_few_accuracy, per_class_accuracy, shot_groups
from .features import ExtractedFeatures, extract_features, load_features, save_features
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
from .trainer import HubPushError, SemScaleTrainer
from .weights import (
    blend_weights,
    effective_number,
    effective_number_weights,
    inverse_frequency_weights,
    scales_to_weights,
)


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
