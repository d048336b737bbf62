"""One label counter for datasets of every kind: the trainer, the callback and the data helpers all count here.

A [`~datasets.Dataset`] is counted from its label column in the Arrow format, which skips image decoding and any
transform set on the dataset (about 100x faster than converting a column element by element); any other dataset
(a torch `Dataset`, a list of dicts) is read item by item. A column of label lists (token classification: one tag per
token, -100 on special tokens and sub-words) is counted per token.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from torch.utils.data import IterableDataset


__all__ = ["LABEL_COLUMNS", "class_counts", "count_labels", "count_positives", "is_streaming"]

LABEL_COLUMNS = ("labels", "label")
"""Label columns looked for, in this order, when none is named (the names `Trainer` and `datasets` use)."""


def is_streaming(dataset: Any) -> bool:
    """Whether `dataset` is iterable only (a `datasets.IterableDataset`, a torch `IterableDataset`, a generator)."""
    if type(dataset).__name__ == "IterableDataset" or isinstance(dataset, (IterableDataset, Iterator)):
        return True
    return not hasattr(dataset, "__len__")


def count_labels(
    dataset: Any,
    num_classes: int | None = None,
    *,
    label_column: str | None = None,
    ignore_index: int | None = None,
) -> list[int]:
    """Number of examples per class in a dataset.

    Args:
        dataset ([`~datasets.Dataset`], or any sized iterable of mappings):
            The dataset; a [`~datasets.Dataset`] is read from its label column, anything else item by item.
        num_classes (`int`, *optional*):
            Length of the result. Defaults to the number of names of a [`~datasets.ClassLabel`] column, otherwise to
            the largest label plus one.
        label_column (`str`, *optional*):
            Name of the label column; defaults to the first of `LABEL_COLUMNS` that the dataset has.
        ignore_index (`int`, *optional*):
            Label value of rows that are not counted (e.g. -100); by default every row counts.

    Returns:
        `list[int]`: `counts[c]` is the number of rows with label `c` (0 for absent classes).

    Raises:
        `ValueError`: no label column, labels outside `[0, num_classes)`, or an iterable-only (streaming) dataset,
            which is never read to count it. `TypeError`: labels that are not integer class ids.
    """
    if is_streaming(dataset):
        raise ValueError(
            f"cannot count the labels of an iterable (streaming) dataset ({type(dataset).__name__}) without reading "
            "the whole stream: pass class_counts=[...] (training samples per class)"
        )
    labels, column, named_classes = read_labels(dataset, label_column)
    if num_classes is None:
        num_classes = named_classes
    labels = labels.astype(np.int64)
    if ignore_index is not None:
        labels = labels[labels != ignore_index]
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    check_label_range(labels, num_classes, column, suggest_ignore_index=ignore_index is None)
    return np.bincount(labels, minlength=num_classes).tolist()


def count_positives(dataset: Any, num_classes: int, *, label_column: str | None = None) -> list[int]:
    """Positive examples per class of a multi-label dataset (multi-hot label vectors; an entry above 0.5 counts).

    Read from the Arrow column of a [`~datasets.Dataset`] (no decoding, no transform), item by item otherwise.

    Raises:
        `ValueError`: no label column, label vectors not of length `num_classes`, or a streaming dataset.
    """
    if is_streaming(dataset):
        raise ValueError(
            f"cannot count the labels of an iterable (streaming) dataset ({type(dataset).__name__}) without reading "
            "the whole stream: pass class_counts=[...] (positive examples per class)"
        )
    names = getattr(dataset, "column_names", None)
    if names is not None and hasattr(dataset, "select_columns"):
        column = label_column or next((c for c in LABEL_COLUMNS if c in names), None)
        if column is None or column not in names:
            raise ValueError(_not_found(label_column, f"the dataset has columns {names}"))
        array = dataset.select_columns([column]).with_format("arrow")[:][column]
        values = pc.list_flatten(array).to_numpy(zero_copy_only=False) if _is_list(array.type) else None
        # Each row's length, not only the total: rows of 3 and 1 values would pass as two rows of 2. A null row
        # has no length (NaN) and fails too.
        lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False) if values is not None else None
        rows_fit = lengths is not None and bool(np.all(lengths == num_classes))
        rows = len(array)
    else:
        column = label_column or "labels"
        vectors = [np.ravel(np.asarray(_item_value(item, label_column)[1], dtype=np.float64)) for item in dataset]
        values, rows = (np.concatenate(vectors) if vectors else np.zeros(0)), len(vectors)
        rows_fit = all(v.size == num_classes for v in vectors)
    if not rows_fit:
        raise ValueError(
            f"column {column!r} must hold one multi-hot vector of length {num_classes} (num_labels) per example"
        )
    return (values.reshape(rows, num_classes) > 0.5).sum(axis=0).astype(int).tolist()


def read_labels(dataset: Any, label_column: str | None = None) -> tuple[np.ndarray, str, int | None]:
    """The label column as int64 NumPy array, the column's name, and its number of classes if it is a `ClassLabel`."""
    names = getattr(dataset, "column_names", None)
    num_classes = None
    if names is not None and hasattr(dataset, "select_columns"):
        column = label_column or next((c for c in LABEL_COLUMNS if c in names), None)
        if column is None or column not in names:
            raise ValueError(_not_found(label_column, f"the dataset has columns {names}"))
        array = dataset.select_columns([column]).with_format("arrow")[:][column]
        while _is_list(array.type):
            array = pc.list_flatten(array)  # tags of every token, in order
        labels = array.to_numpy(zero_copy_only=False)
        feature = dataset.features[column]
        feature = getattr(feature, "feature", feature)  # a datasets.Sequence / List of ClassLabel
        if hasattr(feature, "num_classes"):  # a datasets.ClassLabel
            num_classes = feature.num_classes
    else:
        column = label_column or "labels"
        item_labels = [_item_label(item, label_column) for item in dataset]
        labels = np.concatenate(item_labels) if item_labels else np.zeros(0, dtype=np.int64)
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise TypeError(f"column {column!r} must hold integer class ids, got an array of {labels.dtype}")
    return labels.astype(np.int64), column, num_classes


