"""Capture of the classification head's input (the penultimate features) with a forward pre-hook."""

from __future__ import annotations

from types import TracebackType

import torch
from torch import nn

from ._validation import check_int


__all__ = [
    "MULTI_LABEL",
    "FeatureCapture",
    "classification_num_labels",
    "find_classifier_head",
    "is_multi_label",
    "is_token_classifier",
]

MULTI_LABEL = "multi_label_classification"  # the `config.problem_type` of multi-hot labels

# How many candidate names an error message lists before it abbreviates.
_MAX_LISTED = 20


def _describe_linears(model: nn.Module) -> str:
    linears = [f"{name} (out_features={module.out_features})" for name, module in _named_linears(model)]
    if not linears:
        return "the model has no nn.Linear at all"
    shown = ", ".join(linears[-_MAX_LISTED:])
    if len(linears) > _MAX_LISTED:
        shown = f"... {len(linears) - _MAX_LISTED} more, " + shown
    return f"nn.Linear modules found: {shown}"


def _named_linears(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Linear]]:
    return [
        (f"{prefix}.{name}" if prefix and name else prefix or name, sub)
        for name, sub in module.named_modules()
        if isinstance(sub, nn.Linear)
    ]


def is_token_classifier(model: nn.Module) -> bool:
    """Whether `model` predicts a label per token (an `AutoModelForTokenClassification` model, also under PEFT)."""
    return "ForTokenClassification" in type(model).__name__ or any(
        "ForTokenClassification" in type(module).__name__ for module in _wrapped(model)
    )


def is_multi_label(model: nn.Module) -> bool:
    """Whether `model` is a multi-label classifier (`config.problem_type="multi_label_classification"`)."""
    return getattr(getattr(model, "config", None), "problem_type", None) == MULTI_LABEL


def classification_num_labels(model: nn.Module | None, owner: str) -> int:
    """`config.num_labels` of a classification model; a clear error, naming `owner`, for regression and unknown tasks.

    The one check of [`SemScaleTrainer`] and of the measure-only [`SemScaleCallback`].

    Raises:
        `ValueError`: `num_labels` below 2 (1 is regression) or a `problem_type` other than single- or multi-label.
    """
    config = getattr(model, "config", None)
    num_labels = getattr(config, "num_labels", None)
    if not isinstance(num_labels, int) or num_labels < 2:
        raise ValueError(
            f"{owner} needs a classification model with config.num_labels >= 2 "
            f"(an AutoModelFor*Classification model), got {num_labels!r}"
            + (" (num_labels=1 is regression, which has no classes to balance)" if num_labels == 1 else "")
        )
    problem_type = getattr(config, "problem_type", None)
    if problem_type not in (None, "single_label_classification", MULTI_LABEL):
        raise ValueError(
            f"{owner} supports single-label and multi-label classification, but config.problem_type="
            f'{problem_type!r}; set problem_type=None, "single_label_classification" or "{MULTI_LABEL}" (regression '
            "is not supported)"
        )
    return num_labels


def _wrapped(model: nn.Module) -> list[nn.Module]:
    """The models a wrapper (PEFT's `PeftModel`, `LoraModel`) holds as `base_model` / `model`, outermost first."""
    found, current = [], model
    for _ in range(3):
        current = getattr(current, "base_model", None) or getattr(current, "model", None)
        if not isinstance(current, nn.Module) or current in found:
            break
        found.append(current)
    return found


def find_classifier_head(model: nn.Module, num_labels: int) -> tuple[str, nn.Linear]:
    """Finds the classification head of `model`: the last `nn.Linear` with `out_features == num_labels`.

    This covers the `classifier` of ViT, DeiT, Swin, ConvNeXt, BEiT, BERT, ..., the `classifier.1` of ResNet, RegNet
    and BiT (an `nn.Sequential(Flatten, Linear)`), and the `fc`/`head`/`score` of others. When `num_labels` equals a
    hidden size, an inner layer can match too; the head, applied last, is registered last. Models with two heads
    (DeiT with teacher, LeViT, SwiftFormer) need an explicit `feature_module`: they raise a `ValueError` naming both.

    Args:
        model (`nn.Module`):
            The classification model.
        num_labels (`int`):
            Number of classes, i.e. the head's `out_features` (`model.config.num_labels` for transformers models).

    Returns:
        `tuple[str, nn.Linear]`: the module's qualified name (as in `model.named_modules()`) and the module.

    Raises:
        `ValueError`: if no `nn.Linear` has `out_features == num_labels` (the message lists the linear layers
            found), or a transformers model has two heads beside its backbone.

    Example:

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 2))
    >>> find_classifier_head(model, num_labels=2)[0]
    '2'
    """
    hits = [(name, module) for name, module in _named_linears(model) if module.out_features == num_labels]
    if not hits:
        raise ValueError(
            f"no nn.Linear with out_features={num_labels} (num_labels) in {type(model).__name__}; "
            f"{_describe_linears(model)}. Check num_labels, or pass the head's name as feature_module "
            "(semscale_feature_module of SemScaleTrainingArguments)."
        )
    heads = _heads_beside_the_backbone(model, hits)
    if len(heads) > 1:  # DeiT with teacher, LeViT, SwiftFormer: which one is measured is the user's choice
        raise ValueError(
            f"{type(model).__name__} has {'two' if len(heads) == 2 else len(heads)} classification heads "
            f"({', '.join(repr(name) for name in heads)}): pass the one to measure as feature_module "
            "(semscale_feature_module of SemScaleTrainingArguments)"
        )
    return hits[-1]


