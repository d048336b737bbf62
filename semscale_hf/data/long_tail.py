"""Long-tailed class profiles and subsets of a dataset that follow them (Cao et al. 2019; Cui et al. 2019)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Literal

import datasets
import numpy as np

from .labels import _is_list, check_label_range, read_labels


__all__ = ["build_long_tailed_splits", "long_tailed_counts", "make_long_tailed"]

Profile = Literal["exp", "step"]

_PROFILES = ("exp", "step")


def long_tailed_counts(
    max_count: int, num_classes: int, imbalance_factor: float, profile: Profile = "exp"
) -> list[int]:
    r"""Per-class sample counts of a long-tailed profile, head class first.

    - `"exp"` (Cao et al., LDAM; Cui et al., class-balanced loss): $$n_i = \lfloor n_{\max} \cdot \rho^{-i/(C-1)}
      \rfloor$$ for $$i = 0, \dots, C-1$$, where $$\rho$$ is the imbalance factor. The first count is `max_count`, the
      last `floor(max_count / imbalance_factor)`.
    - `"step"` (Cao et al.): the first `num_classes // 2` classes get `max_count`, the others `floor(max_count /
      imbalance_factor)`.

    `imbalance_factor=1` gives a balanced profile.

    Args:
        max_count (`int`):
            Count of the head class, at least 1.
        num_classes (`int`):
            Number of classes $$C$$, at least 2.
        imbalance_factor (`float`):
            Ratio $$\rho = n_{\max} / n_{\min}$$, at least 1.
        profile (`str`, *optional*, defaults to `"exp"`):
            `"exp"` or `"step"`.

    Returns:
        `list[int]`: `num_classes` non-increasing counts, each at least 1.

    Example:

    >>> long_tailed_counts(5000, 10, 100)  # CIFAR-10-LT, imbalance factor 100
    [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    >>> long_tailed_counts(100, 4, 10, profile="step")
    [100, 100, 10, 10]
    """
    if isinstance(max_count, bool) or not isinstance(max_count, numbers.Integral) or max_count < 1:
        raise ValueError(f"max_count must be an integer >= 1, got {max_count!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an integer >= 2 (a long tail needs several classes), got {num_classes!r}"
        )
    if (
        isinstance(imbalance_factor, bool)
        or not isinstance(imbalance_factor, numbers.Real)
        or not math.isfinite(imbalance_factor)
        or imbalance_factor < 1
    ):
        raise ValueError(f"imbalance_factor must be a finite number >= 1 (1 means balanced), got {imbalance_factor!r}")
    if profile not in _PROFILES:
        raise ValueError(f"profile must be one of {_PROFILES}, got {profile!r}")
    max_count, num_classes = int(max_count), int(num_classes)
    tail_count = math.floor(max_count / imbalance_factor)
    if tail_count < 1:
        raise ValueError(
            f"max_count={max_count} with imbalance_factor={imbalance_factor} leaves the tail class with no samples; "
            f"use an imbalance factor of at most {max_count}"
        )
    if profile == "step":
        num_head = num_classes // 2
        return [max_count] * num_head + [tail_count] * (num_classes - num_head)
    # Dividing (rather than multiplying by 1 / imbalance_factor) keeps the last count exactly floor(max_count /
    # imbalance_factor).
    return [math.floor(max_count / imbalance_factor ** (i / (num_classes - 1))) for i in range(num_classes)]


def make_long_tailed(
    dataset: datasets.Dataset,
    *,
    imbalance_factor: float,
    profile: Profile = "exp",
    seed: int = 0,
    label_column: str = "label",
    class_order: Sequence[int] | None = None,
    max_count: int | None = None,
) -> datasets.Dataset:
    """Subsample a dataset so that its class counts follow [`long_tailed_counts`].

    For each class a seeded random subset of the required size is drawn without replacement; the kept rows stay in
    their original order. The result is the same for the same seed, and for a fixed seed the subsets are nested: a
    larger imbalance factor keeps a subset of the rows that a smaller one keeps.

    Args:
        dataset ([`~datasets.Dataset`]):
            Source dataset, typically a balanced train split.
        imbalance_factor (`float`):
            Ratio between the head and the tail count, at least 1 (1 keeps `max_count` rows of every class).
        profile (`str`, *optional*, defaults to `"exp"`):
            `"exp"` or `"step"`, see [`long_tailed_counts`].
        seed (`int`, *optional*, defaults to `0`):
            Seed of the per-class subsampling.
        label_column (`str`, *optional*, defaults to `"label"`):
            Name of the integer label column. The number of classes comes from its [`~datasets.ClassLabel`] when there
            is one, otherwise from the largest label plus one.
        class_order (`Sequence[int]`, *optional*):
            Permutation of the class ids from head to tail: `class_order[0]` gets the largest count. Defaults to `0, 1,
            ..., C-1`.
        max_count (`int`, *optional*):
            Count of the head class. Defaults to the smallest class count in `dataset`, so every class can supply its
            share.

    Returns:
        [`~datasets.Dataset`]: the subset, with the same features as `dataset`.

    Raises:
        `ValueError`: if a class has fewer rows than its target count or none at all, the dataset is empty, the label
            column holds a list per row, or an argument is invalid.

    Example:

    >>> from semscale_hf.data import class_counts
    >>> balanced = datasets.Dataset.from_dict({"label": [c for c in range(3) for _ in range(10)]})
    >>> class_counts(make_long_tailed(balanced, imbalance_factor=10))
    [10, 3, 1]
    """
    labels, _, num_classes = read_labels(dataset, label_column)
    # read_labels flattens a column of lists (token tags), whose positions are not rows.
    if _is_list(dataset.data.schema.field(label_column).type):
        raise ValueError(
            f"make_long_tailed needs one integer label per row, but column {label_column!r} holds a list per row "
            "(token tags or multi-hot labels); pass label_column with the name of a single-label column"
        )
    if not labels.size:
        raise ValueError(f"cannot make a long-tailed subset: the dataset has no rows (column {label_column!r})")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    check_label_range(labels, num_classes, label_column)
    available = np.bincount(labels, minlength=num_classes)
    # Every class of a profile gets at least one row, so no max_count makes up for an empty one.
    missing = np.flatnonzero(available == 0).tolist()
    if missing:
        raise ValueError(
            f"classes {missing} have no rows in {label_column!r}, and every class of a long-tailed profile needs at "
            "least one; remap the labels to consecutive ids of the classes present (and cast the column to a "
            "ClassLabel without the empty names, if it has one)"
        )
    if class_order is None:
        class_order = list(range(num_classes))
    else:
        class_order = [int(c) for c in class_order]
        if sorted(class_order) != list(range(num_classes)):
            raise ValueError(
                f"class_order must be a permutation of 0..{num_classes - 1} (head class first), got {class_order}"
            )
    if max_count is None:
        max_count = int(available.min())
    counts = long_tailed_counts(max_count, num_classes, imbalance_factor, profile)

    keep = []
    targets = dict(zip(class_order, counts, strict=True))
    for label in range(num_classes):
        target = targets[label]
        if available[label] < target:
            raise ValueError(
                f"Class {label} has {available[label]} rows but the {profile!r} profile asks for {target}; "
                "lower max_count or change class_order"
            )
        # One generator per class and a prefix of one permutation: the rows kept for a class depend only on (seed,
        # label), so for a fixed seed a larger imbalance factor keeps a subset of the rows a smaller one keeps.
        rng = np.random.default_rng([seed, label])
        keep.append(rng.permutation(np.flatnonzero(labels == label))[:target])
    return dataset.select(np.sort(np.concatenate(keep)))


def build_long_tailed_splits(
    dataset_dict: datasets.DatasetDict,
    *,
    image_column: str = "image",
    label_column: str = "label",
    imbalance_factor: float,
    profile: Profile = "exp",
    seed: int = 0,
) -> datasets.DatasetDict:
    """Normalise the columns of every split to "image" and "label", then make the "train" split long-tailed.

    This is the part of [`load_cifar_lt`] after the download. Other columns (such as CIFAR-100's "coarse_label") are
    dropped; splits other than "train" are left balanced.

    Args:
        dataset_dict ([`~datasets.DatasetDict`]):
            Splits with at least "train".
        image_column (`str`, *optional*, defaults to `"image"`):
            Name of the image column in `dataset_dict`, renamed to "image".
        label_column (`str`, *optional*, defaults to `"label"`):
            Name of the label column in `dataset_dict`, renamed to "label" (a [`~datasets.ClassLabel`] keeps its
            names).
        imbalance_factor (`float`):
            Head-to-tail ratio of the train split.
        profile (`str`, *optional*, defaults to `"exp"`):
            `"exp"` or `"step"`, see [`long_tailed_counts`].
        seed (`int`, *optional*, defaults to `0`):
            Seed of the subsampling.

    Returns:
        [`~datasets.DatasetDict`]: the same splits with columns "image" and "label", "train" long-tailed.
    """
    if "train" not in dataset_dict:
        raise ValueError(f"dataset_dict needs a 'train' split, got splits {list(dataset_dict)}")
    normalised = {}
    for split, dataset in dataset_dict.items():
        missing = [c for c in (image_column, label_column) if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"split {split!r} lacks columns {missing} (it has {dataset.column_names}); pass image_column and "
                "label_column with the names it has"
            )
        # Selecting first avoids a name clash when, e.g., "fine_label" becomes "label".
        dataset = dataset.select_columns([image_column, label_column])
        normalised[split] = dataset.rename_columns({image_column: "image", label_column: "label"})
    normalised["train"] = make_long_tailed(
        normalised["train"], imbalance_factor=imbalance_factor, profile=profile, seed=seed
    )
    return datasets.DatasetDict(normalised)