def check_label_range(
    labels: np.ndarray, num_classes: int, column: str, *, suggest_ignore_index: bool = False
) -> None:
    """Raises a `ValueError` naming the column when a label lies outside `[0, num_classes)`.

    With `suggest_ignore_index` (a caller that takes `ignore_index` and got none), a -100 among the labels out of range
    is pointed to `ignore_index=-100`: the Hugging Face mark of tokens without a label.
    """
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        outside = labels[(labels < 0) | (labels >= num_classes)]
        advice = []
        if suggest_ignore_index and (outside == -100).any():
            advice.append("pass ignore_index=-100 to leave out the -100 of unlabelled tokens (the Hugging Face mark)")
        if (outside != -100).any() or not advice:
            advice.append("remove unlabelled rows (-1) or pass the right num_classes (the model's num_labels)")
        raise ValueError(
            f"labels must lie in [0, {num_classes}), but column {column!r} holds values from {labels.min()} to "
            f"{labels.max()} (outside that range); {'; '.join(advice)}"
        )


def _is_list(arrow_type: pa.DataType) -> bool:
    types = pa.types
    return types.is_list(arrow_type) or types.is_large_list(arrow_type) or types.is_fixed_size_list(arrow_type)


def _item_value(item: Any, label_column: str | None) -> tuple[str, Any]:
    """The label key of one item and its value."""
    try:
        key = label_column or next(c for c in LABEL_COLUMNS if c in item)
        return key, item[key]
    except (TypeError, KeyError, StopIteration) as error:
        found = (
            f"the dataset's items have keys {list(item)}"
            if isinstance(item, Mapping)
            else f"the dataset's items are {type(item).__name__}, not mappings"
        )
        raise ValueError(_not_found(label_column, found)) from error


def _not_found(label_column: str | None, found: str) -> str:
    """The message for a missing label column; the trainer's class_counts is advice only when no column was named."""
    if label_column is None:
        looked_for = " and ".join(map(repr, LABEL_COLUMNS))
        return (
            f"label column not found: looked for {looked_for}, but {found}; pass label_column=... with the label "
            "column's name (or class_counts=[...] to the trainer)"
        )
    return f"column {label_column!r} not found; {found}: pass label_column=... with the label column's name"


def _item_label(item: Any, label_column: str | None) -> np.ndarray:
    """The class ids of one item, flattened; only integers pass, as in the Arrow path (no cast of 1.7 or "1")."""
    key, value = _item_value(item, label_column)
    ids = np.asarray(value)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):  # an empty token list reads as float64
        got = repr(value) if ids.ndim == 0 else f"an array of {ids.dtype}"
        raise TypeError(f"column {key!r} must hold integer class ids, got {got}; map the labels to ids 0..C-1 first")
    return np.ravel(ids).astype(np.int64)


def class_counts(dataset: Any, label_column: str = "label", num_classes: int | None = None) -> list[int]:
    """Number of rows per class of a [`~datasets.Dataset`] (see [`count_labels`]).

    Args:
        dataset ([`~datasets.Dataset`]):
            Dataset with an integer label column.
        label_column (`str`, *optional*, defaults to `"label"`):
            Name of the label column.
        num_classes (`int`, *optional*):
            Length of the result. Defaults to the number of names of a [`~datasets.ClassLabel`] column, otherwise to
            the largest label plus one.

    Returns:
        `list[int]`: `counts[c]` is the number of rows with label `c` (0 for absent classes).

    Example:

    >>> import datasets
    >>> class_counts(datasets.Dataset.from_dict({"label": [0, 2, 2]}))
    [1, 0, 2]
    """
    return count_labels(dataset, num_classes, label_column=label_column)
