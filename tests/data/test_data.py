import math

import datasets
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from semscale_hf import data
from semscale_hf.data import (
    build_long_tailed_splits,
    class_counts,
    dataset_to_tensors,
    load_cifar_lt,
    load_digits_dataset,
    load_long_tailed_digits,
    long_tailed_counts,
    make_image_transform,
    make_long_tailed,
)


@pytest.fixture(scope="module")
def digits() -> datasets.DatasetDict:
    return load_digits_dataset(test_size=0.3, seed=0)


@pytest.fixture(scope="module")
def sklearn_digits():
    return load_digits()


def _labelled(counts: list[int], class_label: bool = True) -> datasets.Dataset:
    """Rows with a `row` id and interleaved labels, `counts[c]` rows of class `c`."""
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    labels = [labels[i] for i in np.random.default_rng(123).permutation(len(labels))]
    features = datasets.Features(
        {
            "row": datasets.Value("int64"),
            "label": datasets.ClassLabel(num_classes=len(counts)) if class_label else datasets.Value("int64"),
        }
    )
    return datasets.Dataset.from_dict({"row": list(range(len(labels))), "label": labels}, features=features)


def _raw(dataset: datasets.Dataset) -> tuple[list[bytes], list[int]]:
    """Encoded image bytes and labels, for exact row comparisons without decoding."""
    table = dataset.with_format("arrow")[:]
    return table.column("image").combine_chunks().field("bytes").to_pylist(), table.column("label").to_pylist()


def _pixels(dataset: datasets.Dataset) -> np.ndarray:
    return np.stack([np.asarray(image) for image in dataset["image"]])


# ----- load_digits_dataset -----


def test_load_digits_dataset_schema_and_sizes(digits):
    assert set(digits) == {"train", "test"}
    assert (digits["train"].num_rows, digits["test"].num_rows) == (1257, 540)
    for split in digits.values():
        assert isinstance(split.features["image"], datasets.Image)
        assert split.features["label"].names == [str(i) for i in range(10)]
    image = digits["train"][0]["image"]
    assert image.mode == "L" and image.size == (8, 8)


def test_load_digits_dataset_holds_every_digit_once(digits, sklearn_digits):
    # train + test is a partition of the 1,797 sklearn images, rescaled to uint8.
    pixels = np.concatenate([_pixels(digits["train"]), _pixels(digits["test"])]).reshape(1797, 64)
    labels = np.concatenate([np.asarray(digits["train"]["label"]), np.asarray(digits["test"]["label"])])
    expected_pixels = (sklearn_digits.images / 16 * 255).astype(np.uint8).reshape(1797, 64)
    assert pixels.dtype == np.uint8 and pixels.max() == 255 and pixels.min() == 0
    order = np.lexsort(np.column_stack([pixels, labels]).T)
    expected_order = np.lexsort(np.column_stack([expected_pixels, sklearn_digits.target]).T)
    np.testing.assert_array_equal(pixels[order], expected_pixels[expected_order])
    np.testing.assert_array_equal(labels[order], sklearn_digits.target[expected_order])


def test_load_digits_dataset_is_stratified(digits, sklearn_digits):
    totals = np.bincount(sklearn_digits.target)
    test_counts = np.asarray(class_counts(digits["test"]))
    assert np.all(np.abs(test_counts - 0.3 * totals) <= 1)
    np.testing.assert_array_equal(test_counts + class_counts(digits["train"]), totals)


def test_load_digits_dataset_seed(digits):
    # Same seed, same split: checked by test_load_long_tailed_digits, which reloads with seed 0.
    assert _raw(load_digits_dataset(seed=1)["test"]) != _raw(digits["test"])


@pytest.mark.parametrize("test_size", [0, 1, 1.5, -0.1, True, "0.3"])
def test_load_digits_dataset_bad_test_size(test_size):
    with pytest.raises(ValueError, match="test_size"):
        load_digits_dataset(test_size=test_size)


# ----- long_tailed_counts -----


def _reference_exp(max_count: int, num_classes: int, imbalance_factor: float) -> list[int]:
    # The LDAM-DRW (Cao et al.) loop: img_max * (1 / IF) ** (i / (C - 1)), truncated.
    return [int(max_count * (1 / imbalance_factor) ** (i / (num_classes - 1.0))) for i in range(num_classes)]


def test_long_tailed_counts_known_cifar_values():
    assert long_tailed_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    # Train sizes of CIFAR-10-LT / CIFAR-100-LT reported in the long-tail literature.
    assert [sum(long_tailed_counts(5000, 10, f)) for f in (10, 50, 100, 200)] == [20431, 13996, 12406, 11203]
    assert [sum(long_tailed_counts(500, 100, f)) for f in (10, 50, 100, 200)] == [19573, 12608, 10847, 9502]


