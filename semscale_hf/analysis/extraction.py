"""Feature extraction: the input of a classifier's head, with labels and predictions, for every example of a dataset.

[`extract_features`] runs a model in eval mode under `torch.no_grad()` over batches of model inputs, captures the
head's input with [`FeatureCapture`] and shows a tqdm progress bar. [`save_features`] / [`load_features`] store the
result as `.safetensors` or `.npz`, the files `semscale analyze --features` reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.capture import FeatureCapture


__all__ = ["ExtractedFeatures", "batches_from_dataset", "extract_features", "load_features", "save_features"]

# Accepted names of the arrays in a features file
_FEATURE_KEYS = ("features", "embeddings")
_OPTIONAL_KEYS = ("predictions", "train_counts")


@dataclass
class ExtractedFeatures:
    """Features with their labels and, when known, predictions and training counts. Tensors live on the CPU.

    Attributes:
        features (`torch.Tensor` of shape `(num_samples, dim)`): head inputs, float32.
        labels (`torch.Tensor` of shape `(num_samples,)`): int64 class ids.
        predictions (`torch.Tensor` of shape `(num_samples,)`, *optional*): int64 arg-max of the logits.
        train_counts (`torch.Tensor` of shape `(num_classes,)`, *optional*): training samples per class.
    """

    features: torch.Tensor
    labels: torch.Tensor
    predictions: torch.Tensor | None = None
    train_counts: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.features.ndim != 2:
            raise ValueError(f"features must be 2-D (num_samples, dim), got shape {tuple(self.features.shape)}")
        for name in ("labels", "predictions"):
            values = getattr(self, name)
            if values is not None and tuple(values.shape) != (self.features.shape[0],):
                raise ValueError(
                    f"{name} must have shape ({self.features.shape[0]},) to match the features, got "
                    f"{tuple(values.shape)}"
                )


@torch.no_grad()
def extract_features(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    *,
    num_labels: int | None = None,
    feature_module: str | None = None,
    device: str | torch.device | None = None,
    label_key: str = "labels",
    progress: bool = True,
    total: int | None = None,
    desc: str = "Extracting features",
) -> ExtractedFeatures:
    """Runs `model` over `batches` and collects the head's input, the labels and the predicted classes.

    Args:
        model (`nn.Module`):
            A classifier whose forward takes the batch's keys (e.g. a transformers `...ForImageClassification`) and
            returns logits (an object with `.logits`, a tuple whose first item is the logits, or a tensor).
        batches (`Iterable[Mapping[str, Any]]`):
            Batches of model inputs with a `label_key` entry, e.g. a `DataLoader` or [`batches_from_dataset`].
        num_labels (`int`, *optional*):
            Number of classes; defaults to `model.config.num_labels`. Used to find the head (see [`FeatureCapture`]).
        feature_module (`str`, *optional*):
            Qualified name of the head when it cannot be detected.
        device (`str` or `torch.device`, *optional*):
            Where to run; defaults to the device of the model's parameters.
        label_key (`str`, *optional*, defaults to `"labels"`):
            Batch key of the labels; it is removed before the forward pass so that the model computes no loss.
        progress (`bool`, *optional*, defaults to `True`):
            Show a tqdm progress bar.
        total (`int`, *optional*):
            Number of batches for the progress bar; defaults to `len(batches)` when available.
        desc (`str`, *optional*):
            Label of the progress bar.

    Returns:
        [`ExtractedFeatures`]: float32 features, labels and predictions, on the CPU.

    Example:

    >>> import torch
    >>> from torch import nn
    >>> class Classifier(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.body, self.classifier = nn.Linear(4, 8), nn.Linear(8, 3)
    ...
    ...     def forward(self, inputs):
    ...         return self.classifier(self.body(inputs).relu())
    >>> batches = [{"inputs": torch.randn(5, 4), "labels": torch.tensor([0, 1, 2, 0, 1])}]
    >>> extracted = extract_features(Classifier(), batches, num_labels=3, progress=False)
    >>> extracted.features.shape, extracted.predictions.shape
    (torch.Size([5, 8]), torch.Size([5]))
    """
    if num_labels is None:
        num_labels = getattr(getattr(model, "config", None), "num_labels", None)
        if num_labels is None:
            raise ValueError("num_labels is required for a model without `config.num_labels`")
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    if total is None and hasattr(batches, "__len__"):
        total = len(batches)  # type: ignore[arg-type]
    was_training = model.training
    model.eval()
    features, labels, predictions = [], [], []
    try:
        with FeatureCapture(model, num_labels, feature_module=feature_module) as capture:
            for batch in tqdm(batches, total=total, desc=desc, unit="batch", disable=not progress):
                inputs = dict(batch)
                if label_key not in inputs:
                    raise KeyError(f"batch has no {label_key!r} entry (keys: {sorted(inputs)}); pass label_key")
                batch_labels = torch.as_tensor(inputs.pop(label_key))
                inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
                logits = _logits(model(**inputs))
                batch_features = capture.pop()
                if batch_features is None:
                    raise RuntimeError(
                        f"the hook on {capture.module_name!r} did not fire during the forward pass; "
                        "pass feature_module with the module that produces the logits"
                    )
                if batch_features.shape[0] != batch_labels.shape[0]:
                    raise ValueError(
                        f"captured {batch_features.shape[0]} feature rows for {batch_labels.shape[0]} labels; "
                        f"is {capture.module_name!r} the classification head?"
                    )
                features.append(batch_features.float().cpu())
                labels.append(batch_labels.long().cpu())
                predictions.append(logits.argmax(dim=-1).cpu())
    finally:
        model.train(was_training)
    if not features:
        raise ValueError("got no batches: the dataset is empty")
    return ExtractedFeatures(torch.cat(features), torch.cat(labels), torch.cat(predictions))


def batches_from_dataset(dataset: Any, batch_size: int) -> _DatasetBatches:
    """Slices a (transformed) dataset into batches: `dataset[i : i + batch_size]` for each `i`.

    With a `datasets.Dataset` that has a transform producing model inputs (such as
    [`semscale_hf.data.make_image_transform`] via `with_transform`), each slice is one transformed batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return _DatasetBatches(dataset, batch_size)


class _DatasetBatches:
    def __init__(self, dataset: Any, batch_size: int) -> None:
        self.dataset, self.batch_size = dataset, batch_size

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        for start in range(0, len(self.dataset), self.batch_size):
            yield self.dataset[start : start + self.batch_size]


def save_features(path: str | os.PathLike[str], extracted: ExtractedFeatures) -> Path:
    """Saves features (and labels, predictions, training counts) as `.safetensors` or `.npz`, by the suffix."""
    path = Path(path)
    tensors = {"features": extracted.features.contiguous(), "labels": extracted.labels.contiguous()}
    for key in _OPTIONAL_KEYS:
        value = getattr(extracted, key)
        if value is not None:
            tensors[key] = torch.as_tensor(value).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path))
    elif path.suffix == ".npz":
        np.savez(path, **{k: v.numpy() for k, v in tensors.items()})
    else:
        raise ValueError(f"unsupported features file {path.name!r}: use a .safetensors or .npz suffix")
    return path


