"""The one label counter: datasets through the Arrow column, other datasets item by item, -100 left out on request."""

import datasets
import pytest
import torch

from semscale_hf.data import count_labels


def test_dataset_column_and_plain_items_count_the_same():
    labels = [0, 2, 2, -100, 1, 2]
    dataset = datasets.Dataset.from_dict({"labels": labels, "pixel_values": [[0.0]] * 6})
    items = [{"labels": torch.tensor(v)} for v in labels]
    assert count_labels(dataset, 4, ignore_index=-100) == [1, 1, 3, 0]
    assert count_labels(items, 4, ignore_index=-100) == [1, 1, 3, 0]
    assert count_labels(dataset.rename_column("labels", "label"), ignore_index=-100) == [1, 1, 3]


def test_a_transform_is_not_run_to_count(tmp_path):
    def fail(batch):
        raise AssertionError("the transform ran")

    dataset = datasets.Dataset.from_dict({"label": [1, 0, 1]}).with_transform(fail)
    assert count_labels(dataset, 2) == [1, 2]


def test_bad_labels_name_the_column_and_what_to_pass():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\).*column 'labels'"):
        count_labels(datasets.Dataset.from_dict({"labels": [0, 3]}), 2)
    with pytest.raises(ValueError, match="unlabelled"):
        count_labels(datasets.Dataset.from_dict({"labels": [0, -100]}), 2)
    with pytest.raises(ValueError, match="class_counts"):
        count_labels(datasets.Dataset.from_dict({"y": [0, 1]}), 2)
    with pytest.raises(ValueError, match="class_counts"):
        count_labels([{"y": 0}], 2)