@pytest.mark.parametrize("num_classes", [2, 3, 10, 100])
@pytest.mark.parametrize("imbalance_factor", [1, 2.5, 10, 50, 100])
def test_long_tailed_counts_exp_matches_reference(num_classes, imbalance_factor):
    for max_count in (100, 500, 5000):
        assert long_tailed_counts(max_count, num_classes, imbalance_factor) == _reference_exp(
            max_count, num_classes, imbalance_factor
        )


@settings(max_examples=200, deadline=None)
@given(
    max_count=st.integers(1, 10_000),
    num_classes=st.integers(2, 200),
    ratio=st.floats(0, 1),
    profile=st.sampled_from(["exp", "step"]),
)
def test_long_tailed_counts_properties(max_count, num_classes, ratio, profile):
    imbalance_factor = 1 + ratio * (max_count - 1)  # in [1, max_count], so the tail keeps at least one sample
    counts = long_tailed_counts(max_count, num_classes, imbalance_factor, profile)
    assert len(counts) == num_classes and all(isinstance(n, int) for n in counts)
    assert counts[0] == max_count
    assert counts[-1] == math.floor(max_count / imbalance_factor) >= 1
    assert all(a >= b for a, b in zip(counts[:-1], counts[1:], strict=True))


def test_long_tailed_counts_step():
    assert long_tailed_counts(100, 10, 10, profile="step") == [100] * 5 + [10] * 5
    assert long_tailed_counts(100, 5, 3, profile="step") == [100, 100, 33, 33, 33]


@pytest.mark.parametrize("profile", ["exp", "step"])
def test_long_tailed_counts_balanced(profile):
    assert long_tailed_counts(37, 7, 1, profile) == [37] * 7


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_count": 0}, "max_count"),
        ({"max_count": 10.0}, "max_count"),
        ({"max_count": True}, "max_count"),
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 2.0}, "num_classes"),
        ({"imbalance_factor": 0.5}, "imbalance_factor"),
        ({"imbalance_factor": float("inf")}, "imbalance_factor"),
        ({"imbalance_factor": float("nan")}, "imbalance_factor"),
        ({"imbalance_factor": "10"}, "imbalance_factor"),
        ({"profile": "linear"}, "profile"),
        ({"max_count": 5, "imbalance_factor": 10}, "no samples"),
    ],
)
def test_long_tailed_counts_bad_arguments(kwargs, match):
    arguments = {"max_count": 100, "num_classes": 10, "imbalance_factor": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        long_tailed_counts(**arguments)


# ----- class_counts -----


def test_class_counts():
    dataset = _labelled([3, 0, 2])
    assert class_counts(dataset) == [3, 0, 2]
    assert class_counts(_labelled([3, 0, 2], class_label=False)) == [3, 0, 2]
    assert class_counts(dataset, num_classes=5) == [3, 0, 2, 0, 0]
    assert class_counts(dataset.select([0, 1])) == np.bincount(dataset["label"][:2], minlength=3).tolist()
    with pytest.raises(ValueError, match="outside"):
        class_counts(dataset, num_classes=2)
    with pytest.raises(ValueError, match="not found"):
        class_counts(dataset, label_column="fine_label")
    with pytest.raises(TypeError, match="integer"):
        class_counts(datasets.Dataset.from_dict({"label": [0.5, 1.0]}))


# ----- make_long_tailed -----


@pytest.mark.parametrize("profile", ["exp", "step"])
def test_make_long_tailed_counts_and_subset(profile):
    dataset = _labelled([60, 55, 50, 58])
    subset = make_long_tailed(dataset, imbalance_factor=10, profile=profile, seed=0)
    assert class_counts(subset) == long_tailed_counts(50, 4, 10, profile)
    rows = subset["row"]
    assert rows == sorted(set(rows)), "rows must be unique and keep their original order"
    assert subset["label"] == [dataset[r]["label"] for r in rows]
    assert subset.features == dataset.features


def test_make_long_tailed_seed():
    dataset = _labelled([40, 40, 40])
    first = make_long_tailed(dataset, imbalance_factor=4, seed=0)["row"]
    assert make_long_tailed(dataset, imbalance_factor=4, seed=0)["row"] == first
    assert make_long_tailed(dataset, imbalance_factor=4, seed=1)["row"] != first


def test_make_long_tailed_nested_across_imbalance_factors():
    dataset = _labelled([40, 40, 40, 40])
    rows = [set(make_long_tailed(dataset, imbalance_factor=f, seed=5)["row"]) for f in (1, 2, 10, 40)]
    assert rows[0] > rows[1] > rows[2] > rows[3]


def test_make_long_tailed_class_order_and_max_count():
    dataset = _labelled([30, 30, 30, 30])
    subset = make_long_tailed(dataset, imbalance_factor=10, class_order=[2, 0, 3, 1], max_count=20)
    expected = long_tailed_counts(20, 4, 10)
    assert class_counts(subset) == [expected[1], expected[3], expected[0], expected[2]]
    # Balanced at imbalance factor 1: every class cut to the smallest class.
    assert class_counts(make_long_tailed(_labelled([9, 7, 8]), imbalance_factor=1)) == [7, 7, 7]
    # Labels without a ClassLabel: the number of classes comes from the largest label.
    assert class_counts(make_long_tailed(_labelled([20, 20, 20], class_label=False), imbalance_factor=4)) == [
        20,
        10,
        5,
    ]


def test_make_long_tailed_on_digits(digits):
    subset = make_long_tailed(digits["train"], imbalance_factor=10, seed=0)
    max_count = min(class_counts(digits["train"]))
    assert class_counts(subset) == long_tailed_counts(max_count, 10, 10)
    original = dict(zip(*_raw(digits["train"]), strict=True))
    assert all(original[image] == label for image, label in zip(*_raw(subset), strict=True))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"max_count": 31}, ValueError, "Class 0 has 30 rows"),
        ({"class_order": [0, 1, 1]}, ValueError, "permutation"),
        ({"class_order": [0, 1]}, ValueError, "permutation"),
        ({"label_column": "fine_label"}, ValueError, "not found"),
        ({"imbalance_factor": 0.5}, ValueError, "imbalance_factor"),
        ({"profile": "linear"}, ValueError, "profile"),
    ],
)
def test_make_long_tailed_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_long_tailed(_labelled([30, 40, 50]), **{"imbalance_factor": 10, **kwargs})