def load_features(path: str | os.PathLike[str]) -> ExtractedFeatures:
    """Loads a `.safetensors` or `.npz` file with `features` (or `embeddings`) and `labels`, and optionally
    `predictions` (class ids or 2-D logits) and `train_counts`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        arrays = dict(load_file(str(path)))
    elif path.suffix == ".npz":
        with np.load(path) as data:
            arrays = {k: torch.from_numpy(data[k]) for k in data.files}
    else:
        raise ValueError(f"unsupported features file {path.name!r}: use a .safetensors or .npz suffix")
    feature_key = next((k for k in _FEATURE_KEYS if k in arrays), None)
    if feature_key is None or "labels" not in arrays:
        raise ValueError(
            f"{path.name} must hold 'features' (or 'embeddings') and 'labels' arrays, found {sorted(arrays)}"
        )
    features = arrays[feature_key]
    if not features.is_floating_point():
        raise TypeError(f"{feature_key} in {path.name} must be floating point, got {features.dtype}")
    labels = arrays["labels"]
    if labels.is_floating_point():
        raise TypeError(f"labels in {path.name} must be integer class ids, got {labels.dtype}")
    predictions = arrays.get("predictions")
    if predictions is not None and predictions.ndim == 2:
        predictions = predictions.argmax(dim=-1)
    return ExtractedFeatures(features, labels.long(), predictions, arrays.get("train_counts"))


def _logits(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = getattr(outputs, "logits", None)
    if logits is None and isinstance(outputs, (tuple, list)):
        logits = outputs[0]
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"cannot find logits in the model output of type {type(outputs).__name__}")
    return logits
