"""The state of dynamic semantic-scale-balanced learning: feature pool, scales, class weights and stage.

`SemScaleBalancer` owns the mutable training state and turns it into class weights; it knows nothing of the
Trainer or of processes (the trainer gathers features across processes before `record`, so every rank holds the
same pool and computes the same weights). The two stages after construction:

* `"warmup"`: the loss is unweighted while the pool fills;
* `"balanced"`: after the first `refresh()`, the loss uses `class_weights`, recomputed at every later refresh.

This module imports only torch and safetensors.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import torch
from safetensors.torch import save_file

from . import metric_keys as keys
from ._validation import check_int, parse_alpha
from .pool import FeaturePool
from .scales import class_semantic_scales
from .weights import WEIGHTINGS, blend_weights, check_bounds, check_power, class_weights_by


__all__ = ["POOL_FILE", "STAGES", "STATE_FILE", "TOKEN_POOL_MAX_PER_CLASS", "SemScaleBalancer"]

logger = logging.getLogger(__name__)

STATE_FILE = "semscale_state.safetensors"
"""Weights, scales, counts and stage: small, saved with every model save (and pushed to the Hub)."""
POOL_FILE = "semscale_pool.safetensors"
"""The feature pool: saved in checkpoints only, for an exact resume."""
STAGES = ("warmup", "balanced")
TOKEN_POOL_MAX_PER_CLASS = 1024
"""Default pool capacity per class of token classification, where a class's training count is its number of tokens
(the "O" tag of NER alone can have millions): 1,024 features of dimension 768 in float32 are 3.1 MB per tag."""


class SemScaleBalancer:
    """Feature pool plus the rule that turns it into class weights.

    Args:
        class_counts (`Sequence[int]`):
            Training samples per class; the pool capacity of each class (capped by `pool_max_per_class`) and the
            count-based baselines come from it.
        weighting (`str`, *optional*, defaults to `"semantic_scale"`):
            A key of [`~semscale_hf.core.weights.WEIGHTINGS`]: `"semantic_scale"`, `"effective_number"`,
            `"inverse_frequency"` or `"none"` (scales are still measured and reported, the weights stay 1).
        power, momentum, weight_min, weight_max, alpha, center, normalize, min_count, pool_max_per_class, pool_dtype,
        pool_device, effective_number_beta:
            As the `semscale_*` fields of [`~semscale_hf.SemScaleTrainingArguments`] (`pool_dtype` a `torch.dtype`).
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        *,
        weighting: str = "semantic_scale",
        power: float = 1.0,
        momentum: float = 0.0,
        weight_min: float | None = None,
        weight_max: float | None = None,
        alpha: float | str = "dim",
        center: bool = True,
        normalize: bool = False,
        min_count: int = 2,
        pool_max_per_class: int | None = None,
        pool_dtype: torch.dtype = torch.float32,
        pool_device: torch.device | str = "cpu",
        effective_number_beta: float = 0.9999,
    ) -> None:
        counts = torch.as_tensor(list(class_counts), dtype=torch.long)
        if counts.ndim != 1 or counts.numel() == 0 or bool((counts < 0).any()):
            raise ValueError(
                f"class_counts must be a non-empty list of non-negative integers, got {list(class_counts)}"
            )
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {weighting!r}; pass one of {sorted(WEIGHTINGS)}")
        # the settings fail here, not at the first refresh after the whole warm-up
        check_power(power)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        check_bounds(weight_min, weight_max)
        if alpha != "dim":
            parse_alpha(alpha)
        check_int("min_count", min_count, minimum=1)
        check_int("pool_max_per_class", pool_max_per_class, minimum=1, optional=True)
        self.class_counts = counts
        self.weighting = weighting
        self.power, self.momentum = power, momentum
        self.weight_min, self.weight_max = weight_min, weight_max
        self.alpha, self.center, self.normalize, self.min_count = alpha, center, normalize, min_count
        self.effective_number_beta = effective_number_beta
        capacities = counts if pool_max_per_class is None else counts.clamp_max(pool_max_per_class)
        self.pool = FeaturePool(capacities, dtype=pool_dtype, device=pool_device)
        self._start()

    def reset(self) -> None:
        """Back to the state right after construction: an empty pool of any dimension, weights 1, warm-up.

        `SemScaleTrainer` calls it at the start of every `train()` that does not resume from a checkpoint.
        """
        pool = self.pool
        self.pool = FeaturePool(pool.capacities, dtype=pool.dtype, device=pool.device)
        self._start()

    def _start(self) -> None:
        num_classes = self.class_counts.numel()
        self.class_weights = torch.ones(num_classes, dtype=torch.float64)
        self.semantic_scales = torch.full((num_classes,), float("nan"), dtype=torch.float64)
        self.stage = "warmup"
        self.num_refreshes = 0
        self.last_refresh_step = 0
        self.warmup_start_step = 0  # moved to the resume step when a checkpoint held no semscale state
        self.first_measurement_features = 0  # pooled features at the first refresh
        # a refresh waits until the pool holds this many features (after a resume whose pool file was missing)
        self.min_pool_features = 0
        self.pool_restored = False  # set by `load`: True when the saved pool (possibly empty) is in place
        # set by `load`: "missing", "class counts changed" or "pool capacities changed"
        self.pool_not_restored_because: str | None = None
        self.restart_warmup = False  # set when a resume found no state: warm-up starts again at the resume step

    @property
    def num_classes(self) -> int:
        return self.class_counts.numel()

    @property
    def class_weights(self) -> torch.Tensor:
        """Current class weights, float64 on the CPU (mean 1 over the measured classes); the state that is saved."""
        return self._class_weights

    @class_weights.setter
    def class_weights(self, value: torch.Tensor) -> None:
        self._class_weights = value
        self._loss_weights = None  # the copy on the training device is made again on first use

    def record(self, features: torch.Tensor, labels: torch.Tensor, *, validate: bool = True) -> None:
        """Writes a batch of features into the pool (labels -100 are skipped; see `FeaturePool.add` for `validate`)."""
        self.pool.add(features, labels, validate=validate)

    def loss_weights(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor | None:
        """Class weights for the loss now: `None` (unweighted) during warm-up or without re-weighting.

        On `device` in `dtype` (the loss's compute dtype), copied there once per refresh, not at every call, and at
        least the smallest positive number of `dtype`; without a device, the float64 CPU weights themselves.
        """
        if self.stage == "warmup" or self.weighting == "none":
            return None
        if device is None:
            return self.class_weights
        key = (str(device), dtype)  # as asked for: "cuda" and a tensor's "cuda:0" would never compare equal
        if self._loss_weights is None or self._loss_weights[0] != key:
            weights = self.class_weights.to(device=device, dtype=dtype)
            if dtype.is_floating_point:  # a weight positive in float64 can be 0 in float32 (a large power): a class
                weights = weights.clamp_min(torch.finfo(dtype).tiny)  # weighted 0 would never be trained
            self._loss_weights = (key, weights)
        return self._loss_weights[1]

    def measure(self) -> torch.Tensor:
        """Semantic scales of the pooled features, float64 `(num_classes,)`; NaN for classes not yet measurable."""
        if self.pool.dim is None:
            return torch.full((self.num_classes,), float("nan"), dtype=torch.float64)
        features, labels = self.pool.storage_and_labels()  # measured in place: empty slots are labelled -100
        scales = class_semantic_scales(
            features,
            labels,
            self.num_classes,
            alpha=self.alpha,
            center=self.center,
            normalize=self.normalize,
            min_count=self.min_count,
        )
        return scales.cpu()

    def refresh(self, step: int) -> None:
        """Measures the scales, recomputes the weights and enters (or stays in) the balanced stage."""
        self.semantic_scales = self.measure()
        new = class_weights_by(
            self.weighting,
            self.semantic_scales,
            self.class_counts,
            power=self.power,
            beta=self.effective_number_beta,
            w_min=self.weight_min,
            w_max=self.weight_max,
        )
        previous = self.class_weights if self.num_refreshes > 0 else None
        # the classes whose new weight the rule derived (the others take the largest): what momentum averages
        if self.weighting == "semantic_scale":
            measured = torch.isfinite(self.semantic_scales)
        else:
            measured = self.class_counts > 0
        self.class_weights = blend_weights(
            new, previous, self.momentum, measured=measured, w_min=self.weight_min, w_max=self.weight_max
        )
        if self.num_refreshes == 0:
            self.first_measurement_features = int(self.pool.counts.sum())
        self.stage = "balanced"
        self.num_refreshes += 1
        self.last_refresh_step = step
        self.min_pool_features = 0

    def ready_to_refresh(self) -> bool:
        """False while the pool is refilling after a resume that found no pool file (see `load`)."""
        return self.min_pool_features == 0 or int(self.pool.counts.sum()) >= self.min_pool_features

    def summary(self, per_class_max: int = 20, names: Sequence[str] | None = None) -> dict[str, float]:
        """Flat `semscale/*` scalars for `Trainer.log`, per class too when there are at most `per_class_max`."""
        weights, scales = self.class_weights, self.semantic_scales
        measured = scales[torch.isfinite(scales)]
        logs = {
            keys.STAGE: 0.0 if self.stage == "warmup" else 1.0,
            keys.REFRESHES: float(self.num_refreshes),
            keys.WEIGHT_MIN: float(weights.min()),
            keys.WEIGHT_MEAN: float(weights.mean()),
            keys.WEIGHT_MAX: float(weights.max()),
            keys.CLASSES_MEASURED: float(measured.numel()),
            keys.POOL_FEATURES: float(self.pool.counts.sum()),
        }
        if measured.numel():
            low = float(measured.min())
            logs[keys.SCALE_MIN] = low
            logs[keys.SCALE_MEAN] = float(measured.mean())
            logs[keys.SCALE_MAX] = float(measured.max())
            logs[keys.IMBALANCE_RATIO] = float(measured.max()) / low if low > 0 else float("inf")
        if self.num_classes <= per_class_max:
            labels = list(names) if names is not None else [str(c) for c in range(self.num_classes)]
            for label, weight, scale in zip(labels, weights.tolist(), scales.tolist(), strict=True):
                logs[keys.class_weight(label)] = weight
                logs[keys.class_scale(label)] = scale
        return logs

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Tensors and string metadata of the small state (everything but the pool)."""
        tensors = {
            "class_weights": self.class_weights.contiguous(),
            "semantic_scales": self.semantic_scales.contiguous(),
            "class_counts": self.class_counts.contiguous(),
            "pool_counts": self.pool.counts.cpu().contiguous(),
        }
        metadata = {
            "stage": self.stage,
            "num_refreshes": str(self.num_refreshes),
            "last_refresh_step": str(self.last_refresh_step),
            "warmup_start_step": str(self.warmup_start_step),
            "first_measurement_features": str(self.first_measurement_features),
            "weighting": self.weighting,
            "settings": json.dumps(
                {"power": self.power, "momentum": self.momentum, "alpha": self.alpha, "center": self.center}
            ),
        }
        return tensors, metadata

    def save(self, directory: str | os.PathLike, *, include_pool: bool) -> None:
        """Writes `STATE_FILE` (and `POOL_FILE` when `include_pool`) into `directory`, as safetensors."""
        os.makedirs(directory, exist_ok=True)
        tensors, metadata = self.state_dict()
        save_file(tensors, os.path.join(directory, STATE_FILE), metadata=metadata)
        pool_path = os.path.join(directory, POOL_FILE)
        if include_pool and self.pool.dim is not None:
            pool_state = {k: v.cpu().contiguous() for k, v in self.pool.state_dict().items()}
            save_file(pool_state, pool_path)
        elif os.path.isfile(pool_path):  # an older save's pool is no part of this state: `load` would read it
            os.remove(pool_path)

    def load(self, directory: str | os.PathLike, *, feature_dim: int | None = None) -> bool:
        """Restores what `save` wrote, after checking every value; False when `directory` holds no semscale state.

        When the saved pool cannot be restored, the pool starts empty, `pool_not_restored_because` says why
        (`"missing"`: no `POOL_FILE`; `"class counts changed"`: the training set's counts differ from the checkpoint's,
        so the capacities do), the loaded weights stay in force, and the next refresh waits until the pool holds as
        many features as the first measurement had. A saved pool that was empty needs no file (`None`: nothing lost).

        Args:
            directory (`str` or `os.PathLike`): a checkpoint folder.
            feature_dim (`int`, *optional*): the dimension the pool must have (the model head's input size).

        Raises:
            `ValueError`: a file that cannot be read, or a field that does not fit this model and its training data;
                the message names the file and the field. The balancer is then left as it was.
        """
        path = os.path.join(directory, STATE_FILE)
        if not os.path.isfile(path):
            return False
        tensors, metadata = _read_safetensors(path)
        state = _checked_state(path, tensors, metadata, self.class_counts)
        pool_path = os.path.join(directory, POOL_FILE)
        saved_counts = state["pool_counts"]
        saved_empty = saved_counts is not None and int(saved_counts.sum()) == 0
        # loaded into a new pool, swapped in below: a failed check leaves the balancer as it was
        pool = FeaturePool(self.pool.capacities, dtype=self.pool.dtype, device=self.pool.device)
        reason = None
        if not state["same_counts"]:
            reason = None if saved_empty else "class counts changed"
        elif os.path.isfile(pool_path):
            # safetensors takes "cpu", not the "cpu:0" of a CPU process group's device
            device = "cpu" if pool.device.type == "cpu" else str(pool.device)
            pool_state = _read_safetensors(pool_path, device=device)[0]
            _check_pool(pool_path, pool_state, feature_dim)
            saved_capacities = pool_state.get("capacities")
            if (
                isinstance(saved_capacities, torch.Tensor)
                and saved_capacities.shape == pool.capacities.shape
                and not torch.equal(saved_capacities.cpu().long(), pool.capacities.cpu())
            ):
                # same classes and counts, another cap (pool_max_per_class): a pool that cannot be restored as it
                # was, not a damaged file
                reason = "pool capacities changed"
            else:
                try:
                    pool.load_state_dict(pool_state)
                except ValueError as error:
                    raise ValueError(f"{pool_path}: {error}") from None
                _check_pool_counts(path, pool_path, saved_counts, pool.counts)
        elif not saved_empty:
            reason = "missing"
        # every check has passed: everything is set at once
        self.pool = pool
        self.class_weights = state["class_weights"]
        self.semantic_scales = state["semantic_scales"]
        for name in ("stage", "num_refreshes", "last_refresh_step", "warmup_start_step", "first_measurement_features"):
            setattr(self, name, state[name])
        self.pool_not_restored_because = reason
        self.pool_restored = reason is None
        # never more than the pool can hold: with smaller capacities (counts changed, a lower cap) the refresh
        # would otherwise wait for ever
        waits = reason is not None and self.num_refreshes > 0
        self.min_pool_features = min(self.first_measurement_features, int(pool.capacities.sum())) if waits else 0
        if reason == "pool capacities changed":
            logger.warning(
                f"{pool_path}: the saved pool's capacities per class ({saved_capacities.tolist()}) differ from this "
                f"balancer's ({pool.capacities.tolist()}: pool_max_per_class changed?), so the saved pool is not "
                "restored: the pool starts empty, and the checkpoint's class weights stay in force until the next "
                "refresh"
            )
        if not state["same_counts"]:
            logger.warning(
                f"{path}: the class counts of the checkpoint ({tensors['class_counts'].tolist()}) differ from this "
                f"training set's ({self.class_counts.tolist()}); the pool's capacities and count-based weights follow "
                "the training set, so the saved pool is not restored: the pool starts empty, and the checkpoint's "
                "class weights stay in force until the next refresh"
            )
        return True


def _read_safetensors(path: str, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device=device) as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except Exception as error:  # safetensors raises its own error type for a truncated or empty file
        raise ValueError(
            f"{path} cannot be read as safetensors ({type(error).__name__}: {error}); the checkpoint is damaged: "
            "resume from an earlier one"
        ) from None
    return tensors, metadata


def _checked_state(
    path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str], class_counts: torch.Tensor
) -> dict:
    """The values of a state file, each checked against this model and its training data."""
    num_classes = class_counts.numel()

    def field(name: str) -> torch.Tensor:
        if name not in tensors:
            raise ValueError(f"{path}: the field {name!r} is missing")
        value = tensors[name]
        if value.shape != (num_classes,):
            raise ValueError(
                f"{path}: {name} has shape {tuple(value.shape)}, but the model has {num_classes} labels (the "
                f"checkpoint holds weights for {value.numel()} classes); resume with the model it was trained with"
            )
        return value.to(torch.float64)

    weights, scales = field("class_weights"), field("semantic_scales")
    if not bool((torch.isfinite(weights) & (weights > 0)).all()):
        raise ValueError(f"{path}: class_weights must be finite and positive, got {weights.tolist()}")
    if bool(torch.isinf(scales).any()) or bool((scales < 0).any()):
        raise ValueError(f"{path}: semantic_scales must be non-negative or NaN (unmeasured), got {scales.tolist()}")
    same_counts = "class_counts" not in tensors or torch.equal(tensors["class_counts"].long(), class_counts)
    pool_counts = tensors.get("pool_counts")  # features the saved pool held per class (None: an older file)
    if pool_counts is not None:
        if pool_counts.shape != (num_classes,) or pool_counts.is_floating_point() or bool((pool_counts < 0).any()):
            raise ValueError(
                f"{path}: pool_counts must be non-negative integers of shape ({num_classes},), got shape "
                f"{tuple(pool_counts.shape)} and dtype {pool_counts.dtype}; the checkpoint is damaged"
            )
        pool_counts = pool_counts.long().cpu()
    state = {
        "class_weights": weights,
        "semantic_scales": scales,
        "same_counts": same_counts,
        "pool_counts": pool_counts,
    }
    stage = metadata.get("stage", "balanced")
    if stage not in STAGES:
        raise ValueError(f"{path}: stage must be one of {STAGES}, got {stage!r}")
    state["stage"] = stage
    for name in ("num_refreshes", "last_refresh_step", "warmup_start_step", "first_measurement_features"):
        text = metadata.get(name, "0")
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0:
            raise ValueError(f"{path}: {name} must be a non-negative integer, got {text!r}")
        state[name] = value
    if stage == "balanced" and state["num_refreshes"] == 0:
        raise ValueError(f"{path}: stage 'balanced' with num_refreshes 0; the metadata is inconsistent")
    return state


def _check_pool(path: str, state: dict[str, torch.Tensor], feature_dim: int | None) -> None:
    """Checks what the pool's own `load_state_dict` cannot know: the dimension and finite values."""
    features = state.get("features")
    if features is None or features.ndim != 2:
        return  # load_state_dict names what is missing or malformed
    if feature_dim is not None and features.shape[1] not in (0, feature_dim):
        raise ValueError(
            f"{path}: the pool holds features of dimension {features.shape[1]}, but the model's head takes "
            f"{feature_dim}; resume with the model it was trained with"
        )
    if features.is_floating_point() and not bool(torch.isfinite(features).all()):
        raise ValueError(f"{path}: the pool holds NaN or inf values; the checkpoint is damaged")


def _check_pool_counts(
    state_path: str, pool_path: str, saved_counts: torch.Tensor | None, pool_counts: torch.Tensor
) -> None:
    """The loaded pool holds as many features per class as the state file says the saved one did."""
    if saved_counts is None:
        raise ValueError(
            f"{state_path}: the field 'pool_counts' is missing, so {pool_path} cannot be checked against it; the "
            "checkpoint is damaged: resume from an earlier one, or delete the pool file to resume without it"
        )
    if not torch.equal(pool_counts.cpu(), saved_counts):
        raise ValueError(
            f"{pool_path}: the pool's slot counts {pool_counts.tolist()} disagree with the state file's pool_counts "
            f"{saved_counts.tolist()} (files of two different checkpoints?); resume from an earlier checkpoint, or "
            "delete the pool file to resume without it"
        )