def test_make_long_tailed_rejects_bad_labels():
    with pytest.raises(ValueError, match="no rows"):
        make_long_tailed(_labelled([5, 0, 5]), imbalance_factor=2)
    unlabelled = datasets.Dataset.from_dict({"label": [0, 1, -1, 1, 0]})
    with pytest.raises(ValueError, match="unlabelled"):
        make_long_tailed(unlabelled, imbalance_factor=2)


def test_make_long_tailed_needs_one_label_per_row():
    # Token tag lists were flattened and their indices taken as rows: an IndexError, or the wrong rows kept.
    for rows in ([[0, 1], [1, 0], [0, 0], [1, 1], [0, 1]], [[0], [1], [0], [1]]):
        with pytest.raises(ValueError, match="one integer label per row"):
            make_long_tailed(datasets.Dataset.from_dict({"label": rows}), imbalance_factor=2)


@pytest.mark.parametrize("max_count", [None, 3, 5])
def test_make_long_tailed_empty_class_advice_is_one_that_works(max_count):
    # Every class of a profile gets at least one row, so no max_count helps a class with none.
    with pytest.raises(ValueError, match=r"classes \[1\] have no rows") as error:
        make_long_tailed(_labelled([5, 0, 5]), imbalance_factor=2, max_count=max_count)
    assert "max_count" not in str(error.value)
    assert "ClassLabel" in str(error.value)


@pytest.mark.parametrize("class_label", [True, False])
def test_make_long_tailed_empty_dataset(class_label):
    with pytest.raises(ValueError, match="the dataset has no rows"):
        make_long_tailed(_labelled([0, 0, 0], class_label=class_label), imbalance_factor=2)


# ----- load_long_tailed_digits / build_long_tailed_splits / load_cifar_lt -----


def test_load_long_tailed_digits(digits):
    splits = load_long_tailed_digits(imbalance_factor=10.0, seed=0)
    assert class_counts(splits["train"]) == long_tailed_counts(min(class_counts(digits["train"])), 10, 10.0)
    assert _raw(splits["test"]) == _raw(digits["test"])  # the balanced test split is untouched


