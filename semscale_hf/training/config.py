"""`SemScaleTrainingArguments`: `TrainingArguments` plus the options of semantic-scale-balanced training.

Every new field starts with `semscale_`, so none can collide with a `TrainingArguments` field (which already has
`warmup_*` fields of its own), and all are settable from the command line through `HfArgumentParser`. The names of
the weightings and base losses come from the core (`WEIGHTINGS`, `BASE_LOSSES`), where they are implemented.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from ..core._validation import check_int, parse_alpha
from ..core.losses import BASE_LOSSES
from ..core.weights import WEIGHTINGS


__all__ = ["POOL_DTYPES", "SemScaleTrainingArguments"]

POOL_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""Storage dtypes of the feature pool by the name `semscale_pool_dtype` takes."""


@dataclass
class SemScaleTrainingArguments(TrainingArguments):
    """[`~transformers.TrainingArguments`] with the options of dynamic semantic-scale-balanced learning.

    The three stages: warm-up with the unweighted base loss while the feature pool fills
    (`semscale_warmup_epochs` or `semscale_warmup_steps`); a first measurement of the semantic scales from the pool;
    then weighted training, the pool updated every step and the weights refreshed every `semscale_refresh_steps`
    optimizer steps (default: once per epoch). Every field of [`~transformers.TrainingArguments`] is accepted too.

    Parameters:
        semscale_weighting (`str`, *optional*, defaults to `"semantic_scale"`):
            Class weights from semantic scales, from counts (`"effective_number"`, `"inverse_frequency"`) or
            `"none"` (scales are measured and logged, the loss stays unweighted).
        semscale_base_loss (`str`, *optional*, defaults to `"ce"`):
            Per-sample base loss that the class weights multiply: `"ce"`, `"focal"` or `"ldam"`.
        semscale_warmup_epochs (`float`, *optional*, defaults to `1.0`):
            Epochs of unweighted training while the feature pool fills.
        semscale_warmup_steps (`int`, *optional*):
            Optimizer steps of warm-up; overrides `semscale_warmup_epochs` when set.
        semscale_refresh_steps (`int`, *optional*):
            Recompute scales and weights every this many optimizer steps (default: once per epoch).
        semscale_power (`float`, *optional*, defaults to `1.0`):
            Weights follow `scale ** -power`: positive up-weights small-scale classes, negative large ones.
        semscale_momentum (`float`, *optional*, defaults to `0.0`):
            Smoothing across refreshes, `w = (1 - m) * w_new + m * w_old`, in `[0, 1)`.
        semscale_weight_min (`float`, *optional*), semscale_weight_max (`float`, *optional*):
            Bounds of the class weights, `weight_min <= 1 <= weight_max` (the weights have mean 1).
        semscale_alpha (`str`, *optional*, defaults to `"dim"`):
            Constant alpha of the scale formula: `"dim"` (the feature dimension) or a positive number.
        semscale_center (`bool`, *optional*, defaults to `True`):
            Centre each class's features on its mean.
        semscale_normalize (`bool`, *optional*, defaults to `False`):
            L2-normalise the features before measuring.
        semscale_min_count (`int`, *optional*, defaults to `2`):
            Classes with fewer pooled features are unmeasured and get the largest weight.
        semscale_pool_max_per_class (`int`, *optional*):
            Cap of the per-class pool capacity; each class's capacity is its training count, capped by this.
            Default: no cap, except for token classification, where it is `TOKEN_POOL_MAX_PER_CLASS` (1,024 tokens).
        semscale_pool_dtype (`str`, *optional*, defaults to `"float32"`):
            Storage dtype of the feature pool: `"float32"`, `"float16"` or `"bfloat16"`.
        semscale_pool_device (`str`, *optional*):
            Device of the feature pool, e.g. `"cpu"` (default: the training device).
        semscale_feature_module (`str`, *optional*):
            Name of the classification head whose input is the feature (default: found automatically).
        semscale_effective_number_beta (`float`, *optional*, defaults to `0.9999`):
            `beta` of the effective number (Cui et al. 2019) for `semscale_weighting="effective_number"`.
        semscale_focal_gamma (`float`, *optional*, defaults to `2.0`):
            `gamma` of the focal loss.
        semscale_ldam_max_margin (`float`, *optional*, defaults to `0.5`):
            Largest LDAM margin.
        semscale_ldam_scale (`float`, *optional*, defaults to `30.0`):
            Logit scale of the LDAM loss.
        semscale_log_per_class_max (`int`, *optional*, defaults to `20`):
            Log per-class scales, weights and accuracies when there are at most this many classes.
    """

    semscale_weighting: str = field(
        default="semantic_scale",
        metadata={
            "help": "Class weights: from semantic scales, from counts (effective number, inverse frequency) or none.",
            "choices": list(WEIGHTINGS),
        },
    )
    semscale_base_loss: str = field(
        default="ce",
        metadata={"help": "Per-sample base loss that the class weights multiply.", "choices": list(BASE_LOSSES)},
    )
    semscale_warmup_epochs: float = field(
        default=1.0, metadata={"help": "Epochs of unweighted training while the feature pool fills."}
    )
    semscale_warmup_steps: int | None = field(
        default=None, metadata={"help": "Optimizer steps of warm-up; overrides semscale_warmup_epochs when set."}
    )
    semscale_refresh_steps: int | None = field(
        default=None,
        metadata={"help": "Recompute scales and weights every N optimizer steps (default: once per epoch)."},
    )
    semscale_power: float = field(
        default=1.0,
        metadata={
            "help": "Weights follow scale**(-power): positive up-weights small-scale classes, negative large ones."
        },
    )
    semscale_momentum: float = field(
        default=0.0, metadata={"help": "Smoothing across refreshes: w = (1 - m) * w_new + m * w_old, in [0, 1)."}
    )
    semscale_weight_min: float | None = field(
        default=None, metadata={"help": "Lower bound of the class weights (<= 1)."}
    )
    semscale_weight_max: float | None = field(
        default=None, metadata={"help": "Upper bound of the class weights (>= 1)."}
    )
    semscale_alpha: str = field(
        default="dim", metadata={"help": 'Constant alpha of the scale formula: "dim" (feature dimension) or a number.'}
    )
    semscale_center: bool = field(default=True, metadata={"help": "Centre each class's features on its mean."})
    semscale_normalize: bool = field(default=False, metadata={"help": "L2-normalise features before measuring."})
    semscale_min_count: int = field(
        default=2,
        metadata={"help": "Classes with fewer pooled features are unmeasured (they get the largest weight)."},
    )
    semscale_pool_max_per_class: int | None = field(
        default=None,
        metadata={
            "help": "Cap of the per-class pool capacity, which is the class's training count capped by this "
            "(default: no cap; 1024 for token classification)."
        },
    )
    semscale_pool_dtype: str = field(
        default="float32", metadata={"help": "Storage dtype of the feature pool.", "choices": list(POOL_DTYPES)}
    )
    semscale_pool_device: str | None = field(
        default=None, metadata={"help": "Device of the feature pool (default: the training device), e.g. 'cpu'."}
    )
    semscale_feature_module: str | None = field(
        default=None,
        metadata={"help": "Name of the classification head whose input is the feature (default: automatic)."},
    )
    semscale_effective_number_beta: float = field(
        default=0.9999, metadata={"help": "beta of the effective number (Cui et al. 2019) for effective_number."}
    )
    semscale_focal_gamma: float = field(default=2.0, metadata={"help": "gamma of the focal loss."})
    semscale_ldam_max_margin: float = field(default=0.5, metadata={"help": "Largest LDAM margin."})
    semscale_ldam_scale: float = field(default=30.0, metadata={"help": "Logit scale of the LDAM loss."})
    semscale_log_per_class_max: int = field(
        default=20, metadata={"help": "Log per-class scales and weights when there are at most this many classes."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.semscale_weighting not in WEIGHTINGS:
            raise ValueError(f"semscale_weighting must be one of {tuple(WEIGHTINGS)}, got {self.semscale_weighting!r}")
        if self.semscale_base_loss not in BASE_LOSSES:
            raise ValueError(
                f"semscale_base_loss must be one of {tuple(BASE_LOSSES)}, got {self.semscale_base_loss!r}"
            )
        if self.semscale_pool_dtype not in POOL_DTYPES:
            raise ValueError(
                f"semscale_pool_dtype must be one of {tuple(POOL_DTYPES)}, got {self.semscale_pool_dtype!r}"
            )
        if not 0 <= self.semscale_warmup_epochs < math.inf:
            raise ValueError(f"semscale_warmup_epochs must be finite and >= 0, got {self.semscale_warmup_epochs}")
        check_int("semscale_warmup_steps", self.semscale_warmup_steps, minimum=0, optional=True)
        check_int("semscale_refresh_steps", self.semscale_refresh_steps, minimum=1, optional=True)
        check_int("semscale_pool_max_per_class", self.semscale_pool_max_per_class, minimum=1, optional=True)
        check_int("semscale_min_count", self.semscale_min_count, minimum=1)
        if not math.isfinite(self.semscale_power):
            raise ValueError(f"semscale_power must be finite, got {self.semscale_power}")
        if not 0.0 <= self.semscale_momentum < 1.0:
            raise ValueError(f"semscale_momentum must be in [0, 1), got {self.semscale_momentum}")
        low = 0.0 if self.semscale_weight_min is None else self.semscale_weight_min
        high = math.inf if self.semscale_weight_max is None else self.semscale_weight_max
        if not 0.0 <= low <= 1.0 <= high:
            raise ValueError(
                "need 0 <= semscale_weight_min <= 1 <= semscale_weight_max (weights have mean 1), "
                f"got {self.semscale_weight_min} and {self.semscale_weight_max}"
            )
        self.semscale_alpha = str(self.semscale_alpha)
        try:
            parse_alpha(self.semscale_alpha)
        except ValueError:
            raise ValueError(
                f'semscale_alpha must be "dim" or a positive number, got {self.semscale_alpha!r}'
            ) from None
        if not 0.0 <= self.semscale_effective_number_beta < 1.0:
            raise ValueError(
                f"semscale_effective_number_beta must be in [0, 1), got {self.semscale_effective_number_beta}"
            )
        if not 0 <= self.semscale_focal_gamma < math.inf:
            raise ValueError(f"semscale_focal_gamma must be finite and >= 0, got {self.semscale_focal_gamma}")
        if not (0 <= self.semscale_ldam_max_margin < math.inf and 0 < self.semscale_ldam_scale < math.inf):
            raise ValueError(
                "semscale_ldam_max_margin must be finite and >= 0 and semscale_ldam_scale finite and > 0, got "
                f"{self.semscale_ldam_max_margin} and {self.semscale_ldam_scale}"
            )
        if self.label_smoothing_factor > 0 and self.semscale_base_loss != "ce":
            raise ValueError(
                f"label_smoothing_factor={self.label_smoothing_factor} applies to the cross-entropy only: with "
                f'semscale_base_loss="{self.semscale_base_loss}" it would be ignored; set it to 0, or use "ce"'
            )

    @property
    def scale_alpha(self) -> float | str:
        """Deprecated: `semscale_alpha` parsed (`"dim"` or a float). Removed in 0.3; the trainer parses it itself."""
        warnings.warn(
            "SemScaleTrainingArguments.scale_alpha is deprecated and will be removed in semscale-hf 0.3; read "
            "semscale_alpha instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return parse_alpha(self.semscale_alpha)

    @property
    def pool_dtype(self) -> torch.dtype:
        """Deprecated: `semscale_pool_dtype` as a `torch.dtype`. Removed in 0.3; use `POOL_DTYPES[...]`."""
        warnings.warn(
            "SemScaleTrainingArguments.pool_dtype is deprecated and will be removed in semscale-hf 0.3; read "
            "semscale_pool_dtype instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return POOL_DTYPES[self.semscale_pool_dtype]
