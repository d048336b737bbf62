"""The torch-only core: semantic scales, class weights, losses, the feature pool and its capture, the balancer.

Nothing under this folder imports a Hugging Face library (`tests/core/test_boundary.py` walks the folder).
"""

from ._validation import IGNORE_INDEX, parse_alpha
from .balancer import POOL_FILE, STATE_FILE, TOKEN_POOL_MAX_PER_CLASS, SemScaleBalancer
from .capture import FeatureCapture, find_classifier_head, is_token_classifier
from .losses import (
    BASE_LOSSES,
    class_weighted_loss,
    focal_loss,
    ldam_loss,
    ldam_margins,
    multi_label_weighted_loss,
    weighted_cross_entropy,
)
from .moments import (
    ClassMoments,
    init_moments,
    merge_moments,
    moments_from_features,
    scales_from_moments,
    update_moments,
)
from .pool import FeaturePool
from .scales import class_semantic_scales, semantic_scale
from .weights import (
    WEIGHTINGS,
    blend_weights,
    class_weights_by,
    effective_number,
    effective_number_weights,
    inverse_frequency_weights,
    scales_to_weights,
)


__all__ = [
    "BASE_LOSSES",
    "IGNORE_INDEX",
    "POOL_FILE",
    "STATE_FILE",
    "TOKEN_POOL_MAX_PER_CLASS",
    "WEIGHTINGS",
    "ClassMoments",
    "FeatureCapture",
    "FeaturePool",
    "SemScaleBalancer",
    "blend_weights",
    "class_semantic_scales",
    "class_weighted_loss",
    "class_weights_by",
    "effective_number",
    "effective_number_weights",
    "find_classifier_head",
    "focal_loss",
    "init_moments",
    "inverse_frequency_weights",
    "is_token_classifier",
    "ldam_loss",
    "ldam_margins",
    "merge_moments",
    "moments_from_features",
    "multi_label_weighted_loss",
    "parse_alpha",
    "scales_from_moments",
    "scales_to_weights",
    "semantic_scale",
    "update_moments",
    "weighted_cross_entropy",
]