def _as_cifar100(digits: datasets.DatasetDict) -> datasets.DatasetDict:
    """Digits with CIFAR-100's column names: "img", "fine_label" and an extra "coarse_label"."""
    renamed = {}
    for split, dataset in digits.items():
        dataset = dataset.rename_columns({"image": "img", "label": "fine_label"})
        renamed[split] = dataset.add_column("coarse_label", [label // 2 for label in dataset["fine_label"]])
    return datasets.DatasetDict(renamed)


def test_build_long_tailed_splits_normalises_cifar100_columns(digits):
    built = build_long_tailed_splits(
        _as_cifar100(digits), image_column="img", label_column="fine_label", imbalance_factor=10, seed=3
    )
    for split in built.values():
        assert split.column_names == ["image", "label"]
        assert split.features["label"] == digits["train"].features["label"]
    # The same rows as the long-tailed split built directly from the digits, and the same test split.
    assert _raw(built["train"]) == _raw(make_long_tailed(digits["train"], imbalance_factor=10, seed=3))
    assert _raw(built["test"]) == _raw(digits["test"])


def test_build_long_tailed_splits_errors(digits):
    with pytest.raises(ValueError, match="'train' split"):
        build_long_tailed_splits(datasets.DatasetDict({"test": digits["test"]}), imbalance_factor=10)
    with pytest.raises(ValueError, match="fine_label"):
        build_long_tailed_splits(digits, label_column="fine_label", imbalance_factor=10)


@pytest.mark.parametrize("name, label_column", [("cifar10", "label"), ("cifar100", "fine_label")])
def test_load_cifar_lt_without_network(monkeypatch, digits, name, label_column):
    # Stand-in for the Hub download: digits with the CIFAR column names.
    calls = []

    def fake_load_dataset(repo_id, cache_dir=None):
        calls.append((repo_id, cache_dir))
        fake = _as_cifar100(digits)
        if label_column == "label":
            fake = fake.remove_columns("coarse_label").rename_column("fine_label", "label")
        return fake

    monkeypatch.setattr(data.images.datasets, "load_dataset", fake_load_dataset)
    splits = load_cifar_lt(name, imbalance_factor=10, seed=0, cache_dir="/tmp/cache")
    assert calls == [(f"uoft-cs/{name}", "/tmp/cache")]
    assert splits["train"].column_names == ["image", "label"]
    assert class_counts(splits["train"]) == long_tailed_counts(min(class_counts(digits["train"])), 10, 10)
    with pytest.raises(ValueError, match="cifar10"):
        load_cifar_lt("cifar1000")


# ----- make_image_transform / dataset_to_tensors -----


@pytest.mark.parametrize("num_channels", [1, 3])
def test_make_image_transform_shapes_and_range(digits, num_channels):
    batch = digits["test"].with_transform(make_image_transform(16, num_channels=num_channels))[:5]
    assert set(batch) == {"pixel_values", "labels"}
    assert batch["pixel_values"].shape == (5, num_channels, 16, 16)
    assert batch["pixel_values"].dtype == torch.float32 and batch["labels"].dtype == torch.int64
    assert batch["labels"].tolist() == digits["test"]["label"][:5]
    assert batch["pixel_values"].min() >= -1 and batch["pixel_values"].max() <= 1
    assert batch["pixel_values"].min() == -1 and batch["pixel_values"].max() == 1
    # Grayscale replicated to RGB: identical channels.
    torch.testing.assert_close(batch["pixel_values"][:, :1].expand_as(batch["pixel_values"]), batch["pixel_values"])


def test_make_image_transform_matches_vit_image_processor(digits):
    from transformers import ViTImageProcessorPil

    images = digits["test"][:8]["image"]
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    processor = ViTImageProcessorPil(size={"height": 24, "width": 24}, image_mean=mean, image_std=std)
    expected = processor([image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]
    actual = make_image_transform(24, mean=mean, std=std)({"image": images, "label": list(range(8))})["pixel_values"]
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_make_image_transform_identity_size_is_exact(digits):
    images = digits["test"][:4]["image"]
    expected = torch.from_numpy(np.stack([np.asarray(image) for image in images]).astype(np.float32) / 255 * 2 - 1)
    actual = make_image_transform(8, num_channels=1)({"image": images, "label": [0, 1, 2, 3]})["pixel_values"]
    torch.testing.assert_close(actual[:, 0], expected)


def test_make_image_transform_single_rows_collate(digits):
    from transformers import default_data_collator

    transformed = digits["test"].with_transform(make_image_transform(16))
    batch = default_data_collator([transformed[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 3, 16, 16) and batch["labels"].dtype == torch.int64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": 16.0}, "image_size"),
        ({"num_channels": 2}, "num_channels"),
        ({"std": 0.0}, "std"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"std": [0.5, float("nan"), 0.5]}, "std"),
    ],
)
def test_make_image_transform_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_image_transform(**{"image_size": 16, **kwargs})


def test_dataset_to_tensors(digits):
    subset = digits["test"].select(range(20))
    pixel_values, labels = dataset_to_tensors(subset, 12, num_channels=1)
    assert pixel_values.shape == (20, 1, 12, 12) and labels.tolist() == subset["label"]
    # A transform already set on the dataset is ignored.
    with_transform = subset.with_transform(make_image_transform(4))
    torch.testing.assert_close(dataset_to_tensors(with_transform, 12, num_channels=1)[0], pixel_values)
