"""semscale-hf: semantic-scale-balanced learning (Ma et al., ICLR 2023) for the Hugging Face ecosystem."""

from importlib.metadata import PackageNotFoundError, version

from .callback import SemScaleCallback
from .config import SemScaleTrainingArguments
from .imbalance import ScaleImbalance, pearson_correlation, scale_imbalance, spearman_correlation
from .marginal import MarginalEffect, SaturatingFit, fit_saturating_curve, marginal_effect
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


try:
    __version__ = version("semscale-hf")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "ClassMoments",
    "MarginalEffect",
    "SaturatingFit",
    "ScaleImbalance",
    "SemScaleCallback",
    "SemScaleTrainer",
    "SemScaleTrainingArguments",
    "__version__",
    "blend_weights",
    "class_semantic_scales",
    "effective_number",
    "effective_number_weights",
    "fit_saturating_curve",
    "init_moments",
    "inverse_frequency_weights",
    "marginal_effect",
    "merge_moments",
    "moments_from_features",
    "pearson_correlation",
    "scale_imbalance",
    "scales_from_moments",
    "scales_to_weights",
    "semantic_scale",
    "spearman_correlation",
    "update_moments",
]
