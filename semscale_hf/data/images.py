"""Image datasets of the examples and tests: the embedded digits, CIFAR-LT from the Hub, and image transforms.

The default data is scikit-learn's embedded `load_digits` (1,797 real 8x8 images, 10 classes), so everything here
runs offline. `load_cifar_lt` builds the usual CIFAR-10-LT / CIFAR-100-LT benchmarks from the Hub for users who have
network access.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal

import datasets
import numpy as np
import torch
from PIL import Image

from .long_tail import Profile, build_long_tailed_splits, make_long_tailed


__all__ = [
    "dataset_to_tensors",
    "load_cifar_lt",
    "load_digits_dataset",
    "load_long_tailed_digits",
    "make_image_transform",
]

# Hub repositories and their column names: cifar10 has ("img", "label"), cifar100 ("img", "fine_label",
# "coarse_label").
_CIFAR = {"cifar10": ("uoft-cs/cifar10", "img", "label"), "cifar100": ("uoft-cs/cifar100", "img", "fine_label")}


def load_digits_dataset(*, test_size: float = 0.3, seed: int = 0) -> datasets.DatasetDict:
    """Load scikit-learn's digits (1,797 8x8 grayscale images, 10 classes) as a stratified train/test
    [`~datasets.DatasetDict`].

    The data ships with scikit-learn, so no network is needed. Pixel values 0..16 are rescaled to `uint8` 0..255 and
    stored as [`~datasets.Image`] (rows decode to PIL images of mode "L"); labels are a [`~datasets.ClassLabel`] with
    names "0" to "9".

    Args:
        test_size (`float`, *optional*, defaults to `0.3`):
            Fraction of the rows that goes to the "test" split, strictly between 0 and 1.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the split. The split is stratified by label, so both splits keep the (nearly balanced) class
            proportions.

    Returns:
        [`~datasets.DatasetDict`]: splits "train" and "test" with features `{"image": Image(), "label":
        ClassLabel(...)}`.

    Example:

    >>> splits = load_digits_dataset(test_size=0.3, seed=0)
    >>> splits["train"].num_rows, splits["test"].num_rows
    (1257, 540)
    """
    from sklearn.datasets import load_digits

    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real) or not 0 < test_size < 1:
        raise ValueError(f"test_size must be a float strictly between 0 and 1, got {test_size!r}")
    digits = load_digits()
    images = (digits.images / 16 * 255).astype(np.uint8)  # (1797, 8, 8)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])}
    )
    dataset = datasets.Dataset.from_dict({"image": list(images), "label": digits.target.tolist()}, features=features)
    # `stratify_by_column` needs the ClassLabel feature set above.
    return dataset.train_test_split(test_size=test_size, stratify_by_column="label", seed=seed)


def load_long_tailed_digits(
    *, imbalance_factor: float = 10.0, profile: Profile = "exp", seed: int = 0, test_size: float = 0.3
) -> datasets.DatasetDict:
    """Digits with a long-tailed train split and the balanced test split, a small offline stand-in for CIFAR-LT.

    Args:
        imbalance_factor (`float`, *optional*, defaults to `10.0`):
            Head-to-tail ratio of the train split.
        profile (`str`, *optional*, defaults to `"exp"`):
            `"exp"` or `"step"`, see [`long_tailed_counts`].
        seed (`int`, *optional*, defaults to `0`):
            Seed of both the train/test split and the subsampling.
        test_size (`float`, *optional*, defaults to `0.3`):
            Fraction of the digits in the test split.

    Returns:
        [`~datasets.DatasetDict`]: "train" (long-tailed, class 0 is the head) and "test" (balanced, as from
        [`load_digits_dataset`]).

    Example:

    >>> from semscale_hf.data import class_counts
    >>> splits = load_long_tailed_digits(imbalance_factor=10.0)
    >>> class_counts(splits["train"])
    [122, 94, 73, 56, 43, 33, 26, 20, 15, 12]
    """
    splits = load_digits_dataset(test_size=test_size, seed=seed)
    train = make_long_tailed(splits["train"], imbalance_factor=imbalance_factor, profile=profile, seed=seed)
    return datasets.DatasetDict({"train": train, "test": splits["test"]})


def load_cifar_lt(
    name: Literal["cifar10", "cifar100"] = "cifar10",
    *,
    imbalance_factor: float = 100.0,
    profile: Profile = "exp",
    seed: int = 0,
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """CIFAR-10-LT or CIFAR-100-LT (Cao et al., 2019): the long-tailed train split and the balanced test split.

    Downloads "uoft-cs/cifar10" or "uoft-cs/cifar100" from the Hugging Face Hub (network needed on the first call),
    uses the fine labels of CIFAR-100, and keeps a seeded subset of train following [`long_tailed_counts`] with 5,000
    (CIFAR-10) or 500 (CIFAR-100) images in the head class: 12,406 and 10,847 train images at imbalance factor 100.

    Args:
        name (`str`, *optional*, defaults to `"cifar10"`):
            `"cifar10"` or `"cifar100"`.
        imbalance_factor (`float`, *optional*, defaults to `100.0`):
            Head-to-tail ratio of the train split (10, 50, 100 and 200 are the usual values).
        profile (`str`, *optional*, defaults to `"exp"`):
            `"exp"` or `"step"`.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the subsampling.
        cache_dir (`str`, *optional*):
            Passed to [`datasets.load_dataset`].

    Returns:
        [`~datasets.DatasetDict`]: "train" and "test" with columns "image" and "label".
    """
    if name not in _CIFAR:
        raise ValueError(f"name must be one of {list(_CIFAR)}, got {name!r}")
    repo_id, image_column, label_column = _CIFAR[name]
    dataset_dict = datasets.load_dataset(repo_id, cache_dir=cache_dir)
    return build_long_tailed_splits(
        dataset_dict,
        image_column=image_column,
        label_column=label_column,
        imbalance_factor=imbalance_factor,
        profile=profile,
        seed=seed,
    )


def make_image_transform(
    image_size: int,
    *,
    num_channels: int = 3,
    mean: float | Sequence[float] = 0.5,
    std: float | Sequence[float] = 0.5,
) -> Callable[[dict[str, list[Any]]], dict[str, torch.Tensor]]:
    """Build a batch transform for [`~datasets.Dataset.with_transform`] that turns images into model inputs.

    The transform maps `{"image": [PIL.Image, ...], "label": [int, ...]}` to `{"pixel_values": (batch, num_channels,
    image_size, image_size) float32, "labels": (batch,) int64}`: convert to "L" or "RGB", bilinear resize, scale to [0,
    1], then `(x - mean) / std`. This equals `ViTImageProcessorPil` with the same size, mean and std, and ran about 2x
    (RGB) to 6x (grayscale) faster on the digits.

    With [`~transformers.Trainer`], set `remove_unused_columns=False` in the training arguments: otherwise Trainer
    drops the "image" column (not an argument of `model.forward`) before the transform runs, and the transform fails
    with `KeyError: 'image'`.

    Args:
        image_size (`int`):
            Height and width of the output.
        num_channels (`int`, *optional*, defaults to `3`):
            1 (grayscale) or 3 (RGB); grayscale images are replicated to 3 channels.
        mean (`float` or `Sequence[float]`, *optional*, defaults to `0.5`):
            Per-channel mean subtracted after scaling to [0, 1]; a float applies to every channel.
        std (`float` or `Sequence[float]`, *optional*, defaults to `0.5`):
            Per-channel standard deviation; a float applies to every channel. The defaults map pixels to [-1, 1].

    Returns:
        `Callable`: the batch transform.

    Example:

    >>> splits = load_digits_dataset()
    >>> batch = splits["test"].with_transform(make_image_transform(16))[:4]
    >>> batch["pixel_values"].shape, batch["labels"].dtype
    (torch.Size([4, 3, 16, 16]), torch.int64)
    """
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if num_channels not in (1, 3):
        raise ValueError(f"num_channels must be 1 (grayscale) or 3 (RGB), got {num_channels!r}")
    mean_array = _per_channel(mean, num_channels, "mean")
    std_array = _per_channel(std, num_channels, "std")
    if np.any(std_array <= 0):
        raise ValueError(f"std must be positive, got {std!r}")
    mode = "L" if num_channels == 1 else "RGB"
    size = (int(image_size), int(image_size))

    def transform(batch: dict[str, list[Any]]) -> dict[str, torch.Tensor]:
        # Plain PIL + numpy instead of ViTImageProcessorPil: identical values, less per-image overhead.
        pixels = np.stack([np.asarray(image.convert(mode).resize(size, Image.BILINEAR)) for image in batch["image"]])
        pixels = pixels.reshape(len(pixels), *size, num_channels).astype(np.float32)
        pixels = (pixels / 255.0 - mean_array) / std_array
        return {
            "pixel_values": torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(),
            "labels": torch.as_tensor(batch["label"], dtype=torch.long),
        }

    return transform


def _per_channel(value: float | Sequence[float], num_channels: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32).reshape(-1)
    if array.size == 1:
        array = np.repeat(array, num_channels)
    if array.size != num_channels or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a finite float or {num_channels} finite floats, got {value!r}")
    return array


def dataset_to_tensors(
    dataset: datasets.Dataset,
    image_size: int,
    *,
    num_channels: int = 3,
    mean: float | Sequence[float] = 0.5,
    std: float | Sequence[float] = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Transform a whole (small) image dataset at once, e.g. for feature extraction without a DataLoader.

    Args:
        dataset ([`~datasets.Dataset`]):
            Dataset with "image" and "label" columns.
        image_size (`int`):
            Height and width of the output.
        num_channels (`int`, *optional*, defaults to `3`):
            1 (grayscale) or 3 (RGB).
        mean (`float` or `Sequence[float]`, *optional*, defaults to `0.5`):
            Per-channel mean, as in [`make_image_transform`].
        std (`float` or `Sequence[float]`, *optional*, defaults to `0.5`):
            Per-channel standard deviation, as in [`make_image_transform`].

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: `pixel_values` of shape `(num_rows, num_channels, image_size, image_size)`
        and `labels` of shape `(num_rows,)`.

    Example:

    >>> pixel_values, labels = dataset_to_tensors(load_digits_dataset()["test"], 8, num_channels=1)
    >>> tuple(pixel_values.shape), tuple(labels.shape)
    ((540, 1, 8, 8), (540,))
    """
    transform = make_image_transform(image_size, num_channels=num_channels, mean=mean, std=std)
    # with_format(None) drops any transform already set, so the raw PIL images reach ours.
    batch = transform(dataset.with_format(None)[:])
    return batch["pixel_values"], batch["labels"]