def _heads_beside_the_backbone(model: nn.Module, hits: list[tuple[str, nn.Linear]]) -> list[str]:
    """The matching layers of a transformers model outside its backbone that read features of the last one's width.

    One per top-level module. Layers inside the backbone (`base_model_prefix`) can match when `num_labels` equals a
    hidden size, and a projection before the head (Wav2Vec2's `projector`) when it has `num_labels` outputs; neither
    is a second head. Models without a backbone attribute (hand-written, or wrapped by PEFT) are not checked.
    """
    children = dict(model.named_children())
    backbone = getattr(model, "base_model_prefix", None)
    if not backbone or backbone not in children:
        return []
    width = hits[-1][1].in_features
    outside = {
        name.split(".", 1)[0]: name
        for name, module in hits
        if name.split(".", 1)[0] != backbone and module.in_features == width
    }
    return list(outside.values())


def _resolve_named_head(model: nn.Module, feature_module: str, num_labels: int) -> tuple[str, nn.Linear]:
    modules = dict(model.named_modules())
    if feature_module not in modules:
        raise ValueError(
            f"feature_module={feature_module!r} is not a module of {type(model).__name__}; "
            f"{_describe_linears(model)}. Pass one of these names (or None to detect the head)."
        )
    module = modules[feature_module]
    if isinstance(module, nn.Linear):
        name, head = feature_module, module
    else:
        # A container such as ResNet's `classifier = nn.Sequential(Flatten, Linear)`: its own input is [B, C, 1, 1],
        # the input of its last Linear is the 2-D feature matrix the head really multiplies.
        inner = _named_linears(module, prefix=feature_module)
        if not inner:
            raise ValueError(
                f"feature_module={feature_module!r} is a {type(module).__name__} with no nn.Linear inside; "
                f"{_describe_linears(model)}. Pass the name of the layer that produces the logits."
            )
        name, head = inner[-1]
    if head.out_features != num_labels:
        raise ValueError(
            f"feature_module={feature_module!r} resolves to {name!r} with out_features={head.out_features}, "
            f"but num_labels={num_labels}. Pass the module that produces the logits, or fix num_labels."
        )
    return name, head


class FeatureCapture:
    """Keeps the input of a model's classification head from the latest forward pass.

    A forward pre-hook on the head stores its input, detached. Each call overwrites the previous one and nothing
    accumulates, so a forward pass that runs again (gradient checkpointing) cannot double-count: the caller reads
    [`~FeatureCapture.features`] once per step. Use as a context manager or call [`~FeatureCapture.close`].

    Args:
        model (`nn.Module`):
            The classification model, unwrapped (not the `DistributedDataParallel` wrapper; the hook on the inner
            module still fires under DDP).
        num_labels (`int`):
            Number of classes; the head's `out_features` must equal it.
        feature_module (`str`, *optional*):
            Qualified name of the head, e.g. `"classifier"`. A container (ResNet's `nn.Sequential(Flatten, Linear)`)
            resolves to its last `nn.Linear`. Defaults to the last `nn.Linear` with `out_features == num_labels`
            (see [`find_classifier_head`]).
        per_token (`bool`, *optional*, defaults to `False`):
            Token classification: keep the head input `(batch, tokens, dim)` as it is (one feature per token).
            Otherwise every trailing dimension is flattened into one feature per example.

    Attributes:
        features (`torch.Tensor` of shape `(batch, dim)` (or `(batch, tokens, dim)` with `per_token`) or `None`):
            The head input of the latest forward pass (detached, in the dtype the head received), or `None`.
        module_name (`str`):
            Qualified name of the hooked `nn.Linear`.
        head (`nn.Linear`):
            The hooked module; `F.linear(features, head.weight, head.bias)` gives the logits.
        dim (`int`):
            Feature dimension (the head's `in_features`).

    Example:

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 2))
    >>> with FeatureCapture(model, num_labels=2) as capture:
    ...     logits = model(torch.randn(4, 10))
    ...     features = capture.pop()
    >>> features.shape, capture.module_name, capture.features
    (torch.Size([4, 20]), '2', None)
    """

    def __init__(
        self, model: nn.Module, num_labels: int, feature_module: str | None = None, *, per_token: bool = False
    ) -> None:
        check_int("num_labels", num_labels, minimum=1)
        self.per_token = per_token
        if feature_module is None:
            self.module_name, self.head = find_classifier_head(model, num_labels)
        else:
            self.module_name, self.head = _resolve_named_head(model, feature_module, num_labels)
        self.dim: int = self.head.in_features
        self.features: torch.Tensor | None = None
        self._handle = self.head.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        features = args[0].detach()
        # [B, C, 1, 1] of a pooled CNN becomes [B, C]; a token classifier's [B, T, H] stays (a feature per token)
        if features.ndim > 2 and not self.per_token:
            features = features.flatten(1)
        self.features = features  # overwrite: a re-run forward must not add a second copy
        return None  # a returned value would replace the head's input

    def pop(self) -> torch.Tensor | None:
        """Returns the latest captured features and clears them, so that a stale batch is never read twice."""
        features, self.features = self.features, None
        return features

    def close(self) -> None:
        """Removes the hook and drops the stored features. Safe to call more than once."""
        self._handle.remove()
        self.features = None

    def __enter__(self) -> FeatureCapture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(module_name={self.module_name!r}, dim={self.dim})"
