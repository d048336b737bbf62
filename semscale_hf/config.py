"""`SemScaleTrainingArguments`: `TrainingArguments` plus the options of semantic-scale-balanced training.

Every new field starts with `semscale_`, so none can collide with a `TrainingArguments` field (which already has
`warmup_*` fields of its own), and all are settable from the command line through `HfArgumentParser`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments


WEIGHTINGS = ("semantic_scale", "effective_number", "inverse_frequency", "none")
BASE_LOSSES = ("ce", "focal", "ldam")
POOL_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class SemScaleTrainingArguments(TrainingArguments):
    """[`~transformers.TrainingArguments`] with the options of dynamic semantic-scale-balanced learning.

    The three stages: warm-up with the unweighted base loss while the feature pool fills
    (`semscale_warmup_epochs` or `semscale_warmup_steps`); a first measurement of the semantic scales from the pool;
    then weighted training, the pool updated every step and the weights refreshed every `semscale_refresh_steps`
    optimizer steps (default: once per epoch).
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
        default=None, metadata={"help": "Cap of the per-class pool capacity (default: the class's training count)."}
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
            raise ValueError(f"semscale_weighting must be one of {WEIGHTINGS}, got {self.semscale_weighting!r}")
        if self.semscale_base_loss not in BASE_LOSSES:
            raise ValueError(f"semscale_base_loss must be one of {BASE_LOSSES}, got {self.semscale_base_loss!r}")
        if self.semscale_pool_dtype not in POOL_DTYPES:
            raise ValueError(
                f"semscale_pool_dtype must be one of {tuple(POOL_DTYPES)}, got {self.semscale_pool_dtype!r}"
            )
        if not self.semscale_warmup_epochs >= 0:
            raise ValueError(f"semscale_warmup_epochs must be >= 0, got {self.semscale_warmup_epochs}")
        _check_optional_int("semscale_warmup_steps", self.semscale_warmup_steps, minimum=0)
        _check_optional_int("semscale_refresh_steps", self.semscale_refresh_steps, minimum=1)
        _check_optional_int("semscale_pool_max_per_class", self.semscale_pool_max_per_class, minimum=1)
        _check_optional_int("semscale_min_count", self.semscale_min_count, minimum=1)
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
        _ = self.scale_alpha  # raises on a bad value
        if not 0.0 <= self.semscale_effective_number_beta < 1.0:
            raise ValueError(
                f"semscale_effective_number_beta must be in [0, 1), got {self.semscale_effective_number_beta}"
            )
        if self.semscale_focal_gamma < 0:
            raise ValueError(f"semscale_focal_gamma must be >= 0, got {self.semscale_focal_gamma}")
        if self.semscale_ldam_max_margin < 0 or self.semscale_ldam_scale <= 0:
            raise ValueError("semscale_ldam_max_margin must be >= 0 and semscale_ldam_scale > 0")

    @property
    def scale_alpha(self) -> float | str:
        """`semscale_alpha` as the math functions take it: `"dim"` or a positive float."""
        if self.semscale_alpha == "dim":
            return "dim"
        try:
            alpha = float(self.semscale_alpha)
        except ValueError:
            raise ValueError(
                f'semscale_alpha must be "dim" or a positive number, got {self.semscale_alpha!r}'
            ) from None
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f'semscale_alpha must be "dim" or a positive number, got {self.semscale_alpha!r}')
        return alpha

    @property
    def pool_dtype(self) -> torch.dtype:
        return POOL_DTYPES[self.semscale_pool_dtype]


def _check_optional_int(name: str, value: int | None, *, minimum: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
