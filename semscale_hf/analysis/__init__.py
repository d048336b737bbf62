"""Offline measurement and reporting: per-class accuracy, imbalance, marginal effect, feature extraction, reports."""

from .correlation import pearson_correlation, spearman_correlation
from .evaluation import SHOT_GROUPS, classification_metrics, many_medium_few_accuracy, per_class_accuracy, shot_groups
from .extraction import ExtractedFeatures, extract_features, load_features, save_features
from .imbalance import ScaleImbalance, scale_imbalance
from .marginal_effect import MarginalEffect, SaturatingFit, fit_saturating_curve, marginal_effect
from .report import ClassReport, SemanticScaleReport


__all__ = [
    "SHOT_GROUPS",
    "ClassReport",
    "ExtractedFeatures",
    "MarginalEffect",
    "SaturatingFit",
    "ScaleImbalance",
    "SemanticScaleReport",
    "classification_metrics",
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
]
