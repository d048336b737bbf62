"""Datasets for long-tailed classification: label counts, long-tailed profiles and subsets, images."""

from .images import (
    dataset_to_tensors,
    load_cifar_lt,
    load_digits_dataset,
    load_long_tailed_digits,
    make_image_transform,
)
from .labels import class_counts, count_labels, count_positives
from .long_tail import build_long_tailed_splits, long_tailed_counts, make_long_tailed


__all__ = [
    "build_long_tailed_splits",
    "class_counts",
    "count_labels",
    "count_positives",
    "dataset_to_tensors",
    "load_cifar_lt",
    "load_digits_dataset",
    "load_long_tailed_digits",
    "long_tailed_counts",
    "make_image_transform",
    "make_long_tailed",
]
